"""The hash that proves a received file is the file sent: SHA-256, or BLAKE3 where both ends
can.

SHA-256 is what every peer speaks (the browser page, and p2pshare before BLAKE3): a transfer
uses it unless the sender offered ``blake3`` and the receiver chose it (``hash`` in Offer and
Accept, docs/protocol.md). BLAKE3 is as strong, and five times faster here (9.6 GB/s against
1.9 for SHA-256 with the CPU's SHA instructions): each side hashes every byte on a thread
that is also reading or writing, and over a saturated path SHA-256 took 18% of both cores
(docs/performance.md).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

SHA256 = "sha256"
BLAKE3 = "blake3"


class Digest(Protocol):
    """A running hash: what ``hashlib.sha256()`` and ``blake3.blake3()`` both are."""

    def update(self, data: bytes, /) -> object: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Digest: ...


def supported(preferred: str = BLAKE3) -> tuple[str, ...]:
    """The optional hashes this side offers or accepts, best first. ``preferred`` is
    ``Tuning.hash``: ``sha256`` turns BLAKE3 off (``P2PSHARE_HASH``, a benchmarking knob)."""
    if preferred == SHA256:
        return ()
    try:
        import blake3  # noqa: F401
    except ImportError:
        return ()
    return (BLAKE3,)


def choose(offered: tuple[str, ...], preferred: str = BLAKE3) -> str:
    """The hash a receiver picks from what the sender offered."""
    return next((name for name in supported(preferred) if name in offered), SHA256)


def label(name: str) -> str:
    """How a hash is named to the user."""
    return {SHA256: "SHA-256", BLAKE3: "BLAKE3"}.get(name, name)


def new(name: str) -> Digest:
    """A fresh running hash of the agreed kind (``sha256`` or ``blake3``)."""
    if name == BLAKE3:
        import blake3

        # One thread: the other core is busy with the transfer itself.
        return blake3.blake3(max_threads=1)
    if name != SHA256:
        raise ValueError(f"unknown hash {name!r}")
    return hashlib.sha256()
