"""The receiver's writer alone: how much CPU a small file costs it, without the network.

Runs the real :class:`p2pshare.tree.Tree` in the real writer worker
(:func:`p2pshare.sinks.write_worker`), fed ``WriteBatch`` jobs as the receiver's event loop
feeds them, for a tree shaped like ``bench/scale.py``'s (``--file-bytes`` each, 1,000 files
to a directory, ten directories to a parent), into a fresh directory on the disk under
``--base`` (the temporary directory by default). Per run: wall seconds, the process's CPU
seconds (user and system) and the writer threads' CPU seconds, each also per 10,000 files::

    python bench/tree_write.py --files 20000 --runs 3
    python bench/tree_write.py --files 20000 --batch 200 --runs 3

The event loop here only submits jobs and reads reports, so the process's CPU is almost all
the writer's; on the real receiver the event loop also needs a core (``bench/scale.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from p2pshare import messages as m
from p2pshare import sinks
from p2pshare.files import check_offer
from p2pshare.layout import plan
from p2pshare.tree import Tree

FILES_PER_DIR = 1000
DIRS_PER_PARENT = 10


def make_offer(count: int, size: int) -> tuple[m.Offer, list[bytes]]:
    """The offer of ``count`` files of ``size`` bytes (and their directories), and the data
    of each entry (empty for a directory)."""
    entries: list[m.FileEntry] = [m.FileEntry("tree", 0, 0o755, kind="dir")]
    data: list[bytes] = [b""]
    payload = os.urandom(size)
    for i in range(count):
        leaf = i // FILES_PER_DIR
        parent = f"tree/p{leaf // DIRS_PER_PARENT:03}"
        if leaf % DIRS_PER_PARENT == 0 and i % FILES_PER_DIR == 0:
            entries.append(m.FileEntry(parent, 0, 0o755, kind="dir"))
            data.append(b"")
        if i % FILES_PER_DIR == 0:
            entries.append(m.FileEntry(f"{parent}/d{leaf:04}", 0, 0o755, kind="dir"))
            data.append(b"")
        body = f"{i:07}".encode() + payload[7:]
        entries.append(m.FileEntry(f"{parent}/d{leaf:04}/f{i:07}.txt", size, 0o644, 1.7e9 + i))
        data.append(body)
    return m.Offer(tuple(entries)), data


def writer_cpu_s() -> float:
    """CPU seconds of this process's writer threads so far (Linux: /proc)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        if thread.name.startswith("p2pshare-writer") and thread.native_id is not None:
            try:
                stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


async def run_once(
    offer: m.Offer, data: list[bytes], out: Path, batch: int, named: bool
) -> dict[str, Any]:
    parts = check_offer(offer)
    layout = plan(out, offer, parts, overwrite=False)
    tree = Tree(layout, offer)
    if named:
        tree._unnamed = False  # the general path: a temporary name, then renameat2
    writer = sinks.write_worker(tree)
    files = [
        (i, body, hashlib.sha256(body).hexdigest())
        for i, (entry, body) in enumerate(zip(offer.files, data, strict=True))
        if entry.kind == "file"
    ]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    writer.start()
    writer.submit(sinks.MakeDirs())
    for n in range(0, len(files), batch):
        writer.submit(sinks.WriteBatch(tuple(files[n : n + batch])))
    writer.submit(sinks.FinishDirs())
    thread_cpu = 0.0
    try:
        async for report in writer:
            if isinstance(report, sinks.DirsFinished):
                thread_cpu = writer_cpu_s()
                break
    finally:
        writer.stop()
    await asyncio.to_thread(writer.join, 60)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    per = 10_000 / len(files)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "way": "named" if named else "unnamed",
        "files": len(files),
        "wall_s": round(seconds, 3),
        "cpu_user_s": round(user, 2),
        "cpu_sys_s": round(system, 2),
        "writer_cpu_s": round(thread_cpu, 2),
        "per_10k": {
            "wall_s": round(seconds * per, 3),
            "cpu_s": round((user + system) * per, 2),
            "writer_cpu_s": round(thread_cpu * per, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--file-bytes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500, help="files per WriteBatch job")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ways",
        default="unnamed,named",
        help="unnamed (O_TMPFILE + linkat, the default), named (temporary name + rename), or "
        "both, alternated",
    )
    parser.add_argument("--base", type=Path, default=None, help="where to write (a disk)")
    args = parser.parse_args()
    offer, data = make_offer(args.files, args.file_bytes)
    with tempfile.TemporaryDirectory(prefix="p2pshare-tree-write-", dir=args.base) as tmp:
        for run in range(args.runs):
            for way in args.ways.split(","):
                # Kept until the end: a file system without a journal (ext4 here) makes every
                # new file skip the inodes deleted in the last minutes, so a run right after a
                # deletion would pay for it (see docs/performance.md).
                out = Path(tmp) / f"out-{way}-{run}"
                out.mkdir()
                result = asyncio.run(run_once(offer, data, out, args.batch, way == "named"))
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
