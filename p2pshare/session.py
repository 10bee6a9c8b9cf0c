"""The I/O loop of one transfer: rendezvous, PAKE, WebRTC, then the transfer protocol.

::

    send(path)                                                   receive(code)
      │ allocate ─> server ─> nameplate; print code                 │
      │ PAKE start (held by the server until the receiver comes)    │ claim(nameplate)
      │<══════════════ PAKE, key confirmation (pake.py) ═══════════>│
      │ create offer ── sealed ──> server ──> accept offer          │
      │<── sealed answer ─────────────────────────────────────────  │
      │══════════ ICE, DTLS, SCTP: data channel open ══════════════ │
      │ bye to the server (it is not needed any more)               │ bye
      │══════ transfer.py: offer, accept, data/credit, ends, done ═ │
      │ close after Done                                            │ returns when the sender closed

This module owns every await; :mod:`p2pshare.transfer` decides what to send, :mod:`p2pshare.disk`
does the blocking file work in worker threads, and progress goes out through ``on_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from p2pshare import disk, transfer
from p2pshare import messages as m
from p2pshare.codes import Code, generate_words, parse_code
from p2pshare.config import Settings
from p2pshare.errors import (
    DeclinedError,
    InterruptedTransferError,
    P2PShareError,
    PeerLostError,
    ProtocolError,
)
from p2pshare.files import check_offer, printable
from p2pshare.pake import PakeSession, Role
from p2pshare.rendezvous import RendezvousClient
from p2pshare.webrtc import IceConfig, PeerLink, lan_addresses

logger = logging.getLogger(__name__)

T = TypeVar("T")
GOODBYE_WAIT_S = 3.0
"""How long the side that stops waits for the peer to read its last message and close.
Closing at once would send an SCTP ABORT that can overtake that message (DESIGN.md)."""


# -- what the caller sees ---------------------------------------------------------------------


@dataclass(frozen=True)
class CodeReady:
    """The sender's code is ready to be read out; ``server`` is set when the receiver must be
    told which rendezvous server to use (the sender's embedded one)."""

    code: str
    server: str | None


@dataclass(frozen=True)
class Connected:
    """The data channel to the peer is open."""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class OfferSummary:
    """What the receiver is asked to accept. Names are already made printable."""

    files: int
    total_bytes: int
    names: tuple[str, ...]
    destination: Path


@dataclass(frozen=True)
class TransferResult:
    bytes: int
    seconds: float
    sha256: str
    path: Path | None


SessionEvent = CodeReady | Connected | Progress
EventSink = Callable[[SessionEvent], None]
Confirm = Callable[[OfferSummary], Awaitable[bool]]


def _ignore(event: SessionEvent) -> None:
    pass


# -- pairing and connecting -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _rendezvous(settings: Settings) -> AsyncIterator[tuple[RendezvousClient, str | None]]:
    """Connect to the configured server, or start one in this process (sender only)."""
    if settings.server is not None:
        client = await RendezvousClient.connect(settings.server)
        try:
            yield client, None
        finally:
            await client.close()
        return
    from signal_server.server import ServerSettings, start_server

    addresses = settings.ice.local_addresses or tuple(lan_addresses())
    host = next((a for a in addresses if ":" not in a), None)
    if host is None:
        raise P2PShareError(
            "no local network address found to run the rendezvous server on; pass --server"
        )
    async with start_server(ServerSettings(host=host, port=0)) as running:
        client = await RendezvousClient.connect(running.url)
        try:
            yield client, running.url
        finally:
            await client.close()


async def _pake(rv: RendezvousClient, role: Role, code: Code, settings: Settings) -> PakeSession:
    pake = PakeSession(role, code.password)
    await rv.send(pake.start())
    # The sender waits as long as the server keeps its code (the room TTL).
    await rv.wait_paired(None if role is Role.SENDER else settings.connect_timeout_s)
    pake.finish(await rv.receive(settings.connect_timeout_s))
    await rv.send(pake.confirmation())
    pake.verify_confirmation(await rv.receive(settings.connect_timeout_s))
    return pake


def _seal_sdp(pake: PakeSession, kind: str, sdp: str) -> bytes:
    return pake.seal(json.dumps({"type": kind, "sdp": sdp}).encode())


def _open_sdp(pake: PakeSession, kind: str, sealed: bytes) -> str:
    try:
        obj = json.loads(pake.open(sealed))
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("type") != kind or not isinstance(obj.get("sdp"), str):
        raise ProtocolError(f"the other side sent no valid {kind}")
    sdp: str = obj["sdp"]
    return sdp


def _ice_config(settings: Settings, rv: RendezvousClient) -> IceConfig:
    servers = (*settings.ice.servers, *rv.ice_servers)
    return IceConfig(servers=servers, local_addresses=settings.ice.local_addresses)


async def _connect(
    rv: RendezvousClient, pake: PakeSession, settings: Settings, stack: contextlib.AsyncExitStack
) -> PeerLink:
    link = PeerLink(_ice_config(settings, rv))
    stack.push_async_callback(link.close)
    timeout = settings.connect_timeout_s
    if pake.role is Role.SENDER:
        await rv.send(_seal_sdp(pake, "offer", await link.create_offer()))
        await link.accept_answer(_open_sdp(pake, "answer", await rv.receive(timeout)))
    else:
        offer = _open_sdp(pake, "offer", await rv.receive(timeout))
        await rv.send(_seal_sdp(pake, "answer", await link.accept_offer(offer)))
    await link.wait_open(timeout)
    return link


async def _pair_and_connect(
    rv: RendezvousClient,
    role: Role,
    code: Code,
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    on_event: EventSink,
) -> PeerLink:
    """PAKE, sealed offer/answer, ICE+DTLS; then leave the server, which is no longer needed."""
    pake = await _pake(rv, role, code, settings)
    link = await _connect(rv, pake, settings, stack)
    await rv.close()
    on_event(Connected())
    return link


# -- running the data channel -----------------------------------------------------------------


class _Wire:
    """Feeds incoming frames to ``handle``, sends keepalives, and notices a silent peer."""

    def __init__(self, link: PeerLink, settings: Settings, handle: Callable[[bytes], None]):
        self.link = link
        self.settings = settings
        self.handle = handle
        self.changed = asyncio.Event()
        self.closing = False
        """Set once the transfer is complete: the peer closing is then expected."""

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    async def _read(self) -> None:
        timeout = self.settings.peer_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout):
                    frame = await self.link.incoming.get()
            except TimeoutError:
                raise PeerLostError(
                    f"the other side stopped answering (nothing for {timeout:g} s)"
                ) from None
            if not frame:
                if self.closing:
                    return
                raise PeerLostError("the connection to the other side was lost")
            self.handle(frame)
            self.changed.set()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            if self.closing:
                return
            self.link.send(transfer.ping())

    async def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` while reading and pinging; the first failure of any of them wins."""
        main_task = asyncio.ensure_future(main)
        helpers = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._ping())]
        pending: set[asyncio.Future[Any]] = {main_task, *helpers}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # A helper's error is the root cause (the peer aborted, or vanished) even when
                # main failed in the same round because of it; a helper's clean end is not.
                for helper in helpers:
                    if helper in done:
                        helper.result()
                if main_task in done:
                    return main_task.result()
        finally:
            for task in (main_task, *helpers):
                task.cancel()
            await asyncio.gather(main_task, *helpers, return_exceptions=True)


async def _stop_with(link: PeerLink, error: P2PShareError) -> None:
    """Tell the peer why we stop (unless it told us, or is gone) and give it time to read it."""
    if error.remote or isinstance(error, PeerLostError) or link.lost:
        return
    with contextlib.suppress(P2PShareError):
        link.send(transfer.abort(error))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(link.wait_lost(), GOODBYE_WAIT_S)


@contextlib.asynccontextmanager
async def _telling_peer(link: PeerLink) -> AsyncIterator[None]:
    try:
        yield
    except P2PShareError as exc:
        await _stop_with(link, exc)
        raise
    except asyncio.CancelledError:
        await _stop_with(link, InterruptedTransferError("the other side cancelled the transfer"))
        raise


# -- sending ----------------------------------------------------------------------------------


async def send(
    path: Path | str,
    settings: Settings | None = None,
    *,
    code: Code | str | None = None,
    on_event: EventSink = _ignore,
) -> TransferResult:
    """Send the file at ``path``; returns once the receiver has verified it.

    ``code`` chooses the code (its words must be hard to guess); by default the server
    allocates a nameplate and the words are drawn at random. Progress and the code are reported
    through ``on_event``.
    """
    settings = settings or Settings()
    source = await asyncio.to_thread(disk.FileSource, Path(path))
    try:
        async with contextlib.AsyncExitStack() as stack:
            rv, embedded_url = await stack.enter_async_context(_rendezvous(settings))
            if code is None:
                chosen = Code(await rv.allocate(), generate_words(settings.code_words))
            else:
                chosen = parse_code(code) if isinstance(code, str) else code
                await rv.claim(chosen.nameplate, create=True)
            on_event(CodeReady(str(chosen), embedded_url))
            link = await _pair_and_connect(rv, Role.SENDER, chosen, settings, stack, on_event)
            async with _telling_peer(link):
                return await _send_file(link, source, settings, on_event)
    finally:
        source.close()


async def _send_file(
    link: PeerLink, source: disk.FileSource, settings: Settings, on_event: EventSink
) -> TransferResult:
    proto = transfer.SenderProtocol(m.Offer((source.entry,)))
    state = {"accepted": False, "finished": False}

    def handle(frame: bytes) -> None:
        for event in proto.receive(frame):
            if isinstance(event, transfer.PeerAborted):
                raise event.error
            if isinstance(event, transfer.Accepted):
                state["accepted"] = True
            elif isinstance(event, transfer.Finished):
                state["finished"] = True

    wire = _Wire(link, settings, handle)

    async def main() -> TransferResult:
        link.send(proto.start())
        await wire.until(lambda: state["accepted"])
        started = time.monotonic()
        payload_max = link.max_message_bytes - len(m.DATA_HEADER)
        total = source.size
        on_event(Progress(0, total))
        while proto.current_remaining:
            chunk = await asyncio.to_thread(source.read, min(payload_max, proto.current_remaining))
            await wire.until(functools.partial(proto.can_send, len(chunk)))
            link.send(proto.data(chunk))
            await link.drain()
            on_event(Progress(source.read_bytes, total))
        digest = await asyncio.to_thread(source.hexdigest)
        link.send(proto.end_file(digest))
        await wire.until(lambda: state["finished"])
        wire.closing = True
        return TransferResult(total, time.monotonic() - started, digest, source.path)

    return await wire.run(main())


# -- receiving --------------------------------------------------------------------------------


async def receive(
    code: Code | str,
    settings: Settings | None = None,
    *,
    on_event: EventSink = _ignore,
    confirm: Confirm | None = None,
) -> TransferResult:
    """Receive what the holder of ``code`` sends; returns once it is verified and in place.

    ``confirm`` is asked before anything is written (None: accept). ``settings.server`` is
    required: only the sender can run an embedded server.
    """
    settings = settings or Settings()
    parsed = parse_code(code) if isinstance(code, str) else code
    if settings.server is None:
        raise P2PShareError("receive needs the rendezvous server's address (--server)")
    async with contextlib.AsyncExitStack() as stack:
        rv, _ = await stack.enter_async_context(_rendezvous(settings))
        await rv.claim(parsed.nameplate)
        link = await _pair_and_connect(rv, Role.RECEIVER, parsed, settings, stack, on_event)
        async with _telling_peer(link):
            return await _receive_file(link, settings, on_event, confirm)


async def _receive_file(
    link: PeerLink, settings: Settings, on_event: EventSink, confirm: Confirm | None
) -> TransferResult:
    proto = transfer.ReceiverProtocol()
    offers: asyncio.Future[m.Offer] = asyncio.get_running_loop().create_future()
    work: asyncio.Queue[transfer.ChunkReceived | transfer.FileEnded] = asyncio.Queue()

    def handle(frame: bytes) -> None:
        for event in proto.receive(frame):
            if isinstance(event, transfer.PeerAborted):
                raise event.error
            if isinstance(event, transfer.OfferReceived):
                offers.set_result(event.offer)
            elif isinstance(event, transfer.ChunkReceived | transfer.FileEnded):
                work.put_nowait(event)

    wire = _Wire(link, settings, handle)

    async def main() -> TransferResult:
        offer = await offers
        parts = check_offer(offer)
        if len(offer.files) != 1 or len(parts[0]) != 1:
            raise ProtocolError("this version receives one file at a time")
        entry = offer.files[0]
        target = disk.resolve_target(settings.output, parts[0][0], settings.overwrite)
        disk.check_free_space(target.directory, offer.total_bytes)
        summary = OfferSummary(1, offer.total_bytes, (printable(entry.path),), target.final)
        if confirm is not None and not await confirm(summary):
            raise DeclinedError("declined by the receiver")
        sink = await asyncio.to_thread(disk.FileSink, target, entry)
        try:
            return await _write_file(sink, entry.size)
        except BaseException:
            await asyncio.to_thread(sink.discard)
            raise

    async def _write_file(sink: disk.FileSink, total: int) -> TransferResult:
        link.send(proto.accept(settings.window_bytes))
        started = time.monotonic()
        on_event(Progress(0, total))
        while True:
            item = await work.get()
            if isinstance(item, transfer.ChunkReceived):
                await asyncio.to_thread(sink.write, item.payload)
                grant = proto.consumed(len(item.payload))
                if grant is not None:
                    link.send(grant)
                on_event(Progress(sink.written, total))
                continue
            digest = await asyncio.to_thread(sink.finish, item.sha256)
            wire.closing = True
            for frame in proto.file_verified(item.index):
                link.send(frame)
            break
        seconds = time.monotonic() - started
        # The sender closes once it has read Done; closing first could lose Done (DESIGN.md).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.wait_lost(), GOODBYE_WAIT_S)
        return TransferResult(total, seconds, digest, sink.target.final)

    return await wire.run(main())
