"""DataBatch (several small files in one message, issue 31): the real Sender batches only for a
receiver that asked (the page never does, and gets DataEnd as before), the real Receiver asks
and stores every file, the reader gathers small files only while the channel is busy, and the
sending protocol refuses to frame anything but whole entries within the credit."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from p2pshare import messages as m
from p2pshare import transfer, transfer_events
from p2pshare.channel import MemoryChannel, memory_channel_pair
from p2pshare.config import MIN_WINDOW_BYTES, Settings
from p2pshare.digests import SHA256
from p2pshare.errors import IntegrityError, P2PShareError
from p2pshare.receiver import Receiver
from p2pshare.sender import Sender
from p2pshare.sources import Batch, Chunk, Reader, collect, read_ahead
from p2pshare.wire import telling_peer

FILES = 300


def small_tree(root: Path, count: int = FILES, unit: int = 1) -> Path:
    top = root / "tree"
    for i in range(count):
        d = top / f"d{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}").write_bytes(f"file {i} ".encode() * (i % 7) * unit)
    return top


class Recording:
    """A channel end that notes the type byte of every message it receives."""

    def __init__(self, inner: MemoryChannel) -> None:
        self.inner = inner
        self.types: list[int] = []
        self.sent: list[m.Message] = []

    @property
    def max_message_bytes(self) -> int:
        return self.inner.max_message_bytes

    @property
    def lost(self) -> bool:
        return self.inner.lost

    def send(self, frame: bytes) -> None:
        self.sent.append(m.decode(frame))
        self.inner.send(frame)

    async def drain(self) -> None:
        await self.inner.drain()

    async def receive(self) -> bytes:
        frame = await self.inner.receive()
        if frame:
            self.types.append(frame[0])
        return frame

    def lost_error(self) -> P2PShareError:
        return self.inner.lost_error()

    async def wait_lost(self) -> None:
        await self.inner.wait_lost()


async def send(end: MemoryChannel, top: Path, out: Path) -> P2PShareError | None:
    try:
        async with telling_peer(end):
            await Sender(end, collect([top]), Settings(output=out), lambda e: None).run()
    finally:
        end.close()
    return None


async def page_like_receiver(end: Recording) -> dict[int, bytes]:
    """Receives as the page does: ReceiverProtocol accepting without ``batch``."""
    proto = transfer.ReceiverProtocol()
    data: dict[int, bytearray] = {}
    stored: dict[int, bytes] = {}
    while not proto.finished:
        frame = await end.receive()
        assert frame, "the channel closed early"
        for event in proto.receive(frame):
            if isinstance(event, transfer_events.OfferReceived):
                for out in proto.accept(256 * 1024, None, [], SHA256):
                    end.send(out)
            elif isinstance(event, transfer_events.ChunkReceived):
                data.setdefault(event.index, bytearray()).extend(event.payload)
                grant = proto.consumed(len(event.payload))
                if grant is not None:
                    end.send(grant)
            elif isinstance(event, transfer_events.FileEnded):
                body = bytes(data.pop(event.index, b""))
                assert hashlib.sha256(body).hexdigest() == event.digest
                stored[event.index] = body
                for out in proto.file_verified(event.index):
                    end.send(out)
            else:
                raise AssertionError(f"unexpected {event}")
        if proto.received_all and not proto.finished:
            for out in proto.finish():
                end.send(out)
    await end.wait_lost()  # the sender closes once it has read Done
    end.inner.close()
    return stored


async def test_a_receiver_that_does_not_ask_gets_data_end_only(tmp_path: Path) -> None:
    """The page's case: a receiver without Accept 'batch' gets every small file in a DataEnd
    of its own, never a DataBatch, and every file arrives intact."""
    top = small_tree(tmp_path)
    a, b = memory_channel_pair(max_message_bytes=256 * 1024)
    recording = Recording(b)
    _, stored = await asyncio.gather(send(a, top, tmp_path), page_like_receiver(recording))
    assert m.DataBatch.TYPE not in recording.types
    assert recording.types.count(m.DataEnd.TYPE) == FILES
    sources = [s for s in collect([top]) if s.entry.carries_data]
    assert len(stored) == FILES
    expected = [s.path.read_bytes() for s in sources if s.path is not None]
    assert [stored[i] for i in sorted(stored)] == expected


async def test_the_cli_receiver_asks_for_batches_and_stores_every_file(tmp_path: Path) -> None:
    """The CLI receiver asks for batches in Accept; small files then travel in DataBatch
    messages, fewer messages than files, and the received tree is identical to the sent one.
    (The files add up to more than two windows of credit: while the sender waits for credit,
    its reader gathers the files it reads.)"""
    count = 1200
    top = small_tree(tmp_path / "src", count, unit=70)  # ~2.3 MB, most files under 4,096 B
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair(max_message_bytes=256 * 1024)
    recording = Recording(b)

    async def receive() -> None:
        try:
            async with telling_peer(recording):
                chosen = Settings(output=out, window_bytes=MIN_WINDOW_BYTES)
                await Receiver(recording, chosen, lambda e: None, None).run()
        finally:
            b.close()

    await asyncio.gather(send(a, top, out), receive())
    accepts = [msg for msg in recording.sent if isinstance(msg, m.Accept)]
    assert [a.batch for a in accepts] == [True]
    assert m.DataBatch.TYPE in recording.types
    data_messages = sum(t in (m.DataBatch.TYPE, m.DataEnd.TYPE) for t in recording.types)
    assert data_messages < count
    for path in top.rglob("*"):
        if path.is_file():
            assert (out / "tree" / path.relative_to(top)).read_bytes() == path.read_bytes()


async def test_small_files_are_gathered_only_while_the_channel_is_busy(tmp_path: Path) -> None:
    """With batches allowed and a consumer slower than the reader, small files come in
    Batch pieces, whole, in order, each with its digest, none over the byte limit; without
    a limit (a receiver that did not ask) every file is a Chunk of its own."""
    top = small_tree(tmp_path)
    sources = [s for s in collect([top]) if s.entry.carries_data]
    limit = 4096

    async def pieces(batch_bytes: int) -> list[Chunk | Batch]:
        worker = read_ahead(Reader(sources, 64 * 1024), batch_bytes=batch_bytes)
        got: list[Chunk | Batch] = []
        try:
            async for piece in worker:
                assert not isinstance(piece, transfer_events.Resumed)
                assert isinstance(piece, Chunk | Batch)
                got.append(piece)
                await asyncio.sleep(0.002)  # a busy channel
        finally:
            worker.stop()
        return got

    batched = await pieces(limit)
    assert any(isinstance(p, Batch) for p in batched)
    files: list[tuple[bytes, str | None]] = []
    for piece in batched:
        if isinstance(piece, Batch):
            assert len(piece.files) > 1
            assert 1 + sum(m.BATCH_RECORD_OVERHEAD + len(d) for d, _ in piece.files) <= limit
            files += piece.files
        else:
            files.append((piece.payload, piece.digest))
    expected = [s.path.read_bytes() for s in sources if s.path is not None]
    assert [d for d, _ in files] == expected
    assert [h for _, h in files] == [hashlib.sha256(d).hexdigest() for d in expected]
    plain = await pieces(0)
    assert all(isinstance(p, Chunk) for p in plain) and len(plain) == FILES


def accepted(files: list[bytes], window: int = 64, batch: bool = True) -> transfer.SenderProtocol:
    entries = tuple(m.FileEntry(f"f{i}", len(d)) for i, d in enumerate(files))
    proto = transfer.SenderProtocol(m.Offer(entries))
    proto.start()
    proto.receive(m.encode(m.Accept(window, batch=batch)))
    return proto


def test_the_sending_protocol_frames_whole_entries_within_the_credit_only() -> None:
    """data_batch refuses (RuntimeError, nothing changed) a receiver that did not ask, an
    entry that is not whole, an entry already begun, and a batch beyond the credit; a good
    batch moves past its entries and spends their bytes of credit."""
    files = [b"abc", b"", b"de", b"fgh"]
    whole = [(d, hashlib.sha256(d).hexdigest()) for d in files]
    with pytest.raises(RuntimeError):
        accepted(files, batch=False).data_batch(whole[:2])
    proto = accepted(files, window=6)
    with pytest.raises(RuntimeError):
        proto.data_batch([(b"ab", whole[0][1])])
    with pytest.raises(RuntimeError):
        proto.data_batch(whole)  # 8 bytes, 6 of credit
    assert (proto.current, proto.credit) == (0, 6)
    frame = proto.data_batch(whole[:3])
    assert (proto.current, proto.credit) == (3, 1)
    decoded = m.decode(frame)
    assert isinstance(decoded, m.DataBatch)
    assert [(r.index, r.payload) for r in decoded.records] == [(0, b"abc"), (1, b""), (2, b"de")]
    proto.credit += 10
    proto.data(b"f")
    with pytest.raises(RuntimeError):
        proto.data_batch([(b"fgh", whole[3][1])])


async def test_a_batch_with_a_wrong_digest_keeps_only_the_files_before_it(tmp_path: Path) -> None:
    """A hostile sender's batch whose second record has a wrong digest: the real Receiver
    fails with an integrity error; the first file, verified, stays; the second is never
    named and no temporary file is left behind."""
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair(max_message_bytes=256 * 1024)
    files = [b"first file", b"second file", b"third file"]
    entries = tuple(m.FileEntry(f"f{i}", len(d), 0o644) for i, d in enumerate(files))
    proto = transfer.SenderProtocol(m.Offer(entries))

    async def hostile() -> None:
        for frame in proto.start():
            a.send(frame)
        while not proto.window:
            proto.receive(await a.receive())
        assert proto.batch
        digests = [hashlib.sha256(d).hexdigest() for d in files]
        digests[1] = hashlib.sha256(b"something else").hexdigest()
        a.send(proto.data_batch(list(zip(files, digests, strict=True))))
        await a.wait_lost()

    async def receive() -> None:
        try:
            async with telling_peer(b):
                await Receiver(b, Settings(output=out), lambda e: None, None).run()
        finally:
            b.close()

    sending = asyncio.ensure_future(hostile())
    with pytest.raises(IntegrityError):
        await receive()
    a.close()
    await sending
    assert sorted(p.name for p in out.iterdir()) == ["f0"]
    assert (out / "f0").read_bytes() == files[0]
