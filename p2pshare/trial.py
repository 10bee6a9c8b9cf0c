"""Whether a chunk is sent compressed: the sender's choice between DataZ and Data, once the
receiver agreed on zstd (a pure decision; :mod:`p2pshare.codec` does the work). Re-exported
by :mod:`p2pshare.transfer`, which decides everything else that goes on the wire.
"""

from __future__ import annotations

COMPRESS_MIN_BYTES = 4096
COMPRESS_MAX_RATIO = 0.9
"""A chunk is sent compressed only if that saves at least 10%; after a chunk that does not
shrink, the rest of that file is sent raw (random data costs one trial per file)."""
COMPRESS_WHEN_AHEAD = 4
"""Compressing pays only while the data channel, not the sender's CPU, is what limits: a chunk
is compressed when at least this many read-ahead pieces already wait for the channel, and sent
raw when the channel is waiting for the reader. On a slow path every chunk is compressed; on a
fast LAN path, where zstd (~0.45 GB/s per core here) would make the reader the bottleneck, only
as many as the channel leaves time for (docs/performance.md)."""


class CompressionTrial:
    """Whether the chunks of one file go as DataZ (compressed) or Data, once compression was
    agreed: see :data:`COMPRESS_MAX_RATIO`. One per file, fed every chunk in order."""

    def __init__(self) -> None:
        self.trying = True

    def worth_trying(
        self, raw_len: int, ahead: int = COMPRESS_WHEN_AHEAD, when: int = COMPRESS_WHEN_AHEAD
    ) -> bool:
        """Whether to compress the next chunk, of ``raw_len`` bytes, at all, with ``ahead``
        pieces already read and waiting for the data channel (``when``: the threshold)."""
        return self.trying and raw_len >= COMPRESS_MIN_BYTES and ahead >= when

    def use_compressed(self, raw_len: int, compressed_len: int) -> bool:
        """Whether a chunk that compressed to ``compressed_len`` goes compressed; if not, the
        rest of the file is not tried again."""
        if compressed_len <= raw_len * COMPRESS_MAX_RATIO:
            return True
        self.trying = False
        return False
