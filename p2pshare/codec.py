"""Compression of data messages: which codecs this side supports, and zstd both ways.

``zstandard`` is imported on first use, so that the rest of the library works (uncompressed)
where it is missing. When a chunk is worth sending compressed is the transfer protocol's
decision (:class:`p2pshare.trial.CompressionTrial`); this module only does the work.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from p2pshare.errors import IntegrityError

ZSTD_LEVEL = 1


def supported() -> tuple[str, ...]:
    """The codecs this side can use, best first."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return ()
    return ("zstd",)


def preferred() -> str | None:
    """The codec a receiver asks for (the sender may not have offered it)."""
    codecs = supported()
    return codecs[0] if codecs else None


class Compressor:
    """zstd at level 1: fast enough not to slow a transfer down (DESIGN.md)."""

    def __init__(self) -> None:
        import zstandard

        self._zstd: Any = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def compress(self, data: bytes) -> bytes:
        frame: bytes = self._zstd.compress(data)
        return frame


_local = threading.local()


def _decompressor() -> Any:
    """One decompressor per thread (they are not thread-safe), reused: making one per
    message cost about a third of the time of decompressing 64 KiB."""
    decompressor = getattr(_local, "zstd", None)
    if decompressor is None:
        import zstandard

        decompressor = _local.zstd = zstandard.ZstdDecompressor()
    return decompressor


def decompress(frame: bytes, raw_len: int) -> bytes:
    """Decompress one zstd frame that must yield exactly ``raw_len`` bytes.

    Reads at most ``raw_len + 1`` bytes whatever size the frame claims, so a frame built to
    expand to gigabytes (a decompression bomb) costs nothing; any mismatch is an integrity
    failure.
    """
    import zstandard

    try:
        reader = _decompressor().stream_reader(io.BytesIO(frame), read_across_frames=False)
        parts: list[bytes] = []
        got = 0
        while got <= raw_len and (part := reader.read(raw_len + 1 - got)):
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
    except zstandard.ZstdError:
        raise IntegrityError("integrity failure: a compressed chunk is corrupt") from None
    if len(data) != raw_len:
        raise IntegrityError("integrity failure: a compressed chunk has the wrong size")
    return data
