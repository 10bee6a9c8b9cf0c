"""How p2pshare's costs grow with the work: file count, file size, directory depth.

Each series runs p2pshare and magic-wormhole (local mailbox and transit relay) on the same
inputs, in the same run, over the same veth pair between two network namespaces as
``bench/compare.py`` (whose helpers this script uses: the wormhole virtualenv, both runners,
the link). Per run: wall time, files/s, MB/s, CPU seconds and peak RSS of each side. Between
consecutive sizes of a series it prints the log-log slope of the wall time (1.0: linear;
2.0: quadratic). Needs root (namespaces).

Series (defaults are modest: the machine is shared):

- ``files``: trees of small files (``--file-bytes``, 100 by default), 1,000 to a directory,
  ten directories to a parent: ``--files 10000,100000`` (add 1000000 when there is time);
- ``large``: one random file of each of ``--large-gib`` GiB (``1``; ``1,4,16`` for the full
  series; each needs that much free disk three times);
- ``depth``: ``--depth-files`` files (2,000) at the bottom of a chain of directories of each
  of ``--depths`` levels (1, 8, 32, 63; 64 is the receiver's limit).

    sudo .venv/bin/python bench/scale.py
    sudo .venv/bin/python bench/scale.py --series files --files 10000,100000,1000000
    sudo .venv/bin/python bench/scale.py --series large --large-gib 1,4,16 --methods p2pshare

Receivers run with default settings. Writes bench/results/scale-TIMESTAMP.json and .md, and
a log-log chart (.png) when matplotlib is installed (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compare import (  # this script's own directory
    HOST_A,
    MIB,
    PY,
    ROOT,
    _size,
    ensure_wormhole,
    run_p2pshare,
    run_wormhole,
)
from p2pshare_run import as_installed

from tests.speedlab import speed_link

METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "p2pshare": run_p2pshare,
    "magic-wormhole": run_wormhole,
}
SERIES = ("files", "large", "depth")
FILES_PER_DIR = 1000
DIRS_PER_PARENT = 10


# -- inputs -----------------------------------------------------------------------------------


def make_files(base: Path, count: int, size: int) -> Path:
    """``count`` files of ``size`` bytes: ``tree/pNN/dNNN/fNNNNNNN.txt``."""
    tree = base / f"files-{count}"
    payload = os.urandom(size)
    for i in range(count):
        leaf = i // FILES_PER_DIR
        sub = tree / f"p{leaf // DIRS_PER_PARENT:03}" / f"d{leaf:04}"
        if i % FILES_PER_DIR == 0:
            sub.mkdir(parents=True)
        # Distinct contents (a counter in front), so that nothing can be deduplicated.
        (sub / f"f{i:07}.txt").write_bytes(f"{i:07}".encode() + payload[7:])
    return tree


def make_large(base: Path, gib: int) -> Path:
    path = base / f"large-{gib}g.bin"
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(gib * 1024):
            # Fresh bytes in every MiB (cheaper than urandom for 16 GiB, still incompressible).
            f.write(i.to_bytes(8, "big") + block[8:])
    return path


def make_depth(base: Path, depth: int, count: int, size: int) -> Path:
    """``count`` files at the bottom of a chain of ``depth`` directories (``depth`` counts
    the tree's own top directory)."""
    tree = base / f"depth-{depth}"
    bottom = tree.joinpath(*(["d"] * (depth - 1)))
    bottom.mkdir(parents=True)
    payload = os.urandom(size)
    for i in range(count):
        (bottom / f"f{i:05}.txt").write_bytes(f"{i:05}".encode() + payload[5:])
    return tree


# -- running ----------------------------------------------------------------------------------


@contextmanager
def lab(base: Path, methods: list[str]) -> Iterator[tuple[str, str, str]]:
    """The two namespaces, a p2pshare-signal and (if wanted) the wormhole servers in A."""
    with speed_link(base) as (the_lab, a, b):
        server_proc = the_lab.spawn(
            a,
            [
                *(PY, "-m", "signal_server", "--host", HOST_A, "--port", "0"),
                *("--log-level", "warning", "--joins-per-ip-per-minute", "0"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server_proc.stdout is not None
        server = server_proc.stdout.readline().split()[-1]
        if "magic-wormhole" in methods:
            twist = str(ensure_wormhole().parent / "twist")
            for service, port in (("wormhole-mailbox", 4000), ("transitrelay", 4001)):
                the_lab.spawn(
                    a,
                    [twist, service, f"--port=tcp:{port}:interface={HOST_A}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            time.sleep(3)  # twisted servers print nothing reliable to wait on
        yield a, b, server


def measure(
    method: str, src: Path, base: Path, a: str, b: str, server: str, nbytes: int, nfiles: int
) -> dict[str, Any]:
    out = base / f"out-{method}"
    out.mkdir()
    try:
        sample = METHODS[method](src, out, a, b, server)
        got_bytes, got_files = _size(out)
        if got_bytes < nbytes or got_files < nfiles:
            raise RuntimeError(f"{method} lost data on {src.name}")
    finally:
        # Removed after the last run (a million files take minutes to remove). Removing them
        # here would also change the next run's figures: on a journal-less ext4 (this
        # machine's) a new inode skips every inode of its group freed in the last minutes
        # (bench/tree_write.py, 20,000 files on a fresh image: 1.3 s of system time, 14.9 s
        # right after 100,000 files were deleted there).
        out.rename(base / f"done-{method}-{time.monotonic_ns()}")
    seconds = sample["seconds"]
    return {
        "method": method,
        "seconds": round(seconds, 2),
        "files_per_s": round(nfiles / seconds, 1),
        "mb_per_s": round(nbytes / seconds / 1e6, 2),
        "sender_cpu_s": round(sample["sender"]["cpu_s"], 2),
        "receiver_cpu_s": round(sample["receiver"]["cpu_s"], 2),
        "sender_rss_mib": round(sample["sender"]["rss_mib"], 1),
        "receiver_rss_mib": round(sample["receiver"]["rss_mib"], 1),
    }


def slope(x1: float, y1: float, x2: float, y2: float) -> float:
    """The exponent k in y ~ x^k between two points."""
    return math.log(y2 / y1) / math.log(x2 / x1)


# -- report -----------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| series | size | method | wall s | files/s | MB/s | CPU s sender / receiver | "
        "peak RSS MiB sender / receiver | slope from previous size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['series']} | {r['label']} | {r['method']} | {r['seconds']} | "
            f"{r['files_per_s']:,} | {r['mb_per_s']} | {r['sender_cpu_s']} / "
            f"{r['receiver_cpu_s']} | {r['sender_rss_mib']} / {r['receiver_rss_mib']} | "
            f"{r.get('slope', '—')} |"
        )
    ratios = []
    for r in rows:
        if r["method"] != "p2pshare":
            continue
        for other in rows:
            if other["series"] == r["series"] and other["x"] == r["x"] and other is not r:
                ratios.append(
                    f"- {r['label']}: p2pshare is "
                    f"{other['seconds'] / r['seconds']:.2f}x as fast as {other['method']}"
                )
    overall = []
    for name in SERIES:
        for method in METHODS:
            points = sorted(
                (r["x"], r["seconds"]) for r in rows if (r["series"], r["method"]) == (name, method)
            )
            if len(points) > 2 and name != "depth":
                (x1, y1), (x2, y2) = points[0], points[-1]
                overall.append(
                    f"- {name}, {method}: slope {slope(x1, y1, x2, y2):.2f} from {x1:,} to {x2:,}"
                )
    notes = ratios + overall
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = [s for s in SERIES if any(r["series"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4), squeeze=False)
    for ax, name in zip(axes[0], series, strict=True):
        for method in METHODS:
            points = sorted(
                (r["x"], r["seconds"]) for r in rows if (r["series"], r["method"]) == (name, method)
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=method)
        if name != "depth":
            # A line of slope 1 through the first point, for reference.
            first = min((r["x"], r["seconds"]) for r in rows if r["series"] == name)
            xs = sorted({r["x"] for r in rows if r["series"] == name})
            ax.plot(xs, [first[1] * x / first[0] for x in xs], ":", color="grey", label="linear")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel({"files": "files", "large": "GiB", "depth": "directory depth"}[name])
        ax.set_ylabel("wall seconds")
        ax.set_title(f"{name} (log-log)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default=",".join(SERIES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--files", default="10000,100000", help="file counts (comma-separated)")
    parser.add_argument("--file-bytes", type=int, default=100)
    parser.add_argument("--large-gib", default="1", help="sizes of the large file, in GiB")
    parser.add_argument("--depths", default="1,8,32,63")
    parser.add_argument("--depth-files", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None, help="where inputs go (a big disk)")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    series = [s for s in args.series.split(",") if s]
    as_installed(*([ensure_wormhole().parent.parent] if "magic-wormhole" in methods else []))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="p2pshare-scale-", dir=args.workdir) as tmp:
        base = Path(tmp)
        plans: list[tuple[str, int, str, Callable[[], Path]]] = []
        if "files" in series:
            for n in map(int, args.files.split(",")):
                make = functools.partial(make_files, base, n, args.file_bytes)
                plans.append(("files", n, f"{n:,} files", make))
        if "large" in series:
            for g in map(int, args.large_gib.split(",")):
                plans.append(("large", g, f"{g} GiB", functools.partial(make_large, base, g)))
        if "depth" in series:
            for d in map(int, args.depths.split(",")):
                make = functools.partial(make_depth, base, d, args.depth_files, args.file_bytes)
                plans.append(("depth", d, f"depth {d}", make))
        with lab(base, methods) as (a, b, server):
            for k, (name, x, label, make_input) in enumerate(plans):
                src = make_input()
                nbytes, nfiles = _size(src)
                # Every other input in reverse order: what one method leaves behind (page
                # cache, a warm CPU) falls on both alike.
                for method in methods if k % 2 == 0 else methods[::-1]:
                    row: dict[str, Any] = {"series": name, "x": x, "label": label}
                    row |= measure(method, src, base, a, b, server, nbytes, nfiles)
                    earlier = [r for r in rows if (r["series"], r["method"]) == (name, method)]
                    if earlier and earlier[-1]["x"] != x:
                        row["slope"] = round(
                            slope(earlier[-1]["x"], earlier[-1]["seconds"], x, row["seconds"]), 2
                        )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                src.rename(base / f"done-input-{k}")
        write_report(rows, args)  # before the removal: a million files take minutes
        print("removing the inputs and outputs...", flush=True)
        for done in base.glob("done-*"):
            subprocess.run(["rm", "-rf", str(done)], check=True)


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    settings = vars(args) | {"workdir": str(args.workdir)}
    report = {"rows": rows, "cpus": os.cpu_count(), "when": stamp, "args": settings}
    (out_dir / f"scale-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(rows)
    (out_dir / f"scale-{stamp}.md").write_text(table)
    png = chart(rows, out_dir / f"scale-{stamp}.png")
    print(table)
    print(f"wrote bench/results/scale-{stamp}.json, .md{', .png' if png else ''}", flush=True)


if __name__ == "__main__":
    main()
