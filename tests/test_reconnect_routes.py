"""A transfer survives its path dying on the default routes (issue 28): the sender's embedded
server on the local network (found by mDNS) and the public mailbox, with real peers in
network namespaces; and a stranger at the mailbox's reconnect place, with the real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from p2pshare.config import Settings
from p2pshare.errors import P2PShareError
from p2pshare.mailbox import APPID, MailboxClient, connect_any
from p2pshare.pake import Role
from p2pshare.places import MailboxPlace
from p2pshare.reconnect import ReconnectKeys, Reconnector
from p2pshare.transfer import DEFAULT_WINDOW_BYTES
from tests.cli_helpers import Peer, lab_env, leftovers
from tests.mailbox_helpers import mailbox_server
from tests.natlab import Lab, internet, sh
from tests.test_public_defaults import plain_env

MIB = 1 << 20
FAST = {"P2PSHARE_LARGE_PACKETS": "0", "P2PSHARE_PEER_TIMEOUT_S": "4"}
"""Small packets (the loss lands mid-transfer) and the shortest silence deadline."""


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "payload.bin"
    path.parent.mkdir()
    with open(path, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(MIB))
    return path


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two namespaces on one cable, multicast on (mDNS works): 10.77.0.1 and 10.77.0.2."""
    lab = Lab(prefix=f"rr{os.getpid() % 100000}", workdir=tmp_path)
    with ExitStack() as stack:
        stack.callback(lab.close)
        a, b = lab.add_ns("a"), lab.add_ns("b")
        lab.veth("eth0", a, "eth0", b)
        for ns, ip in ((a, "10.77.0.1"), (b, "10.77.0.2")):
            sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "multicast", "on", "up", ns=ns)
            sh("ip", "route", "add", "default", "dev", "eth0", ns=ns)
        yield a, b


def plain_peers(
    payload: Path, out: Path, host_a: str, host_b: str, env: dict[str, str]
) -> tuple[Peer, Peer]:
    """``send FILE`` and ``receive CODE``: no server named (--json, --yes, -o to read)."""
    sender = Peer(["send", str(payload), "--json"], cwd=payload.parent, env=env, netns=host_a)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--json", "--yes", "-o", str(out)], cwd=out.parent, env=env, netns=host_b
    )
    return sender, receiver


def new_address(ns: str, old: str, new: str) -> None:
    """A new network: the old address goes first (a moment with none), then the new one."""
    sh("ip", "addr", "del", f"{old}/24", "dev", "eth0", ns=ns)
    sh("ip", "addr", "add", f"{new}/24", "dev", "eth0", ns=ns)
    sh("ip", "route", "replace", "default", "dev", "eth0", ns=ns)


def check_done(sender: Peer, receiver: Peer, payload: Path, out: Path) -> None:
    """Both ended 0, the file verified, no more sent than the file and a credit window."""
    assert receiver.wait(90) == 0, receiver.stderr
    assert sender.wait(60) == 0, sender.stderr
    for peer in (sender, receiver):
        assert any(e["event"] == "reconnected" for e in peer.events), peer.events
    size = payload.stat().st_size
    assert sender.last("done")["bytes"] == size
    assert sender.last("done")["sent"] <= size + DEFAULT_WINDOW_BYTES
    assert (out / payload.name).read_bytes() == payload.read_bytes()
    assert leftovers(out) == [payload.name]


def report(what: str, since: float, receiver: Peer) -> None:
    """Printed for the notes, never asserted (wall-clock)."""
    again = receiver.last("reconnected")
    print(
        f"\n{what}: reconnected event {time.monotonic() - since:.2f} s after it; "
        f"{again['elapsed_s']:.2f} s from the loss noticed to the new channel (receiver)"
    )


