"""Zero configuration on one network: the sender's embedded server is advertised over
mDNS/DNS-SD and found by nameplate, in two network namespaces joined by a veth pair (multicast
on, default routes, nothing else configured)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from p2pshare import lan
from p2pshare.errors import NoSuchCodeError, SignallingError
from tests.cli_helpers import ROOT, Peer, lab_env
from tests.natlab import Lab, LabError, sh

NET = [ipaddress.ip_network("10.0.0.0/24")]
"""The networks of the receiver in the pure tests."""


def test_parse_advert_accepts_ours_only() -> None:
    """Only version-1 adverts with a numeric nameplate, a port and an IP address count."""
    good = {b"v": b"1", b"nameplate": b"42", b"host": b"alice"}
    assert lan.parse_advert(good, ["10.0.0.2"], 4750, NET) == lan.Advert(
        "42", "ws://10.0.0.2:4750", "alice"
    )
    assert lan.parse_advert(good, ["fe80::1", "10.0.0.2"], 1, NET).url == "ws://10.0.0.2:1"  # type: ignore[union-attr]
    assert lan.parse_advert({**good, b"v": b"2"}, ["10.0.0.2"], 4750, NET) is None
    assert lan.parse_advert({**good, b"nameplate": b"x"}, ["10.0.0.2"], 4750, NET) is None
    assert lan.parse_advert(good, [], 4750, NET) is None
    assert lan.parse_advert(good, ["10.0.0.2"], None, NET) is None
    shown = lan.parse_advert({**good, b"host": b"\x1b[31m"}, ["10.0.0.2"], 1, NET)
    assert shown is not None and shown.host == "\\x1b[31m"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.5.5",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "10.0.1.2",
        "192.168.1.1",
        "8.8.8.8",
        "fd00::2",
    ],
)
def test_adverts_for_loopback_or_other_networks_are_ignored(address: str) -> None:
    """An advert naming loopback, an unspecified or multicast address, or an address on no
    network of this host is not followed (a LAN host cannot point the receiver at its own
    local services or beyond the LAN); the same advert's on-link address still is."""
    advert = {b"v": b"1", b"nameplate": b"42", b"host": b"mallory"}
    assert lan.parse_advert(advert, [address], 4750, NET) is None
    found = lan.parse_advert(advert, [address, "10.0.0.9"], 4750, NET)
    assert found is not None and found.url == "ws://10.0.0.9:4750"


def test_choose_never_guesses() -> None:
    """One match is used; none says how to go on; two with the same nameplate are refused
    (running PAKE against the wrong one would cancel that sender's code)."""
    a = lan.Advert("7", "ws://10.0.0.2:1", "alice")
    b = lan.Advert("7", "ws://10.0.0.3:1", "bob")
    other = lan.Advert("8", "ws://10.0.0.4:1", "carol")
    assert lan.choose("7", [a, other], 2) == a
    assert lan.choose("7", [a, a], 2) == a  # the same sender seen twice
    with pytest.raises(NoSuchCodeError, match="--server"):
        lan.choose("7", [other], 2)
    with pytest.raises(SignallingError, match=r"several senders.*alice.*bob"):
        lan.choose("7", [a, b], 2)


