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
import dataclasses
import functools
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from p2pshare import disk, transfer
from p2pshare import messages as m
from p2pshare.codes import Code, generate_words, parse_code
from p2pshare.config import Settings
from p2pshare.errors import (
    ConnectError,
    DeclinedError,
    InterruptedTransferError,
    P2PShareError,
    PeerLostError,
    ProtocolError,
)
from p2pshare.files import check_offer, printable
from p2pshare.pake import PakeSession, Role
from p2pshare.rendezvous import RendezvousClient
from p2pshare.webrtc import IceConfig, NetworkPath, PeerLink, lan_addresses

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
    """The data channel to the peer is open; ``path`` says how (None if unknown)."""

    path: NetworkPath | None = None


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    """None while the size is unknown (a stream from stdin)."""


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the transfer (a skipped symlink)."""

    message: str


@dataclass(frozen=True)
class OfferSummary:
    """What the receiver is asked to accept. Names are already made printable."""

    files: int
    dirs: int
    total_bytes: int | None
    names: tuple[str, ...]
    """The top-level names (at most 10), printable."""
    destination: Path | None
    """Where it goes; None for a text message or --output -."""
    is_text: bool = False
    found_bytes: int = 0
    """Bytes already on disk from an earlier attempt (checked with the sender before use)."""


@dataclass(frozen=True)
class TransferResult:
    bytes: int
    """The size of everything transferred, including data the receiver already had."""
    seconds: float
    files: int
    sha256: str | None
    """The SHA-256 when exactly one file was transferred."""
    path: Path | None
    sent: int
    """Bytes that crossed the network this time (before compression); less than ``bytes``
    when an interrupted transfer was resumed."""
    text: str | None = None

    @property
    def resumed(self) -> int:
        """Bytes the receiver already had (checked, not sent again)."""
        return self.bytes - self.sent


SessionEvent = CodeReady | Connected | Progress | Notice
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
    path = link.path()
    if path is not None:
        logger.info("connected: %s (local %s, remote %s)", path.describe(), path.local, path.remote)
    on_event(Connected(path))
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
    paths: Path | str | Sequence[Path | str] = (),
    settings: Settings | None = None,
    *,
    text: str | None = None,
    name: str | None = None,
    code: Code | str | None = None,
    on_event: EventSink = _ignore,
) -> TransferResult:
    """Send files and directories (``-``: standard input), or ``text``; returns once the
    receiver has verified everything.

    ``name`` renames a single entry (useful for stdin). ``code`` chooses the code (its words
    must be hard to guess); by default the server allocates a nameplate and the words are
    drawn at random. The code, progress and notices are reported through ``on_event``.
    """
    settings = settings or Settings()
    paths = [paths] if isinstance(paths, str | Path) else list(paths)

    def warn(message: str) -> None:
        on_event(Notice(message))

    sources = await asyncio.to_thread(disk.collect, paths, text=text, name=name, warn=warn)
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
            return await _send_entries(link, sources, settings, on_event)


_END = object()


async def _send_entries(
    link: PeerLink, sources: list[disk.Source], settings: Settings, on_event: EventSink
) -> TransferResult:
    offer = m.Offer(tuple(s.entry for s in sources), compression=_codecs())
    proto = transfer.SenderProtocol(offer)
    state = {"accepted": False, "finished": False}
    order = [i for i, entry in enumerate(offer.files) if entry.carries_data]

    def handle(frame: bytes) -> None:
        for event in proto.receive(frame):
            if isinstance(event, transfer.PeerAborted):
                raise event.error
            if isinstance(event, transfer.Accepted):
                state["accepted"] = True
            elif isinstance(event, transfer.Finished):
                state["finished"] = True

    wire = _Wire(link, settings, handle)
    data_sources = [s for s in sources if s.entry.carries_data]
    reader = disk.Reader(data_sources, link.max_message_bytes - m.DATA_END_OVERHEAD)

    async def main() -> TransferResult:
        for frame in proto.start():
            link.send(frame)
            await link.drain()
        await wire.until(lambda: state["accepted"])
        started = time.monotonic()
        total = offer.total_bytes
        on_event(Progress(0, total))
        digests: list[str] = []
        resumed = 0
        prefixes = [proto.have.get(i) for i in order]
        compress = proto.compression == "zstd"
        async for piece in _read_ahead(reader, prefixes, compress=compress):
            if piece.resume is not None:
                link.send(proto.resume(*piece.resume))
                resumed += piece.resume[1]
                on_event(Progress(reader.read_bytes + resumed, total))
                continue
            await wire.until(functools.partial(proto.can_send, piece.raw_len))
            if piece.compressed:
                link.send(proto.data_z(piece.raw_len, piece.payload))
                if piece.digest is not None:
                    link.send(proto.end_file(piece.digest))
            elif piece.digest is not None:
                link.send(proto.data_end(piece.payload, piece.digest))
            else:
                link.send(proto.data(piece.payload))
            if piece.digest is not None:
                digests.append(piece.digest)
            await link.drain()
            on_event(Progress(reader.read_bytes + resumed, total))
        await wire.until(lambda: state["finished"])
        wire.closing = True
        if resumed:
            logger.info("resumed: %d bytes checked, not sent again", resumed)
        return TransferResult(
            reader.read_bytes + resumed,
            time.monotonic() - started,
            len(data_sources),
            digests[0] if len(digests) == 1 else None,
            data_sources[0].path if len(data_sources) == 1 else None,
            reader.read_bytes,
        )

    return await wire.run(main())


@dataclass(frozen=True)
class _Piece:
    """What the reader thread hands the sender: a chunk, maybe compressed, and, for a
    source's last chunk (which may be empty), the source's SHA-256."""

    payload: bytes
    raw_len: int
    compressed: bool = False
    digest: str | None = None
    resume: tuple[int, int] | None = None
    """Set (and nothing else) for each entry the receiver has a prefix of, before any data:
    (entry index, where its data starts), 0 when the prefix did not match ours."""


COMPRESS_MIN_BYTES = 4096
COMPRESS_MAX_RATIO = 0.9
"""A chunk is sent compressed only if that saves at least 10%; after a chunk that does not
shrink, the rest of that file is sent raw (random data costs one trial per file)."""


async def _read_ahead(
    reader: disk.Reader,
    prefixes: Sequence[m.Prefix | None] = (),
    compress: bool = False,
    depth: int = 16,
) -> AsyncIterator[_Piece]:
    """Every source's chunks in order, read, hashed and (with ``compress``) compressed in a
    worker thread that stays at most ``depth`` pieces ahead.

    ``prefixes`` (one per source, or none) are what the receiver already holds: each is hashed
    here first and answered with a piece that says where that entry's data starts; the hash
    state is kept, so that the prefix is read once and its data never sent again."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[object] = asyncio.Queue(maxsize=depth)
    stop = threading.Event()
    compressor = _zstd_compressor() if compress else None

    def put(item: object) -> None:
        future = asyncio.run_coroutine_threadsafe(items.put(item), loop)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=0.5)
                return
        future.cancel()

    def piece(chunk: bytes, state: dict[str, bool], digest: str | None = None) -> _Piece:
        if compressor is not None and state["trying"] and len(chunk) >= COMPRESS_MIN_BYTES:
            frame = compressor.compress(chunk)
            if len(frame) <= len(chunk) * COMPRESS_MAX_RATIO:
                return _Piece(frame, len(chunk), True, digest)
            state["trying"] = False
        return _Piece(chunk, len(chunk), False, digest)

    def produce() -> None:
        try:
            kept: dict[int, tuple[hashlib._Hash, int]] = {}
            for k, prefix in enumerate(prefixes):
                if prefix is None:
                    continue
                if stop.is_set():
                    return
                matched = reader.check_prefix(reader.sources[k], prefix)
                if matched is not None:
                    kept[k] = (matched, prefix.offset)
                start = 0 if matched is None else prefix.offset
                put(_Piece(b"", 0, resume=(prefix.index, start)))
            for k, source in enumerate(reader.sources):
                digest, start = kept.pop(k) if k in kept else (hashlib.sha256(), 0)
                state = {"trying": True}
                held: bytes | None = None  # one chunk of look-ahead finds the last one
                for chunk in reader.chunks(source, start):
                    if stop.is_set():
                        return
                    digest.update(chunk)
                    if held is not None:
                        put(piece(held, state))
                    held = chunk
                put(piece(held or b"", state, digest.hexdigest()))
            put(_END)
        except BaseException as exc:  # delivered to the loop and raised there
            put(exc)

    thread = threading.Thread(target=produce, name="p2pshare-reader", daemon=True)
    thread.start()
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, _Piece)
            yield item
    finally:
        stop.set()