@pytest.mark.timeout(120)
def test_embedded_server_the_receivers_address_changes(
    tmp_path: Path, payload: Path, lan: tuple[str, str]
) -> None:
    """Plain commands on one LAN: the receiver gets a new address mid-transfer; it goes back
    to the sender's embedded server and both finish, exit 0, the file verified."""
    out = tmp_path / "out"
    out.mkdir()
    host_a, host_b = lan
    sender, receiver = plain_peers(payload, out, host_a, host_b, lab_env(**FAST))
    receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
    changed = time.monotonic()
    new_address(host_b, "10.77.0.2", "10.77.0.3")
    receiver.event("reconnected")
    report("new receiver address", changed, receiver)
    check_done(sender, receiver, payload, out)
    assert receiver.last("reconnected")["path"] == "lan"


@pytest.mark.timeout(120)
def test_embedded_server_the_senders_address_changes(
    tmp_path: Path, payload: Path, lan: tuple[str, str]
) -> None:
    """The sender gets a new address mid-transfer: its embedded server answers there, it
    says so on mDNS under the reconnect nameplate, and the receiver, whose old URL is dead,
    finds it again: both exit 0, the file verified."""
    out = tmp_path / "out"
    out.mkdir()
    host_a, host_b = lan
    sender, receiver = plain_peers(payload, out, host_a, host_b, lab_env(**FAST))
    receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
    changed = time.monotonic()
    new_address(host_a, "10.77.0.1", "10.77.0.4")
    receiver.event("reconnected")
    report("new sender address", changed, receiver)
    check_done(sender, receiver, payload, out)


@pytest.mark.timeout(150)
def test_public_mailbox_path_dead_past_the_deadline_then_back(
    tmp_path: Path, payload: Path
) -> None:
    """Plain commands across two NATs, paired at the public mailbox: the UDP path is cut past
    the silence deadline, then restored; both meet again at the mailbox and finish."""
    out = tmp_path / "out"
    out.mkdir()
    with internet(tmp_path, "cone", "cone", public_defaults="tls") as net:
        env = {**plain_env(tmp_path), **FAST}
        sender, receiver = plain_peers(payload, out, net.host_a, net.host_b, env)
        assert sender.last("code")["public"] == "relay.magic-wormhole.io"
        receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
        hosts = (net.host_a, net.host_b)
        for ns in hosts:
            sh("iptables", "-I", "INPUT", "-p", "udp", "-j", "DROP", ns=ns)
        receiver.event("reconnecting")
        sender.event("reconnecting")
        back = time.monotonic()
        for ns in hosts:
            sh("iptables", "-D", "INPUT", "-p", "udp", "-j", "DROP", ns=ns)
        receiver.event("reconnected")
        report("path back (mailbox)", back, receiver)
        check_done(sender, receiver, payload, out)
    assert receiver.last("reconnected")["path"] == "nat"


def test_a_stranger_at_the_mailbox_reconnect_place_is_ignored(tmp_path: Path) -> None:
    """At the real mailbox server, someone without the session key waits at the reconnect
    nameplate and posts a hello: it is ignored (no connection is made with it), the attempt
    ends at the connect timeout rather than the budget, and our side closes the mailbox
    telling the server it went wrong (its usage record)."""
    keys = ReconnectKeys(Role.RECEIVER, bytes(range(32)))
    stranger = ReconnectKeys(Role.SENDER, bytes(32))
    settings = Settings(connect_timeout_s=2.0)

    async def run(url: str) -> None:
        client = await connect_any(url)
        assert isinstance(client, MailboxClient)
        try:
            await client.claim(keys.nameplate(0), create=True)
            await client.send(stranger.hello(0)[0])
            reconnector = Reconnector(MailboxPlace(url, []), keys, settings, lambda e: None)
            started = asyncio.get_running_loop().time()
            with pytest.raises((P2PShareError, TimeoutError)):
                await reconnector.attempt(30.0)
            assert asyncio.get_running_loop().time() - started < 10
            assert client.heard_peer  # our side was there, and posted its own hello
            assert reconnector.generation == 0
        finally:
            client.mood = "happy"
            await client.close()

    usage = tmp_path / "usage.sqlite"
    with mailbox_server(tmp_path, f"--usage-db={usage}") as url:
        asyncio.run(run(url))
    with contextlib.closing(sqlite3.connect(usage)) as db:
        rows = db.execute("SELECT result FROM mailboxes WHERE app_id = ?", (APPID,))
        assert [row[0] for row in rows] == ["errory"]
