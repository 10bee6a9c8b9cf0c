"""The sender's read-ahead, with a real reader, real zstd and the real worker thread: chunks
are compressed only while pieces wait for the data channel (issue 12)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from p2pshare import codec
from p2pshare import messages as m
from p2pshare.sources import Chunk, Reader, collect, read_ahead
from p2pshare.transfer import COMPRESS_WHEN_AHEAD

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
    chunks go raw; once COMPRESS_WHEN_AHEAD pieces wait, reads are gathered up to 1 MiB
    (MAX_DATAZ_RAW_BYTES) and compressed as one frame, which fits in one message (the
    reader's chunk size); the whole arrives exact with the file's hash."""
    chunk = 256 * 1024
    data = _table(tmp_path / "table.csv", 12, chunk)
    reader = Reader(collect([tmp_path / "table.csv"]), chunk)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    pieces = [p async for p in worker]
    chunks = [p for p in pieces if isinstance(p, Chunk)]
    assert len(chunks) == len(pieces)
    together = m.MAX_DATAZ_RAW_BYTES // chunk * chunk
    assert [p.raw_len for p in chunks] == [None] * COMPRESS_WHEN_AHEAD + [together] * 2
    assert all(len(p.payload) <= chunk for p in chunks)
    assert sum(len(p.payload) for p in chunks) < len(data) * 0.7
    assert _reassemble(chunks) == data
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert all(p.sha256 is None for p in chunks[:-1])


async def test_reads_that_do_not_fit_one_message_together_go_compressed_one_by_one(
    tmp_path: Path,
) -> None:
    """With 64 KiB messages, 16 reads of the table compress to more than one message: they go
    as one frame each, and so do the file's later reads (no second wasted attempt)."""
    data = _table(tmp_path / "table.csv", 40)
    reader = Reader(collect([tmp_path / "table.csv"]), CHUNK)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    chunks = [p for p in [p async for p in worker] if isinstance(p, Chunk)]
    assert [p.raw_len for p in chunks] == [None] * COMPRESS_WHEN_AHEAD + [CHUNK] * (
        40 - COMPRESS_WHEN_AHEAD
    )
    assert sum(len(p.payload) for p in chunks) < len(data) * 0.7
    assert _reassemble(chunks) == data
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()


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
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()


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
