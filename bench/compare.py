"""p2pshare against the alternatives, in one run, on the same files, on the same link.

Methods: p2pshare (real CLI, real p2pshare-signal; large SCTP packets on, as by default),
p2pshare-small (the same with ``P2PSHARE_LARGE_PACKETS=0``: 1,200-byte packets), two plain
aiortc baselines (bench/baseline_aiortc.py: ``aiortc-tuned``, a well-tuned use of the public
API, and ``aiortc-example``, aiortc's own example pattern), magic-wormhole (local mailbox and
transit relay, in its own virtualenv under bench/.venv-wormhole, created on first use), and
raw TCP (the ceiling). Runs alternate between methods (run 1 of every method, then run 2 in
reverse order...), so that a noisy neighbour on the machine hits them all alike.
Files: 256 MiB random, 256 MiB compressible (source code, text and CSV from this machine),
10,000 files of 1 KiB. Everything runs in two network namespaces joined by a veth pair
(senders in A, receivers in B), so no traffic leaves the namespaces. Needs root.

    sudo .venv/bin/python bench/compare.py                # full run, 3 repetitions
    sudo .venv/bin/python bench/compare.py --mib 64 --runs 1 --methods p2pshare,tcp
    sudo .venv/bin/python bench/compare.py --kinds random --methods p2pshare,p2pshare-small \
        --loss 1        # 1% of IP packets lost each way (each fragment on its own)
    sudo .venv/bin/python bench/compare.py --kinds compressible --rate-mbit 1000  # a 1 Gbit/s LAN

Writes bench/results/compare-TIMESTAMP.json and .md (and .png when matplotlib is installed).
Ratios within one run are what to track; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pshare_run import as_installed, wait_usage  # noqa: E402  (this script's own directory)

from tests.cli_helpers import measured, peak_rss  # noqa: E402
from tests.speedlab import speed_link  # noqa: E402

PY = sys.executable
P2PSHARE = str(Path(PY).parent / "p2pshare")
WORMHOLE_VENV = ROOT / "bench" / ".venv-wormhole"
HOST_A = "10.8.0.1"
MIB = 1 << 20
METHODS = (
    "p2pshare",
    "p2pshare-small",
    "aiortc-tuned",
    "aiortc-example",
    "magic-wormhole",
    "tcp",
)
KINDS = ("random", "compressible", "small-files")

Usage = dict[str, float]


_RSS_FILES: dict[int, Path] = {}
"""Where /usr/bin/time writes each running command's peak RSS, by pid."""


def _wait(proc: subprocess.Popen[Any]) -> Usage:
    usage = wait_usage(proc)
    rss_file = _RSS_FILES.pop(proc.pid)
    # wait4's figure is the largest process of the tree, the fork before exec included,
    # which mirrors this (large, after making a million files) script: time's is the
    # command's own.
    usage["rss_mib"] = peak_rss(rss_file) / MIB
    rss_file.unlink()
    if proc.returncode:
        raise RuntimeError(f"{proc.args!r} exited {proc.returncode}")
    return usage


def _in(ns: str, *args: str, **kw: Any) -> subprocess.Popen[Any]:
    fd, name = tempfile.mkstemp(prefix="p2pshare-rss-")
    os.close(fd)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *measured(list(args), Path(name))], **kw)
    _RSS_FILES[proc.pid] = Path(name)
    return proc


# -- inputs -----------------------------------------------------------------------------------


def make_inputs(base: Path, mib: int) -> dict[str, Path]:
    random_file = base / "random.bin"
    with open(random_file, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    corpus = base / "corpus.txt"
    sources = sorted(Path(sys.prefix).rglob("*.py"))[:4000]
    with open(corpus, "wb") as f:
        written, row = 0, 0
        while written < mib * MIB:
            for src in sources:
                data = src.read_bytes()
                # Source code, then CSV rows, then prose-like text, in turn.
                csv = "".join(
                    f"{row + i},{(row + i) * 7 % 1000},item-{(row + i) % 97},"
                    f"{(row + i) * 0.37:.2f}\n"
                    for i in range(200)
                ).encode()
                row += 200
                for chunk in (data, csv):
                    take = min(len(chunk), mib * MIB - written)
                    f.write(chunk[:take])
                    written += take
                if written >= mib * MIB:
                    break
    small = base / "small"
    for i in range(10_000):
        sub = small / f"d{i // 1000:02}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:05}.txt").write_bytes(os.urandom(512).hex().encode())
    return {"random": random_file, "compressible": corpus, "small-files": small}


def _size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


# -- methods ----------------------------------------------------------------------------------