def _zstd_compressor() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=1)


def _codecs() -> tuple[str, ...]:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return ()
    return ("zstd",)


# -- receiving --------------------------------------------------------------------------------


async def receive(
    code: Code | str,
    settings: Settings | None = None,
    *,
    on_event: EventSink = _ignore,
    confirm: Confirm | None = None,
) -> TransferResult:
    """Receive what the holder of ``code`` sends; returns once everything is verified and in
    place (a text message is returned in ``TransferResult.text``).

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
            return await _receive_entries(link, settings, on_event, confirm)


def _summary(offer: m.Offer, parts: list[tuple[str, ...]], where: Path | None) -> OfferSummary:
    tops: dict[str, None] = {}
    for p, entry in zip(parts, offer.files, strict=True):
        tops.setdefault(printable(p[0]) + ("/" if len(p) > 1 or entry.kind == "dir" else ""))
    dirs = sum(1 for e in offer.files if e.kind == "dir")
    return OfferSummary(
        files=len(offer.files) - dirs,
        dirs=dirs,
        total_bytes=offer.total_bytes,
        names=tuple(list(tops)[:10]),
        destination=where,
        is_text=offer.files[0].kind == "text",
    )


async def _prepare(
    offer: m.Offer, settings: Settings
) -> tuple[disk.StreamSink | disk.Layout, OfferSummary]:
    """Check the offer against our rules and the disk, before asking anyone or writing.

    Returns where the data goes: a stream sink (text, stdout) or the layout of the tree to
    create once the user accepted.
    """
    parts = check_offer(offer)
    data_entries = [e for e in offer.files if e.carries_data]
    if offer.files[0].kind == "text":
        return disk.StreamSink(None), _summary(offer, parts, None)
    if settings.to_stdout:
        if len(offer.files) != 1 or not data_entries:
            raise DeclinedError(
                f"--output - takes a single file; the offer has {len(offer.files)} entries"
            )
        return disk.StreamSink(sys.stdout.buffer), _summary(offer, parts, None)
    layout = await asyncio.to_thread(
        disk.plan, settings.output, offer, parts, settings.overwrite, settings.resume
    )
    if offer.total_bytes is not None:
        space_in = layout.root.parent if layout.create_root else layout.root
        needed = offer.total_bytes - layout.found_bytes
        await asyncio.to_thread(disk.check_free_space, space_in, needed)
    where = layout.shown(0) if len(offer.files) == 1 else layout.root
    summary = _summary(offer, layout.parts, where)
    return layout, dataclasses.replace(summary, found_bytes=layout.found_bytes)


async def _receive_entries(
    link: PeerLink, settings: Settings, on_event: EventSink, confirm: Confirm | None
) -> TransferResult:
    loop = asyncio.get_running_loop()
    proto = transfer.ReceiverProtocol()
    offers: asyncio.Future[m.Offer] = loop.create_future()
    outcome: asyncio.Future[None] = loop.create_future()
    writer: disk.Writer | None = None
    begun = -1
    written = 0
    resumed = 0
    pending_done: list[bytes] = []

    def handle(frame: bytes) -> None:
        nonlocal begun, resumed
        for event in proto.receive(frame):
            if isinstance(event, transfer.PeerAborted):
                raise event.error
            if isinstance(event, transfer.OfferReceived):
                offers.set_result(event.offer)
            elif isinstance(event, transfer.Resumed):
                assert writer is not None
                writer.submit("resume", (event.index, event.offset))
                resumed += event.offset
                on_event(Progress(written + resumed, total))
            elif isinstance(event, transfer.ChunkReceived | transfer.FileEnded):
                assert writer is not None
                if event.index != begun:
                    writer.submit("begin", event.index)
                    begun = event.index
                if isinstance(event, transfer.ChunkReceived):
                    if event.raw_len is None:
                        writer.submit("data", event.payload)
                    else:
                        writer.submit("dataz", (event.payload, event.raw_len))
                else:
                    writer.submit("end", (event.index, event.sha256))

    def on_report(kind: str, value: object) -> None:
        # Runs on the event loop, called from the writer thread via call_soon_threadsafe.
        nonlocal written
        if outcome.done():
            return
        if kind == "written":
            assert isinstance(value, int)
            written += value
            grant = proto.consumed(value)
            if grant is not None:
                link.send(grant)
            on_event(Progress(written + resumed, total))
        elif kind == "verified":
            assert isinstance(value, tuple)
            digests.append(value[1])
            frames = proto.file_verified(value[0])
            if proto.finished:
                pending_done.extend(frames)
                assert writer is not None
                writer.submit("finish-dirs")
            else:
                for frame in frames:
                    link.send(frame)
        elif kind == "dirs-done":
            wire.closing = True
            for frame in pending_done or proto.finish_without_data():
                link.send(frame)
            outcome.set_result(None)
        elif kind == "failed":
            assert isinstance(value, BaseException)
            outcome.set_exception(value)

    def report(kind: str, value: object) -> None:
        loop.call_soon_threadsafe(on_report, kind, value)

    wire = _Wire(link, settings, handle)
    digests: list[str] = []
    total: int | None = None

    async def main() -> TransferResult:
        nonlocal writer, total
        offer = await offers
        prepared, summary = await _prepare(offer, settings)
        if confirm is not None and not await confirm(summary):
            raise DeclinedError("declined by the receiver")
        sink: disk.Sink
        prefixes: list[m.Prefix] = []
        if isinstance(prepared, disk.Layout):
            tree = await asyncio.to_thread(disk.Tree, prepared, offer)
            sink = tree
            if prepared.found:
                try:
                    prefixes = await asyncio.to_thread(tree.check_held)
                except BaseException:
                    tree.close()
                    raise
                logger.info("offering %d prefixes from an earlier attempt", len(prefixes))
        else:
            sink = prepared
        total = offer.total_bytes
        writer = disk.Writer(sink, report)
        writer.start()
        writer.submit("dirs")
        codec = "zstd" if "zstd" in _codecs() else None
        for frame in proto.accept(settings.window_bytes, codec, prefixes):
            link.send(frame)
        logger.info("accepted; compression: %s", proto.compression or "none")
        started = time.monotonic()
        on_event(Progress(0, total))
        if not any(e.carries_data for e in offer.files):
            writer.submit("finish-dirs")
        try:
            await outcome
        finally:
            writer.stop()
        seconds = time.monotonic() - started
        # The sender closes once it has read Done; closing first could lose Done (DESIGN.md).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.wait_lost(), GOODBYE_WAIT_S)
        text = None
        if summary.is_text and isinstance(sink, disk.StreamSink):
            text = bytes(sink.buffer).decode("utf-8", errors="replace")
        return TransferResult(
            written + resumed,
            seconds,
            summary.files,
            digests[0] if len(digests) == 1 else None,
            summary.destination,
            written,
            text,
        )

    try:
        return await wire.run(main())
    finally:
        if writer is not None:
            writer.stop()
            await asyncio.to_thread(writer.join, 10)
