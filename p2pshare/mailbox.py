"""Client of the magic-wormhole mailbox protocol, carrying our own pairing (docs/protocol.md,
"Pairing through a mailbox server").

A mailbox server (magic-wormhole-mailbox-server; the public one at relay.magic-wormhole.io)
keeps, per application id, short numeric *nameplates* that point at *mailboxes*; each side
``add``-s messages with a *phase* and a hex *body*, and the server delivers them to every
side that opened the mailbox (its own echo included), maybe twice, maybe out of order.
p2pshare uses it as one more carrier for exactly the messages it sends through
``p2pshare-signal``: our SPAKE2 message, our key confirmation, then sealed messages::

    sender                      mailbox server                      receiver
      │ bind {appid, side}          │                                   │ bind {appid, side}
      │ allocate ──> allocated {7}  │                                   │
      │ claim 7 ──> claimed {mbox}  │             claim 7 ──> claimed {mbox}
      │ open mbox; add pake ───────>│<──────────────── open mbox; add pake
      │<── message pake (theirs) ───│─── message pake (ours) ──────────>│
      │ release (both sides are in) │              release (both sides are in)
      │ add confirm, add 0, ... ───>│<──────────────────── add confirm, 0 ...
      │ close {mood} (data channel open)                     close {mood}

Phases: our n-th message is ``pake`` (n = 0), ``confirm`` (n = 1), then ``"0"``, ``"1"``...
for the sealed ones (n - 2). The receiving side reorders and deduplicates by phase; the
server is untrusted exactly like ``p2pshare-signal``: everything it says is checked here.

:func:`connect_any` opens a connection and lets the server's first message say which
protocol it speaks (a mailbox welcome is ``{"type": "welcome", "welcome": {...}}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from p2pshare import __version__
from p2pshare.errors import (
    CrowdedError,
    NoSuchCodeError,
    P2PShareError,
    PeerLostError,
    ServerRefusedError,
    SignallingError,
)
from p2pshare.files import printable
from p2pshare.rendezvous import (
    CONNECT_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_SERVER_TEXT_CHARS,
    RendezvousClient,
    check_nameplate,
    first_message,
    open_websocket,
)

logger = logging.getLogger(__name__)

APPID = "github.com/p2pshare/p2pshare"
"""Our application id on mailbox servers ("DNSNAME/APPNAME", as the protocol asks): our
nameplates and mailboxes are apart from magic-wormhole's file transfers, whose file
protocol we do not speak."""
PHASES = ("pake", "confirm")
"""The names of our first two messages; the sealed ones that follow are numbered from 0."""
MAX_MESSAGES = 10_000
"""A phase number beyond this is refused (a pairing sends a handful)."""
MAX_AHEAD = 8
"""Messages held for later phases at most (a pairing has a handful in flight): a hostile
server cannot make us keep thousands of bodies."""
PRESENCE_GRACE_S = 2.0
"""A receiver that finds nobody's message in the mailbox waits this long for one (the
sender adds its first message right after allocating) before saying "no such code"."""
CLOSE_WAIT_S = 2.0
_PHASE_NUMBER_RE = re.compile(r"0|[1-9][0-9]{0,5}", re.ASCII)
_SIDE_RE = re.compile(r"[0-9a-f]{1,32}", re.ASCII)
_MAILBOX_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}", re.ASCII)


def phase_name(index: int) -> str:
    """The mailbox phase carrying our ``index``-th message (0: SPAKE2, 1: confirmation)."""
    return PHASES[index] if index < len(PHASES) else str(index - len(PHASES))


def phase_index(phase: object) -> int | None:
    """The inverse of :func:`phase_name`; None for a phase we do not know (ignored, as the
    protocol asks)."""
    if not isinstance(phase, str):
        return None
    if phase in PHASES:
        return PHASES.index(phase)
    if _PHASE_NUMBER_RE.fullmatch(phase) and int(phase) < MAX_MESSAGES:
        return int(phase) + len(PHASES)
    return None


def server_label(url: str) -> str:
    """The host of a server URL, for messages ("relay.magic-wormhole.io")."""
    return printable(urllib.parse.urlsplit(url).hostname or url, 80)


class MailboxClient:
    """One connection to a mailbox server, used for one pairing (a :class:`Relay`).

    One task reads the connection: replies the client waits for go to their waiter, the
    peer's messages to an inbox ordered by phase, a server ``error`` fails every waiter.
    """

    kind = "mailbox"

    def __init__(
        self,
        ws: ClientConnection,
        url: str,
        ice_servers: list[dict[str, Any]],
        side: str | None = None,
    ) -> None:
        self._ws = ws
        self.url = url
        self.ice_servers = ice_servers
        self.side = side or secrets.token_hex(5)
        self.nameplate: str | None = None
        self.mood: str | None = None
        """What ``close`` tells the server (None: happy if we heard the peer, else lonely)."""
        self._mailbox: str | None = None
        self._released = False
        self._closed = False
        self._sent = 0
        self._peer_side: str | None = None
        self._inbox: dict[int, bytes] = {}
        self._next_in = 0
        self._arrived = asyncio.Event()
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._failure: P2PShareError | None = None
        self._reader = asyncio.create_task(self._read())

    @property
    def heard_peer(self) -> bool:
        return self._peer_side is not None

    @classmethod
    async def from_welcome(
        cls,
        ws: ClientConnection,
        url: str,
        welcome: dict[str, Any],
        ice_servers: list[dict[str, Any]],
        on_motd: Callable[[str], None],
    ) -> MailboxClient:
        """Check the mailbox ``welcome`` (stop on its ``error``, show its ``motd``) and bind
        to our application id."""
        body = welcome["welcome"]
        host = server_label(url)
        if "error" in body:
            raise ServerRefusedError(f"{host}: {printable(str(body['error']), 300)}")
        required = body.get("permission-required")
        if isinstance(required, dict) and "none" not in required:
            raise ServerRefusedError(
                f"{host} asks for a proof of work ({', '.join(map(str, required))[:80]}), "
                "which p2pshare does not do yet: use another server (--server)"
            )
        motd = body.get("motd")
        if motd is not None:
            on_motd(f"{host} says: {printable(str(motd), MAX_SERVER_TEXT_CHARS)}")
        client = cls(ws, url, ice_servers)
        try:
            await client._send(
                {
                    "type": "bind",
                    "appid": APPID,
                    "side": client.side,
                    "client_version": ["p2pshare", __version__],
                }
            )
        except BaseException:
            await client.close()
            raise
        return client

    async def _read(self) -> None:
        try:
            while True:
                try:
                    frame = await self._ws.recv()
                except ConnectionClosed as exc:
                    reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else "closed"
                    raise SignallingError(
                        "the rendezvous server closed the connection: "
                        + printable(reason, MAX_SERVER_TEXT_CHARS)
                    ) from None
                self._dispatch(_decode(frame))
        except P2PShareError as exc:
            self._fail(exc)

    def _dispatch(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "message":
            self._take_message(obj)
        elif kind == "error":
            self._fail(_server_error(obj))
        elif isinstance(kind, str) and kind in self._waiters:
            waiter = self._waiters.pop(kind)
            if not waiter.done():
                waiter.set_result(obj)
        # ack, released, welcome again, unknown types: ignored, as the protocol asks

    def _take_message(self, obj: dict[str, Any]) -> None:
        side, index, body = obj.get("side"), phase_index(obj.get("phase")), obj.get("body")
        if not isinstance(side, str) or not _SIDE_RE.fullmatch(side):
            raise SignallingError("the rendezvous server sent something unexpected")
        if side == self.side or index is None:
            return  # our own echo, or a phase we do not know
        if self._peer_side is None:
            self._peer_side = side
            self._release_soon()
        elif side != self._peer_side:
            logger.debug("mailbox: a message from a third side, ignored")
            return
        if not isinstance(body, str) or len(body) > 2 * MAX_BODY_BYTES:
            raise SignallingError("the rendezvous server relayed an invalid message")
        try:
            data = bytes.fromhex(body)
        except ValueError:
            raise SignallingError("a relayed message was not valid hex") from None
        if index >= self._next_in + MAX_AHEAD:
            raise SignallingError("the rendezvous server relayed messages far out of order")
        if index >= self._next_in:
            self._inbox.setdefault(index, data)  # a second delivery changes nothing
        self._arrived.set()

    def _release_soon(self) -> None:
        """Both sides are in: give the nameplate back at once (everybody shares them)."""
        if self.nameplate is not None and not self._released:
            self._released = True
            task = asyncio.ensure_future(self._send({"type": "release"}))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _fail(self, exc: P2PShareError) -> None:
        if self._failure is None:
            self._failure = exc
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result({"type": "failed"})
        self._waiters.clear()
        self._arrived.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _send(self, message: dict[str, Any]) -> None:
        self._raise_failure()
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed:
            raise SignallingError("the rendezvous server closed the connection") from None

    async def _request(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[reply] = waiter
        await self._send(message)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                answer = await waiter
        except TimeoutError:
            raise SignallingError("the rendezvous server did not answer in time") from None
        finally:
            self._waiters.pop(reply, None)
        self._raise_failure()
        return answer

    async def allocate(self, many: bool = False) -> str:
        """A nameplate from the server, claimed, its mailbox opened."""
        _refuse_many(many)
        reply = await self._request({"type": "allocate"}, "allocated")
        nameplate = check_nameplate(reply.get("nameplate"))
        await self._claim_and_open(nameplate)
        return nameplate

    async def claim(self, nameplate: str, create: bool = False, many: bool = False) -> None:
        """Claim ``nameplate`` and open its mailbox. A mailbox server creates nameplates on
        demand, so without ``create`` (a receiver given a code) we check that someone is
        there: their first message is in the mailbox already, delivered when we open it."""
        _refuse_many(many)
        await self._claim_and_open(nameplate)
        if create or self.heard_peer:
            return
        await self._request({"type": "ping", "ping": 1}, "pong")  # the backlog came first
        if not self.heard_peer:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_GRACE_S):
                    while not self.heard_peer and self._failure is None:
                        self._arrived.clear()
                        await self._arrived.wait()
        self._raise_failure()
        if not self.heard_peer:
            raise NoSuchCodeError(
                f"no sender is waiting on code {nameplate}-... at {server_label(self.url)} "
                "(check the code; codes are single use)"
            )

    async def others_posted(self) -> bool:
        """Whether another side has posted in our mailbox already, after a ping round trip
        (the server replays a mailbox's messages when it is opened, before the ``pong``).

        A sender that chose its code asks this after its claim: the public server creates
        nameplates on demand and hands out small numbers first, so a chosen one may be a
        stranger's live send (whose ``pake`` would then meet ours, and both codes burn). A
        receiver waiting for its sender (``receive --wait``) never posts first.
        """
        await self._request({"type": "ping", "ping": 1}, "pong")
        return self.heard_peer

    async def _claim_and_open(self, nameplate: str) -> None:
        self.nameplate = nameplate
        reply = await self._request({"type": "claim", "nameplate": nameplate}, "claimed")
        mailbox = reply.get("mailbox")
        if not isinstance(mailbox, str) or not _MAILBOX_RE.fullmatch(mailbox):
            raise SignallingError("the rendezvous server sent an invalid mailbox")
        self._mailbox = mailbox
        await self._send({"type": "open", "mailbox": mailbox})

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        """Wait for the peer's first message (a mailbox has no "paired" of its own)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self.heard_peer:
                    self._raise_failure()
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise PeerLostError("the other side did not come in time") from None

    async def send(self, body: bytes) -> None:
        if len(body) > MAX_BODY_BYTES:
            raise SignallingError("signalling message too large for the rendezvous server")
        phase = phase_name(self._sent)
        self._sent += 1
        await self._send({"type": "add", "phase": phase, "body": body.hex()})

    async def receive(self, timeout_s: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                while self._next_in not in self._inbox:
                    self._raise_failure()
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise PeerLostError("the other side did not answer in time") from None
        self._next_in += 1
        return self._inbox.pop(self._next_in - 1)

    async def close(self) -> None:
        """Release the nameplate and close the mailbox with our mood, then disconnect."""
        if self._closed:
            return
        self._closed = True
        mood = self.mood or ("happy" if self.heard_peer else "lonely")
        with contextlib.suppress(P2PShareError):
            if self.nameplate is not None and not self._released:
                self._released = True
                await self._send({"type": "release"})
            if self._mailbox is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_WAIT_S):
                        await self._request({"type": "close", "mood": mood}, "closed")
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), CLOSE_WAIT_S)


