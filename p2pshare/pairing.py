"""Pairing two peers by their code: rendezvous, PAKE, sealed offer and answer, then WebRTC.

::

    sender                         rendezvous server                    receiver
      │ rendezvous(): connect, or start one here (sender only)            │ rendezvous()
      │ allocate / claim(nameplate) ──>│<── claim(nameplate) ───────────── │
      │<═════════ PAKE on the full code, key confirmation (pake.py) ═════>│
      │── sealed SDP offer ───────────>│──────────────────────────────────>│
      │<───────────────────────────────│<───────────── sealed SDP answer ──│
      │══════════════ ICE, DTLS, SCTP: the data channel opens ═════════════│
      │ bye (the server is not needed any more)                    bye     │

:func:`pair` is the step after the room is joined; the CLI's sessions and other clients (the
tests' hostile sender) call it with a :func:`rendezvous` client.

``send --many`` pairs each receiver separately (:func:`authenticate_receiver`, then
:func:`connect`), with its own SPAKE2 and keys, and checks the receiver's key confirmation
*before* showing its own, through one :class:`CodeGuard` for the whole code: the first wrong
confirmation burns the code, and no later guess is ever evaluated (docs/protocol.md, many mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import ipaddress
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from p2pshare import media_stand_in
from p2pshare.codes import Code
from p2pshare.config import IceConfig, Settings
from p2pshare.errors import (
    ConnectError,
    NoSuchCodeError,
    P2PShareError,
    PeerLostError,
    ProtocolError,
    SignallingError,
    WrongCodeError,
    error_from_peer,
)
from p2pshare.events import (
    ConfirmWords,
    Connected,
    EventSink,
    Notice,
    SessionEvent,
    Verification,
    ignore,
)
from p2pshare.files import printable
from p2pshare.lan import ws_url as lan_ws_url
from p2pshare.mailbox import MailboxClient, connect_any
from p2pshare.pake import PakeSession, Role, Seals
from p2pshare.rendezvous import Relay, RendezvousClient

if TYPE_CHECKING:
    from p2pshare.webrtc import PeerLink

logger = logging.getLogger(__name__)

WEBRTC_MODULE = "p2pshare.webrtc"


def preload_webrtc() -> None:
    """Start importing aiortc (~0.1 s of CPU, most of a receiver's start) on a thread, so
    that it runs while the rendezvous and the PAKE wait on the network; :func:`connect`'s
    own import then finds it loaded, or waits for the thread to finish it. Errors are left
    for that import to raise, in the caller's thread."""
    if WEBRTC_MODULE in sys.modules:
        return

    def load() -> None:
        with contextlib.suppress(BaseException):  # connect() imports it again, and reports
            importlib.import_module(WEBRTC_MODULE)

    threading.Thread(target=load, name="p2pshare-preload", daemon=True).start()


@contextlib.asynccontextmanager
async def rendezvous(
    settings: Settings, on_notice: Callable[[str], None] = lambda text: None
) -> AsyncIterator[tuple[RendezvousClient | MailboxClient, str | None]]:
    """A client of the configured server (either kind: its greeting says which), or of one
    started in this process (sender only): then its URL, which the receiver must be told,
    comes with it. ``on_notice`` gets what the server's operator wants users to read."""
    if settings.server is not None:
        client = await connect_any(settings.server, settings.public.ice_servers(), on_notice)
        try:
            yield client, None
        except BaseException as exc:
            tell_mood(client, exc)
            raise
        finally:
            await client.close()
        return
    from p2pshare.webrtc import lan_addresses
    from signal_server.server import ServerSettings, start_server

    addresses = settings.ice.local_addresses or tuple(lan_addresses())
    host = next((a for a in addresses if ":" not in a), None)
    if host is None:
        # Expected on a machine with no network (a container, a laptop offline): exit 8.
        raise ConnectError(
            "no network: this machine has no address but loopback to offer the receiver "
            "(for a receiver on this machine, add --local-address 127.0.0.1; or pass --server)"
        )
    # Every IPv4 address, not just ``host``: after a network change the receiver reaches it
    # at the address this machine has then (reconnect, places.py). A loopback-only choice
    # (--local-address 127.0.0.1) stays on loopback.
    bind = host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"  # noqa: S104
    async with contextlib.AsyncExitStack() as stack:
        try:
            running = await stack.enter_async_context(
                start_server(ServerSettings(host=bind, port=settings.server_port))
            )
        except OSError as exc:  # --port taken, or not ours to take
            raise SignallingError(
                f"cannot run the rendezvous server on {host} port {settings.server_port}: "
                f"{(os.strerror(exc.errno) if exc.errno else str(exc)).lower()}"
            ) from None
        url = lan_ws_url(host, running.server.sockets[0].getsockname()[1])
        client = await RendezvousClient.connect(url)
        try:
            yield client, url
        finally:
            await client.close()


def mood_for(exc: BaseException) -> str:
    """What a mailbox server is told of a pairing that ended with ``exc`` (it keeps moods
    for its operator's statistics): ``scary`` for a wrong code, ``lonely`` for nobody."""
    if isinstance(exc, WrongCodeError):
        return "scary"
    if isinstance(exc, NoSuchCodeError | PeerLostError):
        return "lonely"
    return "errory"


@contextlib.asynccontextmanager
async def pair(
    rv: Relay,
    role: Role,
    code: Code,
    settings: Settings,
    on_event: EventSink = ignore,
) -> AsyncIterator[PeerLink]:
    """PAKE on ``code`` with whoever joined ``rv``'s room, sealed offer/answer, ICE and DTLS;
    then leave the server, which is no longer needed. Yields the open link, closed on exit.

    ``rv`` has joined the room already (allocate or claim); :class:`Connected` goes to
    ``on_event`` once the data channel is open.
    """
    async with paired(rv, role, code, settings, on_event) as done:
        yield done.link


@dataclasses.dataclass(frozen=True)
class Paired:
    """An open link, the session key's holder, and whether both sides said they reconnect
    (then a reconnect derives its keys from ``pake``: reconnect.py)."""

    pake: PakeSession
    link: PeerLink
    reconnects: bool


@contextlib.asynccontextmanager
async def paired(
    rv: Relay,
    role: Role,
    code: Code,
    settings: Settings,
    on_event: EventSink = ignore,
    reconnects: bool = False,
) -> AsyncIterator[Paired]:
    """:func:`pair`, offering to reconnect when ``reconnects``."""
    try:
        pake = await authenticate(rv, role, code, settings)
    except BaseException as exc:
        tell_mood(rv, exc)
        raise
    agreed: list[bool] | None = [] if reconnects else None
    async with connect(rv, pake, settings, on_event, agreed) as link:
        yield Paired(pake, link, bool(agreed and agreed[0]))


def tell_mood(rv: Relay, exc: BaseException) -> None:
    """Before a mailbox is closed after ``exc``: say how the pairing went (first word wins)."""
    target = getattr(rv, "chosen", rv)  # routes.FirstOf: the route a peer spoke on
    if isinstance(target, MailboxClient) and target.mood is None:
        target.mood = mood_for(exc)


@contextlib.asynccontextmanager
async def connect(
    rv: Relay,
    pake: PakeSession,
    settings: Settings,
    on_event: EventSink = ignore,
    agreed: list[bool] | None = None,
) -> AsyncIterator[PeerLink]:
    """The step of :func:`pair` after the PAKE: sealed offer/answer, ICE and DTLS, then
    leave the server. Yields the open link, closed on exit. With ``agreed``, this side
    offers to reconnect, and ``agreed`` gets whether the peer does too."""
    from p2pshare.webrtc import PeerLink

    if media_stand_in.installed():
        logger.debug("aiortc loaded without PyAV (data channels only)")
    on_event(Verification(pake.verification_words()))
    link = PeerLink(ice_config(settings, rv), settings.tuning)
    try:
        try:
            both = await _connect(rv, pake, link, settings, on_event, agreed is not None)
            if agreed is not None:
                agreed.append(both)
        except BaseException as exc:
            tell_mood(rv, exc)
            raise
        await rv.close()
        path = link.path()
        if path is not None:
            logger.info(
                "connected: %s (local %s, remote %s)", path.describe(), path.local, path.remote
            )
        on_event(Connected(path))
        yield link
    finally:
        await link.close()


RECONNECT_OPEN_S = 10.0
"""A reconnect attempt's ICE and DTLS deadline (the first connection has the connect timeout,
30 s): both peers were just connected, so a path that works opens in a second or two; one
that does not yet (UDP still dropped) is tried again sooner. Measured: a 45 s UDP outage
ended 6-7 s before data flowed again with 30 s, up to ~38 s depending on the outage's length
(bench/reconnect.py)."""


async def connect_again(rv: Relay, sealer: Seals, settings: Settings) -> PeerLink:
    """A reconnect's new peer connection (reconnect.py): sealed offer and answer under the
    attempt's keys, ICE and DTLS as the first time, then leave the server. The caller closes
    the link it gets; on failure it is closed here."""
    from p2pshare.webrtc import PeerLink

    link = PeerLink(ice_config(settings, rv), settings.tuning)
    try:
        open_s = min(settings.connect_timeout_s, RECONNECT_OPEN_S)
        await _connect(rv, sealer, link, settings, ignore, reconnects=True, open_s=open_s)
    except BaseException:
        await link.close()
        raise
    await rv.close()
    return link


class CodeGuard:
    """One code shared by many receivers (``send --many``): it admits everyone who proves it
    and is burned by the first key confirmation that fails.

    Each check is synchronous (one event loop), so after the first failure no other
    confirmation, however many were in flight, is ever evaluated: an attacker learns the
    answer to one guess only.
    """

    def __init__(self) -> None:
        self.burned = False

    def exchange(self, pake: PakeSession, peer_message: bytes) -> None:
        """:meth:`PakeSession.finish` on a receiver's PAKE message, through the guard: a
        malformed message fails the key exchange like a wrong confirmation and burns the
        code the same way (:class:`NoSuchCodeError` if it is burned already)."""
        if self.burned:
            raise NoSuchCodeError("the sender no longer admits receivers on this code")
        try:
            pake.finish(peer_message)
        except WrongCodeError:
            self.burned = True
            raise

    def admit(self, pake: PakeSession, confirmation: bytes) -> None:
        """Check a receiver's confirmation; raise :class:`WrongCodeError` (and burn the
        code) if it is wrong, :class:`NoSuchCodeError` if the code is burned already (the
        confirmation is then never looked at)."""
        if self.burned:
            raise NoSuchCodeError("the sender no longer admits receivers on this code")
        try:
            pake.verify_confirmation(confirmation)
        except WrongCodeError:
            self.burned = True
            raise


async def authenticate_receiver(
    rv: Relay, code: Code, settings: Settings, guard: CodeGuard
) -> PakeSession:
    """The sender's SPAKE2 with one receiver of a many-mode room, on a fresh
    :class:`PakeSession` (fresh keys). The receiver's confirmation is checked through
    ``guard`` before ours is sent, so a receiver that never confirms learns nothing about
    its guess; a wrong one still gets ours, to stop with "wrong code" at once."""
    pake = PakeSession(Role.SENDER, code.password)
    await rv.send(pake.start())
    guard.exchange(pake, await rv.receive(settings.connect_timeout_s))
    theirs = await rv.receive(settings.connect_timeout_s)
    try:
        guard.admit(pake, theirs)
    except WrongCodeError:
        with contextlib.suppress(P2PShareError):
            await rv.send(pake.confirmation())
        raise
    await rv.send(pake.confirmation())
    return pake


class WordsGate:
    """An event sink for :func:`connect` that passes every event on and keeps the security
    words, for a sender whose user confirms them (``--verify``) before anything leaves."""

    def __init__(self, on_event: EventSink, confirm: ConfirmWords | None, who: str) -> None:
        self.on_event = on_event
        self.confirm = confirm
        self.who = who
        """Who the words are shared with, as the question names it."""
        self.words: Verification | None = None

    def __call__(self, event: SessionEvent) -> None:
        if isinstance(event, Verification):
            self.words = event
        self.on_event(event)

    def gate(self) -> Callable[[], Awaitable[bool]] | None:
        """What the sender awaits before its offer; None without ``confirm``."""
        confirm = self.confirm
        if confirm is None:
            return None

        async def confirmed() -> bool:
            if self.words is None:
                raise RuntimeError("no security words: the key exchange has not run")
            return await confirm(self.words, self.who)

        return confirmed


async def tell_to_wait(rv: Relay, pake: PakeSession, message: str) -> None:
    """Sealed, before the offer: the receiver is admitted and waits its turn (it shows
    ``message`` and waits for the offer without its connect deadline)."""
    await rv.send(pake.seal(json.dumps({"type": WAIT, "message": message}).encode()))


WAIT = "wait"


async def authenticate(rv: Relay, role: Role, code: Code, settings: Settings) -> PakeSession:
    """SPAKE2 on ``code`` with the peer in ``rv``'s room, then key confirmation both ways:
    the first step of :func:`pair`, public for other clients and for tests."""
    pake = PakeSession(role, code.password)
    await rv.send(pake.start())
    # The sender waits as long as the server keeps its code (the room TTL).
    await rv.wait_paired(None if role is Role.SENDER else settings.connect_timeout_s)
    pake.finish(await rv.receive(settings.connect_timeout_s))
    await rv.send(pake.confirmation())
    pake.verify_confirmation(await rv.receive(settings.connect_timeout_s))
    return pake


MAX_SEALED_JSON_BYTES = 256 * 1024
"""An offer or answer with every candidate of a well-connected machine is a few KiB."""


def _seal_sdp(pake: Seals, kind: str, sdp: str, reconnects: bool = False) -> bytes:
    """``reconnects``: this side will look for the peer again if the path dies (a key the
    page and older clients ignore; both sides must say it, docs/protocol.md)."""
    obj: dict[str, Any] = {"type": kind, "sdp": sdp}
    if reconnects:
        obj[RECONNECTS] = 1
    return pake.seal(json.dumps(obj).encode())


RECONNECTS = "reconnect"


def _seal_abort(pake: Seals, error: P2PShareError) -> bytes:
    """Tell the peer, sealed, why we stop before the data channel opened (it would otherwise
    wait for a connection that never comes until its deadline)."""
    return pake.seal(
        json.dumps({"type": "abort", "error": error.name, "message": error.message}).encode()
    )


def _open_signal(pake: Seals, sealed: bytes) -> dict[str, Any]:
    """Open and decode a sealed signalling message; its shape is the caller's to check."""
    plaintext = pake.open(sealed)
    if len(plaintext) > MAX_SEALED_JSON_BYTES:
        raise ProtocolError("the other side sent an oversized signalling message")
    try:
        obj = json.loads(plaintext)
    except (ValueError, RecursionError):  # RecursionError: "[" nested thousands deep
        obj = None
    if not isinstance(obj, dict):
        raise ProtocolError("the other side sent a malformed signalling message")
    if obj.get("type") == "abort":
        name, message = obj.get("error"), obj.get("message")
        if not isinstance(name, str) or not isinstance(message, str):
            raise ProtocolError("the other side stopped, with a malformed reason")
        raise error_from_peer(name[:64], "the other side: " + printable(message))
    return obj


def _open_sdp(pake: Seals, kind: str, sealed: bytes) -> dict[str, Any]:
    obj = _open_signal(pake, sealed)
    if obj.get("type") != kind or not isinstance(obj.get("sdp"), str):
        raise ProtocolError(f"the other side sent no valid {kind}")
    return obj


async def _watch_for_abort(rv: Relay, pake: Seals) -> None:
    """While ICE and DTLS run: raise the peer's sealed abort if one comes. Anything else on
    the rendezvous (the peer leaving the room once its side of the channel is open, a
    closed server) is not a failure of ours: the connect deadline still applies."""
    try:
        sealed = await rv.receive(None)
    except P2PShareError:
        await asyncio.Event().wait()  # never set: the link's own outcome decides
    _open_signal(pake, sealed)
    raise ProtocolError("the other side sent an unexpected signalling message")


def ice_config(settings: Settings, rv: Relay) -> IceConfig:
    """The user's servers first (aiortc uses the first STUN and the first TURN URL, so they
    override the server's), then what the rendezvous server advertised."""
    config = IceConfig(
        servers=(*settings.ice.servers, *rv.ice_servers),
        local_addresses=settings.ice.local_addresses,
        policy=settings.ice.policy,
    )
    if config.policy == "relay" and not config.has_turn():
        raise ConnectError(
            "--relay-only needs a TURN server, and neither --turn nor the "
            "rendezvous server provided one"
        )
    return config


async def _receive_offer(
    rv: Relay, pake: Seals, timeout_s: float, on_event: EventSink
) -> dict[str, Any]:
    """The sealed offer; before it, a sender serving many receivers may say we wait our turn
    (then its offer may take as long as the others' transfers: no deadline, but the server
    tells us if the sender leaves)."""
    wait: float | None = timeout_s
    while True:
        obj = _open_signal(pake, await rv.receive(wait))
        if obj.get("type") != WAIT:
            break
        message = obj.get("message")
        if not isinstance(message, str):
            raise ProtocolError("the other side sent a malformed signalling message")
        on_event(Notice(printable(message[:200])))
        wait = None
    if obj.get("type") != "offer" or not isinstance(obj.get("sdp"), str):
        raise ProtocolError("the other side sent no valid offer")
    return obj


async def _connect(
    rv: Relay,
    pake: Seals,
    link: PeerLink,
    settings: Settings,
    on_event: EventSink,
    reconnects: bool = False,
    open_s: float | None = None,
) -> bool:
    """Sealed offer and answer, ICE and DTLS (within ``open_s``, default the connect
    timeout); True when both sides said they reconnect."""
    timeout = settings.connect_timeout_s
    try:
        if pake.role is Role.SENDER:
            await rv.send(_seal_sdp(pake, "offer", await link.create_offer(), reconnects))
            peer = _open_sdp(pake, "answer", await rv.receive(timeout))
            await link.accept_answer(peer["sdp"])
        else:
            peer = await _receive_offer(rv, pake, timeout, on_event)
            answer = await link.accept_offer(peer["sdp"])
            await rv.send(_seal_sdp(pake, "answer", answer, reconnects))
    except P2PShareError as exc:
        if not exc.remote:
            with contextlib.suppress(P2PShareError):
                await rv.send(_seal_abort(pake, exc))
        raise
    opened = asyncio.ensure_future(link.wait_open(open_s or timeout))
    aborted = asyncio.ensure_future(_watch_for_abort(rv, pake))
    try:
        done, _ = await asyncio.wait({opened, aborted}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    except ProtocolError as exc:
        # Tampering found while ICE runs (a sealed message replayed or altered): the peer,
        # which cannot see it, is told at once rather than at its connect deadline.
        if not exc.remote:
            with contextlib.suppress(P2PShareError):
                await rv.send(_seal_abort(pake, exc))
        raise
    finally:
        opened.cancel()
        aborted.cancel()
    return reconnects and peer.get(RECONNECTS) == 1
