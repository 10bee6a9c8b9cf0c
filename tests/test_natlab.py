"""Connecting across real NATs: namespaces, iptables MASQUERADE, real coturn, the real CLI.

These run as root in CI; a machine that cannot build the lab fails them (never skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from tests.cli_helpers import Peer, embedded_pair, lab_env
from tests.natlab import PUBLIC_IP, TURN_SECRET, Internet, internet, one_lan

pytestmark = pytest.mark.timeout(150)

STUN = ["--stun", f"stun:{PUBLIC_IP}:3478"]
TURN = [
    "--turn",
    f"turn:{PUBLIC_IP}:3478?transport=udp",
    "--turn",
    f"turn:{PUBLIC_IP}:3478?transport=tcp",
    "--turn-secret",
    TURN_SECRET,
]


FAIL_FAST = {"P2PSHARE_CONNECT_TIMEOUT_S": "8"}
"""For the cases where no path can work: the same "could not connect", after 8 s, not 30."""


def transfer(
    net: Internet,
    tmp_path: Path,
    send_args: tuple[str, ...] = (),
    recv_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[Peer, Peer, bytes]:
    data = os.urandom(256 * 1024)
    src = tmp_path / "payload.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    sender = Peer(
        ["send", str(src), "--server", net.server, "--json", *send_args],
        cwd=tmp_path,
        env=lab_env(**(env or {})),
        netns=net.host_a,
    )
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", net.server, "--json", "--yes", "-o", str(out), *recv_args],
        cwd=tmp_path,
        env=lab_env(**(env or {})),
        netns=net.host_b,
    )
    return sender, receiver, data


def assert_arrived(sender: Peer, receiver: Peer, data: bytes, out: Path, path: str) -> None:
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "payload.bin").read_bytes() == data
    assert receiver.last("done")["blake3"] == blake3.blake3(data).hexdigest()
    assert sender.last("connected")["path"] == receiver.last("connected")["path"] == path


def assert_could_not_connect(sender: Peer, receiver: Peer) -> None:
    assert receiver.wait() == 8, receiver.stderr
    assert sender.wait() == 8, sender.stderr
    message = receiver.last("error")["message"]
    assert message.startswith("could not connect") and "candidates" in message


def test_cone_to_cone_with_stun_connects_directly(tmp_path: Path) -> None:
    """Behind two port-preserving NATs, STUN is enough: a direct path through NAT."""
    with internet(tmp_path, "cone", "cone", server_args=STUN) as net:
        sender, receiver, data = transfer(net, tmp_path)
        assert_arrived(sender, receiver, data, tmp_path / "out", "nat")


def test_symmetric_to_symmetric_with_stun_only_fails_clearly(tmp_path: Path) -> None:
    """Two symmetric NATs and no relay: a clear "could not connect" within the deadline."""
    with internet(tmp_path, "symmetric", "symmetric", server_args=STUN) as net:
        sender, receiver, _ = transfer(net, tmp_path, env=FAIL_FAST)
        assert_could_not_connect(sender, receiver)
        assert "no TURN server" in receiver.last("error")["message"]


def test_symmetric_to_symmetric_with_turn_is_relayed(tmp_path: Path) -> None:
    """With TURN credentials from the signal server's secret, the transfer is relayed."""
    with internet(tmp_path, "symmetric", "symmetric", server_args=[*STUN, *TURN]) as net:
        sender, receiver, data = transfer(net, tmp_path)
        assert_arrived(sender, receiver, data, tmp_path / "out", "relay")
        assert receiver.last("connected")["relay"].startswith(PUBLIC_IP + ":")


def test_relay_only_is_relayed_even_when_direct_would_work(tmp_path: Path) -> None:
    """--relay-only forces the TURN path between two cone NATs."""
    with internet(tmp_path, "cone", "cone", server_args=[*STUN, *TURN]) as net:
        sender, receiver, data = transfer(net, tmp_path, send_args=("--relay-only",))
        assert_arrived(sender, receiver, data, tmp_path / "out", "relay")


def test_direct_only_between_symmetric_nats_fails_clearly(tmp_path: Path) -> None:
    """--direct-only never uses the relay the server offers, so symmetric NATs fail."""
    with internet(tmp_path, "symmetric", "symmetric", server_args=[*STUN, *TURN]) as net:
        sender, receiver, _ = transfer(
            net, tmp_path, ("--direct-only",), ("--direct-only",), FAIL_FAST
        )
        assert_could_not_connect(sender, receiver)
        assert "--direct-only" in receiver.last("error")["message"]


def test_udp_blocked_connects_through_turn_over_tcp(tmp_path: Path) -> None:
    """Routers that drop all UDP still let the transfer through TURN over TCP."""
    with internet(tmp_path, "cone", "cone", block_udp=True, server_args=[*STUN, *TURN]) as net:
        sender, receiver, data = transfer(net, tmp_path)
        assert_arrived(sender, receiver, data, tmp_path / "out", "relay")


def test_one_lan_needs_no_server_at_all(tmp_path: Path) -> None:
    """Two hosts on one LAN: the sender's embedded server, host candidates, a LAN path."""
    with one_lan(tmp_path) as (_, host_a, host_b):
        src = tmp_path / "payload.bin"
        data = os.urandom(100_000)
        src.write_bytes(data)
        out = tmp_path / "out"
        out.mkdir()
        sender, receiver, url = embedded_pair(src, out, host_a, host_b)
        assert url.startswith("ws://10.9.0.1:")
        assert_arrived(sender, receiver, data, out, "lan")
