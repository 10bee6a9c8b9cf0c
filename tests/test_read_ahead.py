"""The sender's read-ahead, with a real reader, real zstd and the real worker thread: chunks
are compressed only while pieces wait for the data channel (issue 12)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from p2pshare import codec
from p2pshare.sources import Chunk, Reader, collect, read_ahead
from p2pshare.transfer import COMPRESS_WHEN_AHEAD

CHUNK = 64 * 1024


def _table(path: Path, chunks: int) -> bytes:
    rows = (f"{i},item-{i % 97},{i * 0.37:.2f}\n".encode() for i in range(chunks * 4000))
    data = b"".join(rows)[: chunks * CHUNK]
    path.write_bytes(data)
    return data


def _reassemble(pieces: list[Chunk]) -> bytes:
    return b"".join(
        p.payload if p.raw_len is None else codec.decompress(p.payload, p.raw_len) for p in pieces
    )


async def test_a_channel_that_lags_gets_compressed_chunks(tmp_path: Path) -> None:
    """Nothing is taken while the reader works (the loop is blocked on purpose): the first
    chunks go raw, every one read with COMPRESS_WHEN_AHEAD pieces waiting goes compressed,
    and the whole arrives exact with the file's hash."""
    data = _table(tmp_path / "table.csv", 12)
    reader = Reader(collect([tmp_path / "table.csv"]), CHUNK)
    worker = read_ahead(reader, compress=True, depth=0)
    worker.join(10)
    pieces = [p async for p in worker]
    assert all(isinstance(p, Chunk) for p in pieces)
    chunks = [p for p in pieces if isinstance(p, Chunk)]
    compressed = [p.raw_len is not None for p in chunks]
    assert compressed == [False] * COMPRESS_WHEN_AHEAD + [True] * (12 - COMPRESS_WHEN_AHEAD)
    assert sum(len(p.payload) for p in chunks) < len(data) * 0.7
    assert _reassemble(chunks) == data
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
