"""Routes and public defaults: which relay carries a code open on two routes (its logic with
in-memory relays; its deadline and chosen codes with a real embedded server and a real
mailbox server on 127.0.0.1), and when the public servers are used at all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pshare.codes import Code
from p2pshare.config import (
    NO_PUBLIC_SERVERS,
    PUBLIC_MAILBOXES,
    IceConfig,
    PublicServers,
    Settings,
    public_servers_from_env,
)
from p2pshare.errors import NoSuchCodeError, PeerLostError, SignallingError
from p2pshare.mailbox import MailboxClient, connect_any
from p2pshare.rendezvous import RendezvousClient
from p2pshare.routes import FirstOf, SenderRoute, sender_routes
from signal_server.server import ServerSettings, start_server
from tests.cli_helpers import Peer, peer_env
from tests.mailbox_helpers import mailbox_server

LAN_AND_PUBLIC = IceConfig(local_addresses=("127.0.0.1", "192.0.2.1"))
"""Addresses beyond loopback, so that the public route is tried (at the test's mailbox)."""


class MemoryRelay:
    """An in-memory relay (a Relay): paired when the test says so."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ice_servers: list[dict[str, Any]] = [{"urls": [f"stun:{name}.invalid:3478"]}]
        self.sent: list[bytes] = []
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.paired = asyncio.Event()
        self.failure: Exception | None = None
        self.closed = False

    async def send(self, body: bytes) -> None:
        self.sent.append(body)

    async def receive(self, timeout_s: float | None) -> bytes:
        async with asyncio.timeout(timeout_s):
            return await self.inbox.get()

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        await self.paired.wait()
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        self.closed = True

    def peer_speaks(self, body: bytes) -> None:
        self.inbox.put_nowait(body)
        self.paired.set()


async def test_first_route_a_peer_speaks_on_wins() -> None:
    """Bodies go to every route until a peer speaks on one; that one is kept (its ICE
    servers too), the other closed, and later bodies go to it alone."""
    lan, public = MemoryRelay("lan"), MemoryRelay("public")
    relay = FirstOf([lan, public])
    await relay.send(b"pake")
    assert lan.sent == public.sent == [b"pake"]
    public.peer_speaks(b"their pake")
    assert await relay.receive(5) == b"their pake"
    await relay.settle()
    assert relay.chosen is public and public.closed is False and lan.closed is True
    assert relay.ice_servers == public.ice_servers
    await relay.send(b"confirm")
    assert lan.sent == [b"pake"] and public.sent == [b"pake", b"confirm"]


class SlowToClose(MemoryRelay):
    """A relay whose close hangs until the test lets it finish (a black-holed server)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.may_close = asyncio.Event()

    async def close(self) -> None:
        await self.may_close.wait()
        self.closed = True


async def test_a_losing_route_closes_in_the_background() -> None:
    """The winner goes on while the loser's close is still waiting on its server (a
    black-holed public mailbox took ~4 s per side); that close is awaited at exit."""
    lan, public = MemoryRelay("lan"), SlowToClose("public")
    relay = FirstOf([lan, public], required=lan)
    lan.peer_speaks(b"their pake")
    async with asyncio.timeout(20):  # a bound for a broken build, not a measure
        assert await relay.receive(5) == b"their pake"
    assert relay.chosen is lan and public.closed is False
    public.may_close.set()
    await relay.settle()
    assert public.closed is True


async def test_a_close_that_never_ends_is_cancelled_at_exit() -> None:
    """At exit a loser's close gets a bounded time, then is cancelled: it never holds the
    process."""
    lan, public = MemoryRelay("lan"), SlowToClose("public")
    relay = FirstOf([lan, public], required=lan)
    lan.peer_speaks(b"their pake")
    await relay.wait_paired(None)
    await relay.settle(bound_s=0.01)
    assert public.closed is False and not relay._closing


async def test_a_failed_route_is_dropped() -> None:
    """A route that fails before anyone spoke on it (a dropped connection) leaves the race;
    the other can still win."""
    lan, public = MemoryRelay("lan"), MemoryRelay("public")
    relay = FirstOf([lan, public])
    public.failure = SignallingError("the rendezvous server closed the connection")
    public.paired.set()
    waiting = asyncio.ensure_future(relay.wait_paired(None))
    await asyncio.sleep(0)
    lan.peer_speaks(b"pake")
    await asyncio.wait_for(waiting, 5)
    assert relay.chosen is lan


async def test_every_route_failing_raises() -> None:
    """When every route fails, the last failure is the pairing's."""
    lan, public = MemoryRelay("lan"), MemoryRelay("public")
    for route in (lan, public):
        route.failure = PeerLostError("gone")
        route.paired.set()
    with pytest.raises(PeerLostError):
        await FirstOf([lan, public]).wait_paired(None)


def test_public_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """P2PSHARE_PUBLIC=0 (or no/off/false) turns every public server off; 1 or unset keeps
    the table; anything else is refused."""
    monkeypatch.delenv("P2PSHARE_PUBLIC", raising=False)
    assert public_servers_from_env().mailboxes == PUBLIC_MAILBOXES
    for off in ("0", "no", "OFF", "false"):
        monkeypatch.setenv("P2PSHARE_PUBLIC", off)
        assert public_servers_from_env() == NO_PUBLIC_SERVERS
    monkeypatch.setenv("P2PSHARE_PUBLIC", "maybe")
    with pytest.raises(ValueError, match="P2PSHARE_PUBLIC"):
        public_servers_from_env()


def test_when_the_public_route_is_tried() -> None:
    """Only with no server named, public servers allowed, and addresses beyond loopback."""
    assert Settings().public_route()
    assert not Settings(server="ws://127.0.0.1:1").public_route()
    assert not Settings(public=NO_PUBLIC_SERVERS).public_route()
    loopback = IceConfig(local_addresses=("127.0.0.1",))
    assert not Settings(ice=loopback).public_route()
    lan = IceConfig(local_addresses=("127.0.0.1", "192.168.1.20"))
    assert Settings(ice=lan).public_route()
    assert PublicServers().ice_servers() == [{"urls": ["stun:stun.cloudflare.com:3478"]}]


def test_a_sender_on_loopback_never_tries_public_servers(tmp_path: Path) -> None:
    """With no --server and no P2PSHARE_PUBLIC, a sender confined to 127.0.0.1 (as every
    loopback test is) does not contact the public mailbox: its code is for this machine's
    network only and no attempt was made (no "out of reach" warning)."""
    (tmp_path / "a.txt").write_text("x")
    env = peer_env()
    del env["P2PSHARE_PUBLIC"]
    sender = Peer(["send", str(tmp_path / "a.txt"), "--json"], cwd=tmp_path, env=env)
    try:
        code = sender.event("code")
        assert code["rendezvous"] == "this network only" and code["public"] is None
        assert [e for e in sender.events if e["event"] == "warning"] == []
    finally:
        sender.kill()


@contextlib.asynccontextmanager
async def two_routes(
    mailbox: str, chosen: Code | None, notices: list[str], room_ttl_s: float = 600.0
) -> AsyncIterator[SenderRoute]:
    """A sender's routes as ``send`` opens them: a real embedded server (its room TTL
    ``room_ttl_s``) and the real mailbox server at ``mailbox`` as the public one."""
    settings = Settings(public=PublicServers(mailboxes=(mailbox,), stun=()), ice=LAN_AND_PUBLIC)
    server = ServerSettings(host="127.0.0.1", port=0, room_ttl_s=room_ttl_s, sweep_interval_s=0.05)
    async with start_server(server) as running:
        local = await RendezvousClient.connect(running.url)
        try:
            async with sender_routes(
                settings, chosen, (local, running.url), notices.append
            ) as route:
                yield route
        finally:
            await local.close()


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[str]:
    with mailbox_server(tmp_path) as url:
        yield url


async def mailbox_side(url: str, nameplate: str) -> MailboxClient:
    """Another client in ``nameplate``'s mailbox (a stranger's send, or a waiting receiver)."""
    client = await connect_any(url)
    assert isinstance(client, MailboxClient)
    await client.claim(nameplate, create=True)
    return client


async def test_the_sender_stops_waiting_when_its_embedded_room_expires(mailbox: str) -> None:
    """A sender open on both routes waits no longer than its embedded room lives (the room
    TTL): its expiry ends the wait on the public mailbox too, so the sender exits (its mDNS
    advert with it) instead of leaving its code open to guesses forever."""
    notices: list[str] = []
    async with two_routes(mailbox, None, notices, room_ttl_s=0.3) as route:
        assert route.public is not None, notices
        with pytest.raises(NoSuchCodeError, match="expired"):
            async with asyncio.timeout(20):  # a bound for a broken build, not a measure
                await route.relay.wait_paired(None)


async def test_a_chosen_code_in_use_at_the_public_mailbox_stays_on_this_network(
    mailbox: str,
) -> None:
    """A chosen code whose nameplate holds a stranger's live send at the public mailbox (its
    pake posted) drops the public route with a notice; the stranger hears nothing of ours,
    so neither code is burned."""
    stranger = await mailbox_side(mailbox, "3")
    try:
        await stranger.send(b"the stranger's pake")
        notices: list[str] = []
        async with two_routes(mailbox, Code("3", ("apple", "zebra")), notices) as route:
            assert route.public is None
            assert notices == [
                "this code works on this network only: the nameplate is in use on the "
                "public server 127.0.0.1"
            ]
            await route.relay.send(b"our pake")
            assert not await stranger.others_posted()
    finally:
        await stranger.close()


async def test_a_chosen_code_meets_its_waiting_receiver_at_the_public_mailbox(
    mailbox: str,
) -> None:
    """A receiver that waits for its sender (``receive --wait``) is in the mailbox first but
    has posted nothing: the sender's chosen code keeps the public route, and the receiver
    gets the sender's first message there."""
    receiver = await mailbox_side(mailbox, "4")
    try:
        notices: list[str] = []
        async with two_routes(mailbox, Code("4", ("apple", "zebra")), notices) as route:
            assert route.public == "127.0.0.1", notices
            await route.relay.send(b"the sender's pake")
            await receiver.wait_paired(20)
            assert await receiver.receive(20) == b"the sender's pake"
    finally:
        await receiver.close()
