"""The sender's read-ahead, with a real reader, real zstd and the real worker thread: chunks
are compressed only while pieces wait for the data channel (issue 12)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2pshare import codec, sources
from p2pshare import messages as m
from p2pshare.codec import Compressor
from p2pshare.sources import MAX_GROUP_READS, Chunk, Reader, collect, read_ahead
from p2pshare.trial import COMPRESS_WHEN_AHEAD

CHUNK = 64 * 1024


def _table(path: Path, chunks: int, chunk: int = CHUNK) -> bytes:
    rows = (f"{i},item-{i % 97},{i * 0.37:.2f}\n".encode() for i in range(chunks * chunk // 16))
    data = b"".join(rows)[: chunks * chunk]
    path.write_bytes(data)
    return data


def _reassemble(pieces: list[Chunk]) -> bytes:
    return b"".join(
        p.payload if p.raw_len is None else codec.decompress(p.payload, p.raw_len) for p in pieces
    )


async def test_a_channel_that_lags_gets_reads_compressed_together(tmp_path: Path) -> None:
    """Nothing is taken while the reader works (the loop is blocked on purpose): the first
    chunks go raw; once COMPRESS_WHEN_AHEAD pieces wait, reads are gathered, 4 at a time
    (1 MiB here) and then the 2 left, and compressed as one frame each, which fits in one
    message (the reader's chunk size); the whole arrives exact with the file's hash."""
    chunk = 256 * 1024
    data = _table(tmp_path / "table.csv", 10, chunk)
    reader = Reader(collect([tmp_path / "table.csv"]), chunk)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    pieces = [p async for p in worker]
    chunks = [p for p in pieces if isinstance(p, Chunk)]
    assert len(chunks) == len(pieces)
    assert MAX_GROUP_READS * chunk <= m.MAX_DATAZ_RAW_BYTES
    expected = [None] * COMPRESS_WHEN_AHEAD + [MAX_GROUP_READS * chunk, 2 * chunk]
    assert [p.raw_len for p in chunks] == expected
    assert all(len(p.payload) <= chunk for p in chunks)
    assert sum(len(p.payload) for p in chunks) < len(data) * 0.7
    assert _reassemble(chunks) == data
    assert chunks[-1].digest == hashlib.sha256(data).hexdigest()
    assert all(p.digest is None for p in chunks[:-1])


async def test_reads_go_together_only_up_to_half_the_receivers_window(tmp_path: Path) -> None:
    """A piece never needs more credit than the receiver can have returned (it returns credit
    in quarter windows): with a 1 MiB window, two reads of 256 KiB at most."""
    chunk = 256 * 1024
    data = _table(tmp_path / "table.csv", 8, chunk)
    reader = Reader(collect([tmp_path / "table.csv"]), chunk)
    worker = read_ahead(reader, compress=True, depth=0, group_bytes=1024 * 1024 // 2)
    worker.join(10)
    chunks = [p for p in [p async for p in worker] if isinstance(p, Chunk)]
    assert [p.raw_len for p in chunks] == [None] * COMPRESS_WHEN_AHEAD + [2 * chunk] * 2
    assert _reassemble(chunks) == data


class _CountingCompressor(Compressor):
    sizes: list[int] = []

    def compress(self, data: bytes) -> bytes:
        self.sizes.append(len(data))
        return super().compress(data)


async def test_reads_that_do_not_fit_one_message_together_go_compressed_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads that shrink by half: 4 together do not fit in one message, so they go as one
    frame each, and so do the transfer's later reads, in this file and the next, without a
    second attempt at 4 together."""
    monkeypatch.setattr(sources, "Compressor", _CountingCompressor)
    monkeypatch.setattr(_CountingCompressor, "sizes", [])
    half = b"".join(os.urandom(CHUNK // 2) + bytes(CHUNK // 2) for _ in range(12))
    (tmp_path / "a.bin").write_bytes(half)
    (tmp_path / "b.bin").write_bytes(half)
    reader = Reader(collect([tmp_path / "a.bin", tmp_path / "b.bin"]), CHUNK)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    chunks = [p for p in [p async for p in worker] if isinstance(p, Chunk)]
    assert [p.raw_len for p in chunks] == [None] * COMPRESS_WHEN_AHEAD + [CHUNK] * (
        24 - COMPRESS_WHEN_AHEAD
    )
    tried_together = [n for n in _CountingCompressor.sizes if n > CHUNK]
    assert tried_together == [MAX_GROUP_READS * CHUNK]
    assert _reassemble(chunks) == half + half
    assert chunks[11].digest == chunks[-1].digest == hashlib.sha256(half).hexdigest()


async def test_random_data_gathered_for_compression_goes_as_it_was_read(tmp_path: Path) -> None:
    """Reads gathered while the channel lagged that do not shrink go raw, one message each,
    and the file is not tried again."""
    data = os.urandom(12 * CHUNK)
    (tmp_path / "noise.bin").write_bytes(data)
    reader = Reader(collect([tmp_path / "noise.bin"]), CHUNK)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    chunks = [p for p in [p async for p in worker] if isinstance(p, Chunk)]
    assert [len(p.payload) for p in chunks] == [CHUNK] * 12
    assert all(p.raw_len is None for p in chunks)
    assert b"".join(p.payload for p in chunks) == data
    assert chunks[-1].digest == hashlib.sha256(data).hexdigest()


async def test_a_channel_that_keeps_up_gets_raw_chunks(tmp_path: Path) -> None:
    """With one piece of read-ahead the reader always waits for the channel: compressing
    would only slow it down, so nothing is compressed."""
    data = _table(tmp_path / "table.csv", 12)
    reader = Reader(collect([tmp_path / "table.csv"]), CHUNK)
    worker = read_ahead(reader, compress=True, depth=1)
    pieces = [p async for p in worker]
    chunks = [p for p in pieces if isinstance(p, Chunk)]
    assert len(chunks) == 12 and all(p.raw_len is None for p in chunks)
    assert _reassemble(chunks) == data