def _refuse_many(many: bool) -> None:
    if many:
        raise SignallingError(
            "send --many needs p2pshare-signal (or the local network): a mailbox server "
            "pairs two sides only"
        )


def _decode(frame: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise SignallingError("the rendezvous server sent something unexpected")
    return obj


def _server_error(obj: dict[str, Any]) -> P2PShareError:
    text = printable(str(obj.get("error", "")), MAX_SERVER_TEXT_CHARS)
    if text == "crowded":
        return CrowdedError()
    if text == "reclaimed":
        return NoSuchCodeError("this code was used already (codes are single use)")
    return SignallingError(f"rendezvous server: {text}")


async def connect_any(
    url: str,
    ice_servers: list[dict[str, Any]] | None = None,
    on_motd: Callable[[str], None] = lambda text: None,
) -> RendezvousClient | MailboxClient:
    """A client of the server at ``url``, whichever protocol its first message says it
    speaks. ``ice_servers`` go with a mailbox server (which suggests none); ``on_motd``
    receives its message of the day, to show the user."""
    ws, url = await open_websocket(url)
    try:
        welcome = await first_message(ws)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), CLOSE_WAIT_S)
        raise
    if isinstance(welcome.get("welcome"), dict) and welcome.get("type") == "welcome":
        try:
            return await MailboxClient.from_welcome(
                ws, url, welcome, list(ice_servers or []), on_motd
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), CLOSE_WAIT_S)
            raise
    return await RendezvousClient.from_welcome(ws, url, welcome)