def test_embedded_nameplates_are_random() -> None:
    """Embedded servers draw nameplates at random in 1..999 (not all 1)."""
    assert lan.random_nameplate(lambda n: 0) == "1"
    assert lan.random_nameplate(lambda n: n - 1) == str(lan.LAN_NAMEPLATES)
    assert len({lan.random_nameplate() for _ in range(50)}) > 10


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[tuple[str, str]]:
    """Two namespaces on one veth cable: 10.77.0.1 and 10.77.0.2, multicast on."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    lab = Lab(prefix=f"fh{os.getpid() % 100000}", workdir=Path("."))
    with ExitStack() as stack:
        stack.callback(lab.close)
        try:
            a, b = lab.add_ns("a"), lab.add_ns("b")
            lab.veth("eth0", a, "eth1", b)
            for ns, dev, ip in ((a, "eth0", "10.77.0.1"), (b, "eth1", "10.77.0.2")):
                sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
                sh("ip", "link", "set", dev, "multicast", "on", "up", ns=ns)
                sh("ip", "route", "add", "default", "dev", dev, ns=ns)
        except LabError as exc:
            pytest.skip(str(exc))
        yield a, b


def tool(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.lan_tool", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )


def advertiser(ns: str, nameplate: str, address: str, port: int) -> subprocess.Popen[str]:
    proc = tool(ns, "advertise", nameplate, address, str(port))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "advertised"
    return proc


def browse(ns: str, nameplate: str, timeout_s: float = 3.0) -> list[dict[str, str]]:
    proc = tool(ns, "browse", nameplate, str(timeout_s))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    found: list[dict[str, str]] = json.loads(out)
    return found


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def test_receiver_finds_the_sender_by_nameplate(two_hosts: tuple[str, str]) -> None:
    """An advert in one namespace is found from the other, by its nameplate only."""
    a, b = two_hosts
    sender = advertiser(a, "42", "10.77.0.1", 4750)
    try:
        found = browse(b, "42")
        assert [f["url"] for f in found] == ["ws://10.77.0.1:4750"]
        assert browse(b, "43", 1.0) == []
    finally:
        stop(sender)


def test_two_senders_with_one_nameplate_are_both_seen(two_hosts: tuple[str, str]) -> None:
    """Two adverts of one nameplate are both reported, so the receiver can refuse to guess."""
    a, b = two_hosts
    first = advertiser(a, "7", "10.77.0.1", 4751)
    second = advertiser(b, "7", "10.77.0.2", 4752)
    try:
        found = browse(b, "7")
        assert sorted(f["url"] for f in found) == ["ws://10.77.0.1:4751", "ws://10.77.0.2:4752"]
    finally:
        stop(first)
        stop(second)


def test_receive_with_the_code_alone(two_hosts: tuple[str, str], tmp_path: Path) -> None:
    """The first-hour flow: `p2pshare send FILE` on one machine prints `p2pshare receive
    CODE`; that command, nothing added, receives the file on the other machine."""
    a, b = two_hosts
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "holiday.txt").write_text("sunny")
    sender = Peer(["send", str(src / "holiday.txt")], cwd=src, env=lab_env(), netns=a)
    line = sender.stderr_line("On the other computer run:")
    command = line.split("run:", 1)[1].split()
    assert command[:2] == ["p2pshare", "receive"] and len(command) == 3, line
    # The full command stays on screen for networks where multicast is blocked.
    fallback = sender.stderr_line("where multicast is blocked")
    assert "p2pshare receive --server ws://10.77.0.1:" in fallback and command[2] in fallback
    receiver = Peer(
        [*command[1:], "--yes", "--json", "-o", str(out)], cwd=out, env=lab_env(), netns=b
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "holiday.txt").read_text() == "sunny"


def test_no_sender_on_the_network(two_hosts: tuple[str, str], tmp_path: Path) -> None:
    """Without a sender, the receiver gives up after the browse time with a message that
    says what to do (the full command), exit 4."""
    _, b = two_hosts
    receiver = Peer(["receive", "977-guitar-ocean", "--json"], cwd=tmp_path, env=lab_env(), netns=b)
    assert receiver.wait() == 4
    assert "--server" in receiver.last("error")["message"]


def test_receiver_started_first_waits_on_the_lan(
    two_hosts: tuple[str, str], tmp_path: Path
) -> None:
    """A code agreed in advance: the receiver, started first with --wait, keeps looking on
    the network until the sender appears, then receives."""
    a, b = two_hosts
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "notes.txt").write_text("agreed in advance")
    env = {**lab_env(), "P2PSHARE_CODE": "88-purple-tractor"}
    receiver = Peer(
        ["receive", "--wait", "60", "--yes", "--json", "-o", str(out)], cwd=out, env=env, netns=b
    )
    sender = Peer(["send", str(tmp_path / "notes.txt"), "--json"], cwd=tmp_path, env=env, netns=a)
    assert sender.event("code")["code"] == "88-purple-tractor"
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "notes.txt").read_text() == "agreed in advance"


def test_an_advert_for_loopback_or_beyond_the_lan_is_not_followed(
    two_hosts: tuple[str, str], tmp_path: Path
) -> None:
    """A host on the LAN advertising the receiver's nameplate at 127.0.0.1 (or at an address
    on no network of the receiver's) is ignored: the receiver says no sender was found (4)
    and never connects to its own local service on that port."""
    a, b = two_hosts
    listener = tool(b, "listen", "4790")
    assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
    hostile = []
    for nameplate, address in (("55", "127.0.0.1"), ("56", "192.0.2.77")):
        proc = tool(a, "advertise-at", nameplate, "10.77.0.1", address, "4790")
        assert proc.stdout is not None and proc.stdout.readline().strip() == "advertised"
        hostile.append(proc)
    try:
        assert browse(b, "56") == []
        receiver = Peer(
            ["receive", "55-guitar-ocean", "--json"], cwd=tmp_path, env=lab_env(), netns=b
        )
        assert receiver.wait() == 4, receiver.stderr
        assert "no sender" in receiver.last("error")["message"]
    finally:
        for proc in hostile:
            stop(proc)
        out, _ = listener.communicate(input="", timeout=10)
    assert out.strip() == "nothing"