def run_p2pshare(
    src: Path, out: Path, a: str, b: str, server: str, large: bool = True
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
    report = out.parent / f"{out.name}-link.jsonl"
    env["P2PSHARE_LINK_REPORT"] = str(report)
    if not large:
        env["P2PSHARE_LARGE_PACKETS"] = "0"
    sender = _in(
        a,
        P2PSHARE,
        "send",
        str(src),
        "--server",
        server,
        "--json",
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdout is not None
    code = json.loads(sender.stdout.readline())["code"]
    threading.Thread(target=sender.stdout.read, daemon=True).start()
    started = time.perf_counter()
    receiver = _in(
        b,
        P2PSHARE,
        "receive",
        code,
        "--server",
        server,
        "--json",
        "--yes",
        "-o",
        str(out),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    first: list[float] = []
    errors: list[str] = []

    def watch() -> None:
        assert receiver.stdout is not None
        for line in receiver.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["done"] > 0 and not first:
                first.append(time.perf_counter() - started)
            elif event["event"] == "error":
                errors.append(str(event.get("message")))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = _wait(receiver)
    except RuntimeError as exc:
        watcher.join(5)
        raise RuntimeError(f"{exc}: {'; '.join(errors)}") from None
    seconds = time.perf_counter() - started
    s = _wait(sender)
    watcher.join(5)
    links = [json.loads(line) for line in report.read_text().splitlines()]
    return {
        "seconds": seconds,
        "sender": s,
        "receiver": r,
        "first_byte_s": first[0] if first else None,
        "large": [link.get("large", {}).get("state", "-") for link in links],
    }


def run_p2pshare_small(src: Path, out: Path, a: str, b: str, server: str) -> dict[str, Any]:
    return run_p2pshare(src, out, a, b, server, large=False)


def run_baseline(
    src: Path, out: Path, a: str, b: str, server: str, mode: str = "example"
) -> dict[str, Any] | None:
    if not src.is_file():
        return None  # the example sends one file
    script = str(ROOT / "bench" / "baseline_aiortc.py")
    sender = _in(
        a,
        PY,
        script,
        "send",
        str(src),
        mode,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdin is not None and sender.stdout is not None
    offer = sender.stdout.readline()
    started = time.perf_counter()
    receiver = _in(
        b,
        PY,
        script,
        "receive",
        str(out / src.name),
        mode,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdin is not None and receiver.stdout is not None
    receiver.stdin.write(offer)
    receiver.stdin.flush()
    sender.stdin.write(receiver.stdout.readline())
    sender.stdin.flush()
    s = _wait(sender)
    seconds = time.perf_counter() - started
    r = _wait(receiver)
    return {"seconds": seconds, "sender": s, "receiver": r, "first_byte_s": None}


def ensure_wormhole() -> Path:
    wormhole = WORMHOLE_VENV / "bin" / "wormhole"
    if not wormhole.exists():
        subprocess.run([sys.executable, "-m", "venv", str(WORMHOLE_VENV)], check=True)
        subprocess.run(
            [
                str(WORMHOLE_VENV / "bin" / "pip"),
                "install",
                "-q",
                "magic-wormhole",
                "magic-wormhole-mailbox-server",
                "magic-wormhole-transit-relay",
            ],
            check=True,
        )
    return wormhole


def run_wormhole(src: Path, out: Path, a: str, b: str, server: str) -> dict[str, Any]:
    wormhole = str(ensure_wormhole())
    common = ["--relay-url", f"ws://{HOST_A}:4000/v1", "--transit-helper", f"tcp:{HOST_A}:4001"]
    code = f"{int(time.time()) % 1000 + 1}-bench-run"
    sender = _in(
        a,
        wormhole,
        *common,
        "send",
        "--code",
        code,
        str(src),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert sender.stderr is not None
    for line in sender.stderr:  # wait until the code is registered
        if "wormhole receive" in line:
            break
    threading.Thread(target=sender.stderr.read, daemon=True).start()
    started = time.perf_counter()
    receiver = _in(
        b,
        wormhole,
        *common,
        "receive",
        "--accept-file",
        "-o",
        str(out / src.name),
        code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = _wait(receiver)
    seconds = time.perf_counter() - started
    s = _wait(sender)
    return {"seconds": seconds, "sender": s, "receiver": r, "first_byte_s": None}


_TCP = r"""
import socket, sys, tarfile
role, path = sys.argv[1], sys.argv[2]
if role == "recv":
    srv = socket.create_server(("0.0.0.0", 4100)); print("ready", flush=True)
    conn, _ = srv.accept()
    with conn.makefile("rb", buffering=1 << 20) as f, tarfile.open(fileobj=f, mode="r|") as t:
        t.extractall(path, filter="data")
else:
    conn = socket.create_connection((sys.argv[3], 4100))
    with conn.makefile("wb", buffering=1 << 20) as f, tarfile.open(fileobj=f, mode="w|") as t:
        t.add(path, arcname=path.rstrip("/").split("/")[-1])
"""


def run_tcp(src: Path, out: Path, a: str, b: str, server: str) -> dict[str, Any]:
    receiver = _in(b, PY, "-c", _TCP, "recv", str(out), stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    receiver.stdout.readline()
    started = time.perf_counter()
    sender = _in(a, PY, "-c", _TCP, "send", str(src), HOST_A.replace(".1", ".2"))
    s = _wait(sender)
    r = _wait(receiver)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "sender": s, "receiver": r, "first_byte_s": None}


def run_baseline_tuned(src: Path, out: Path, a: str, b: str, server: str) -> dict[str, Any] | None:
    return run_baseline(src, out, a, b, server, "tuned")


RUNNERS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "p2pshare": run_p2pshare,
    "p2pshare-small": run_p2pshare_small,
    "aiortc-tuned": run_baseline_tuned,
    "aiortc-example": run_baseline,
    "magic-wormhole": run_wormhole,
    "tcp": run_tcp,
}


# -- report -----------------------------------------------------------------------------------


def summarise(samples: list[dict[str, Any]], nbytes: int, nfiles: int) -> dict[str, Any]:
    rates = [nbytes / s["seconds"] / 1e6 for s in samples]
    gib = nbytes / (1 << 30)
    first = [s["first_byte_s"] for s in samples if s["first_byte_s"] is not None]
    return {
        "mb_per_s": {
            "median": round(statistics.median(rates), 2),
            "min": round(min(rates), 2),
            "max": round(max(rates), 2),
        },
        "files_per_s": round(nfiles / statistics.median(s["seconds"] for s in samples), 1),
        "sender_rss_mib": round(max(s["sender"]["rss_mib"] for s in samples), 1),
        "receiver_rss_mib": round(max(s["receiver"]["rss_mib"] for s in samples), 1),
        "cpu_s_per_gib": round(
            statistics.median(
                (s["sender"]["cpu_s"] + s["receiver"]["cpu_s"]) / gib for s in samples
            ),
            1,
        ),
        "first_byte_s": round(statistics.median(first), 3) if first else None,
        "runs": len(samples),
        "large": sorted({state for s in samples for state in s.get("large", [])}),
    }


T_95 = (0, 12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
        2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05,
        2.04, 2.04)  # fmt: skip
"""Student's t, two-sided 95%, by degrees of freedom (the last entry serves beyond 31)."""


def paired(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """p2pshare's speed over a method's, run by run (each pair ran back to back): the geometric
    mean of the ratios with a 95% interval (Student's t on the logs). A pair shares
    whatever the machine was doing then, so this sees smaller differences than the medians
    when runs spread widely (at 1% loss they range over x1.7)."""
    times = {s["run"]: s["seconds"] for s in theirs}
    ratios = [times[s["run"]] / s["seconds"] for s in ours if s["run"] in times]
    if len(ratios) < 2:
        return None
    logs = [math.log(r) for r in ratios]
    t = T_95[min(len(logs) - 1, len(T_95) - 1)]
    mean, error = statistics.mean(logs), t * statistics.stdev(logs) / math.sqrt(len(logs))
    return {
        "geomean": round(math.exp(mean), 3),
        "low": round(math.exp(mean - error), 3),
        "high": round(math.exp(mean + error), 3),
        "faster": sum(r > 1 for r in ratios),
        "pairs": len(ratios),
    }


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| file kind | method | MB/s median (min-max) | files/s | p2pshare ÷ method | "
        "RSS sender / receiver MiB | CPU s/GiB (both) | first byte s | large packets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, by_method in results.items():
        ours = by_method.get("p2pshare")
        for method, r in by_method.items():
            mb = r["mb_per_s"]
            ratio = (
                f"{ours['mb_per_s']['median'] / mb['median']:.2f}"
                if ours and method != "p2pshare"
                else "—"
            )
            lines.append(
                f"| {kind} | {method} | {mb['median']} ({mb['min']}-{mb['max']}) | "
                f"{r['files_per_s']} | {ratio} | {r['sender_rss_mib']} / "
                f"{r['receiver_rss_mib']} | {r['cpu_s_per_gib']} | "
                f"{r['first_byte_s'] if r['first_byte_s'] is not None else '—'} | "
                f"{', '.join(r.get('large') or ['—'])} |"
            )
    notes = [
        f"- {kind}, p2pshare ÷ {method} run by run: geometric mean x{p['geomean']} "
        f"(95% interval x{p['low']}-{p['high']}), faster in {p['faster']} of {p['pairs']} pairs"
        for kind, by_method in results.items()
        for method, r in by_method.items()
        if (p := r.get("paired"))
    ]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def chart(results: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    kinds = list(results)
    methods = sorted({m for r in results.values() for m in r}, key=METHODS.index)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [results[k].get(method, {}).get("mb_per_s", {}).get("median", 0) for k in kinds]
        ax.bar([x + i * width for x in range(len(kinds))], values, width, label=method)
    ax.set_xticks([x + width * (len(methods) - 1) / 2 for x in range(len(kinds))], kinds)
    ax.set_ylabel("MB/s (median)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Throughput by method and file kind (log scale)")
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--loss", type=float, default=0.0, help="percent of IP packets lost at each end"
    )
    parser.add_argument(
        "--rate-mbit",
        type=int,
        default=None,
        help="cap each end's sending rate, as a LAN link would (default: no cap)",
    )
    parser.add_argument(
        "--udp-offload",
        action="store_true",
        help="leave the veth's UDP segmentation offload on (a card with USO: a UDP GSO send "
        "crosses as one packet); by default each segment is its own IP packet",
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    kinds = [k for k in args.kinds.split(",") if k]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="p2pshare-compare-") as tmp:
        base = Path(tmp)
        inputs = make_inputs(base, args.mib)
        as_installed(*([ensure_wormhole().parent.parent] if "magic-wormhole" in methods else []))
        with speed_link(
            base, args.loss, rate_mbit=args.rate_mbit, udp_offload=args.udp_offload
        ) as (lab, a, b):
            servers = [
                lab.spawn(
                    a,
                    [
                        PY,
                        "-m",
                        "signal_server",
                        "--host",
                        HOST_A,
                        "--port",
                        "0",
                        "--log-level",
                        "warning",
                        "--joins-per-ip-per-minute",
                        "0",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            ]
            assert servers[0].stdout is not None
            server = servers[0].stdout.readline().split()[-1]
            if "magic-wormhole" in methods:
                twist = str(ensure_wormhole().parent / "twist")
                lab.spawn(
                    a,
                    [twist, "wormhole-mailbox", f"--port=tcp:4000:interface={HOST_A}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                lab.spawn(
                    a,
                    [twist, "transitrelay", f"--port=tcp:4001:interface={HOST_A}"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(3)  # twisted servers print nothing reliable to wait on
            for kind in kinds:
                src = inputs[kind]
                nbytes, nfiles = _size(src)
                samples: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
                for run in range(args.runs):
                    # Every other run in reverse order: whatever a method leaves behind (page
                    # cache, a warm CPU) falls on each side of a pair alike.
                    for method in methods if run % 2 == 0 else methods[::-1]:
                        out = base / f"out-{kind}-{method}-{run}"
                        out.mkdir()
                        sample = RUNNERS[method](src, out, a, b, server)
                        if sample is None:
                            continue
                        got_bytes, got_files = _size(out)
                        if got_bytes < nbytes or got_files < nfiles:
                            raise RuntimeError(f"{method} lost data on {kind}")
                        sample["run"] = run
                        samples[method].append(sample)
                        subprocess.run(["rm", "-rf", str(out)], check=True)
                        print(
                            json.dumps(
                                {
                                    "kind": kind,
                                    "method": method,
                                    "run": run,
                                    "seconds": round(sample["seconds"], 2),
                                    "mb_per_s": round(nbytes / sample["seconds"] / 1e6, 2),
                                    "cpu_s": round(
                                        sample["sender"]["cpu_s"] + sample["receiver"]["cpu_s"], 2
                                    ),
                                    "large": sample.get("large"),
                                }
                            ),
                            flush=True,
                        )
                results[kind] = {m: summarise(v, nbytes, nfiles) for m, v in samples.items() if v}
                for method, summary in results[kind].items():
                    if method != "p2pshare" and "p2pshare" in samples:
                        summary["paired"] = paired(samples["p2pshare"], samples[method])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    report = {
        "mib": args.mib,
        "runs": args.runs,
        "loss_pct": args.loss,
        "rate_mbit": args.rate_mbit,
        "udp_offload": args.udp_offload,
        "results": results,
        "cpus": os.cpu_count(),
        "when": stamp,
    }
    (out_dir / f"compare-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results)
    (out_dir / f"compare-{stamp}.md").write_text(table)
    png = chart(results, out_dir / f"compare-{stamp}.png")
    print(table)
    print(f"wrote bench/results/compare-{stamp}.json, .md{', .png' if png else ''}")


if __name__ == "__main__":
    main()
