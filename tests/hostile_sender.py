"""A malicious sender for tests: real pairing and data channel, then crafted offers and data.

Run as ``python -m tests.hostile_sender SERVER CASE``. It prints ``{"code": ...}`` on stdout,
pairs with the receiver through the library (PAKE, sealed SDP, aiortc), then sends what CASE
says, whatever the protocol allows, and waits for the receiver to react.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from typing import Any

from p2pshare import messages as m
from p2pshare.codes import Code, generate_words
from p2pshare.config import Settings
from p2pshare.pairing import pair, rendezvous
from p2pshare.pake import Role
from p2pshare.webrtc import IceConfig
from signal_server import eventloop


def entry(path: str, size: int | None = 1, kind: str = "file", **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": size, "mode": 0o644, "kind": kind, **extra}


def offer(
    *entries: dict[str, Any],
    count: int | None = None,
    total: int | None = None,
    compression: tuple[str, ...] = (),
) -> bytes:
    sizes = [e["size"] or 0 for e in entries]
    head = {
        "v": 1,
        "count": count if count is not None else len(entries),
        "total": total if total is not None else sum(sizes),
        "files": list(entries),
        "compression": list(compression),
    }
    return m.frame(m.Offer.TYPE, head)


def zstd_frame(data: bytes) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdCompressor(level=1).compress(data))


# Cases the receiver completes (exit 0): what is checked is what it did to the disk.
COMPLETING = {"existing-dir-mode", "beyond-path-max-one-entry", "beyond-path-max-two-entries"}

DEEP_PARTS = tuple(chr(ord("a") + i) * 255 for i in range(16))
"""16 components of 255 bytes: within the wire's 4,096-byte path, beyond PATH_MAX once under
any output directory."""
DEEP_PATH = "/".join(DEEP_PARTS)

# name -> (frames sent before the receiver accepts, frames sent after it accepts)
BAD_NAMES = {
    "absolute": "/tmp/p2pshare-owned",
    "dotdot": "../escaped.txt",
    "dotdot-inside": "a/../../b.txt",
    "dotdot-last": "a/..",
    "dot": "a/./b",
    "empty-component": "a//b",
    "backslash": "..\\..\\escaped.txt",
    "partial-file-name": ".p2pshare-8d5fe0f2d6cf4a27.part",
    "partial-record-name": "d/.p2pshare-8d5fe0f2d6cf4a27.json",
    "drive-letter": "C:evil.txt",
    "drive-path": "C:\\Windows\\evil.txt",
    "unc": "\\\\server\\share\\evil.txt",
    "nul": "a\x00b.txt",
    "control": "bell\x07.txt",
    "ansi-escape": "\x1b[31mred\x1b[0m.txt",
    "osc-title": "\x1b]0;owned\x07.txt",
    "bidi-override": "invoice\u202etxt.exe",
    "zero-width": "pay\u200bpal.txt",
    "line-separator": "a\u2028b.txt",
    "long-name": "n" * 300,
    "long-path": "d/" * 2100 + "f",
    "device-con": "CON",
    "device-aux-ext": "aux.txt",
    "device-lpt": "lpt1",
    "trailing-dot": "name.",
    "trailing-space": "name ",
}


def cases() -> dict[str, tuple[list[bytes], list[bytes]]]:
    table: dict[str, tuple[list[bytes], list[bytes]]] = {
        name: ([offer(entry(path))], []) for name, path in BAD_NAMES.items()
    }
    table.update(
        {
            "case-collision": ([offer(entry("Readme.txt"), entry("README.TXT"))], []),
            "unicode-collision": ([offer(entry("caf\u00e9.txt"), entry("cafe\u0301.txt"))], []),
            "dir-replaces-file": ([offer(entry("a"), entry("a/b"))], []),
            "file-replaces-dir": ([offer(entry("a/b"), entry("a"))], []),
            "dir-and-file-same": ([offer(entry("a", 0, "dir"), entry("a"))], []),
            "text-with-files": ([offer(entry("t", 1, "text"), entry("f"))], []),
            "more-entries-than-declared": ([offer(entry("a"), entry("b"), count=1, total=2)], []),
            "more-batches-than-declared": (
                [offer(entry("a"), count=1), m.frame(m.OfferMore.TYPE, {"files": [entry("b")]})],
                [],
            ),
            "total-mismatch": ([offer(entry("a", 5), total=4)], []),
            "larger-than-disk": ([offer(entry("huge.bin", 2**50))], []),
            "symlink-dir": ([offer(entry("link/owned.txt"))], []),
            "symlink-file": ([offer(entry("link"))], []),
            "more-bytes-than-declared": (
                [offer(entry("short.txt", 3))],
                [m.encode(m.Data(b"12345"))],
            ),
            "fewer-bytes-than-declared": (
                [offer(entry("long.txt", 5))],
                [m.encode(m.Data(b"123")), m.encode(m.FileEnd(0, 3, "0" * 64))],
            ),
            "zstd-bomb": (
                [offer(entry("bomb.bin", 1 << 20), compression=("zstd",))],
                [m.encode(m.DataZ(65536, zstd_frame(b"\0" * (256 << 20))))],
            ),
            "zstd-garbage": (
                [offer(entry("garbage.bin", 1 << 20), compression=("zstd",))],
                [m.encode(m.DataZ(65536, b"not a zstd frame at all"))],
            ),
            "zstd-not-agreed": (
                [offer(entry("sneaky.bin", 1 << 20))],
                [m.encode(m.DataZ(65536, zstd_frame(b"x" * 65536)))],
            ),
            # Completes: a dir entry naming a directory the receiver already has (0700, with
            # a secret), asking for 0777 and an old mtime, and a new file inside it.
            "existing-dir-mode": (
                [
                    offer(
                        entry("private", 0, "dir", mode=0o777, mtime=86400),
                        entry("private/new.txt", 3),
                    )
                ],
                [m.encode(m.DataEnd(1, 3, hashlib.sha256(b"abc").hexdigest(), b"abc"))],
            ),
            # One rule for a destination beyond PATH_MAX, one entry or several: received,
            # through directory descriptors (the second entry is a small file beside it).
            "beyond-path-max-one-entry": (
                [offer(entry(DEEP_PATH, 3))],
                [m.encode(m.DataEnd(0, 3, hashlib.sha256(b"abc").hexdigest(), b"abc"))],
            ),
            "beyond-path-max-two-entries": (
                [offer(entry(DEEP_PATH, 3), entry("z.txt", 3))],
                [
                    m.encode(m.DataEnd(0, 3, hashlib.sha256(b"abc").hexdigest(), b"abc")),
                    m.encode(m.DataEnd(1, 3, hashlib.sha256(b"xyz").hexdigest(), b"xyz")),
                ],
            ),
            # Declares more entries than a receiver takes by default (2,000,000): declined on
            # the first message, nothing collected.
            "million-entries": ([offer(entry("a"), count=3_000_000, total=3_000_000)], []),
            "empty-message": ([offer(entry("e.txt", 3))], [b""]),
            "home-ssh-key": (
                [offer(entry(".ssh", 0, "dir"), entry(".ssh/authorized_keys", 3))],
                [],
            ),
            # Resumable files (2 MiB): good data arrives and is written, then the sender
            # breaks the protocol, on the receiver's loop (one byte too many) or in its
            # writer (a wrong hash): what arrived is not kept to resume from.
            "more-bytes-than-declared-resumable": (
                [offer(entry("big.bin", 2 << 20))],
                [m.encode(m.Data(b"x" * (32 << 10))) for _ in range(64)] + [m.encode(m.Data(b"!"))],
            ),
            "wrong-hash-resumable": (
                [offer(entry("big.bin", 2 << 20))],
                [m.encode(m.Data(b"x" * (32 << 10))) for _ in range(64)]
                + [m.encode(m.FileEnd(0, 2 << 20, "0" * 64))],
            ),
            "wrong-hash": (
                [offer(entry("bad.txt", 3))],
                [m.encode(m.Data(b"abc")), m.encode(m.FileEnd(0, 3, "0" * 64))],
            ),
        }
    )
    return table


def offer_at_caps() -> list[bytes]:
    """The largest offer a receiver takes by default: 50,000 entries in just under 8 MiB of
    messages (for measuring the receiver's memory before the prompt)."""
    entries = tuple(m.FileEntry(f"d{i % 100:02d}/{'n' * 122}{i:06d}", 1) for i in range(50_000))
    return list(m.Offer(entries).frames())


async def main(server: str, case: str) -> None:
    before, after = (offer_at_caps(), []) if case == "offer-at-caps" else cases()[case]
    settings = Settings(server=server, ice=IceConfig(local_addresses=("127.0.0.1",)))
    async with rendezvous(settings) as (rv, _):
        code = Code(await rv.allocate(), generate_words(2))
        print(json.dumps({"code": str(code)}), flush=True)
        async with pair(rv, Role.SENDER, code, settings) as link:
            with contextlib.suppress(Exception):  # the receiver may hang up at any point
                await send_case(link, before, after)
            # Hang up as soon as the receiver aborts (or goes), as a real sender would.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while (frame := await link.incoming.get()) and frame[:1] != bytes(
                        [m.Abort.TYPE]
                    ):
                        pass


async def send_case(link: Any, before: list[bytes], after: list[bytes]) -> None:
    for frame in before:
        link.send(frame)
    if after:
        # Wait for the Accept (or the refusal), then push the rest regardless of credit.
        reply = await asyncio.wait_for(link.incoming.get(), 30)
        while reply[:1] == bytes([m.Ping.TYPE]):
            reply = await asyncio.wait_for(link.incoming.get(), 30)
        if reply[:1] == bytes([m.Accept.TYPE]):
            for frame in after:
                link.send(frame)
                await link.drain()


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1], sys.argv[2]))
