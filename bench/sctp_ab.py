"""Stock aiortc SCTP, patched SCTP at the 1,200-byte base size, and patched SCTP with large
packets (p2pshare/aiortc_patches/), in the same run, alternating.

Two network namespaces joined by a veth pair (MTU 1,500); each end drops ``--loss`` % of the
arriving IP packets, each fragment of a large datagram on its own (tests/speedlab.py). The real
CLI sends a random file from A to B with the sender's embedded rendezvous server. Needs root.
Prints one JSON line per transfer and a summary::

    sudo .venv/bin/python bench/sctp_ab.py --mib 64 --runs 3 --loss 0 --loss 1
    sudo .venv/bin/python bench/sctp_ab.py --modes small,large --loss 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cli_helpers import Peer, lab_env  # noqa: E402
from tests.speedlab import speed_link  # noqa: E402

MODES = ("stock", "small", "large")


def transfer(src: Path, out: Path, host_a: str, host_b: str, mode: str) -> float:
    """``mode`` is one of MODES, optionally with ``+rto<seconds>`` (the minimum RTO knob)."""
    env = lab_env()
    mode, *extras = mode.split("+")
    for extra in extras:
        if extra.startswith("rto"):
            env["P2PSHARE_SCTP_RTO_MIN_S"] = extra[3:]
    if mode == "stock":
        env["P2PSHARE_STOCK_SCTP"] = "1"
    elif mode == "small":
        env["P2PSHARE_LARGE_PACKETS"] = "0"
    sender = Peer(["send", str(src), "--json"], cwd=src.parent, env=env, netns=host_a)
    event = sender.event("code")
    started = time.perf_counter()
    receiver = Peer(
        ["receive", event["code"], "--server", event["server"], "--json", "--yes", "-o", str(out)],
        cwd=src.parent,
        env=env,
        netns=host_b,
    )
    if receiver.wait(900) != 0 or sender.wait(60) != 0:
        raise RuntimeError(f"transfer failed: {receiver.stderr} {sender.stderr}")
    return src.stat().st_size / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", type=float, action="append", help="percent; repeatable")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m.split("+")[0] in MODES]
    summary = {}
    with tempfile.TemporaryDirectory(prefix="p2pshare-sctp-") as tmp:
        base = Path(tmp)
        src = base / "random.bin"
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        for loss in args.loss or [0.0, 1.0]:
            with speed_link(base, loss) as (_, host_a, host_b):
                rates: dict[str, list[float]] = {mode: [] for mode in modes}
                for run in range(args.runs):
                    for label in modes:
                        out = base / f"out-{loss}-{run}-{label}"
                        out.mkdir()
                        rate = transfer(src, out, host_a, host_b, label)
                        rates[label].append(rate)
                        (out / src.name).unlink()
                        print(
                            json.dumps(
                                {"loss_pct": loss, "mode": label, "mb_per_s": round(rate, 2)}
                            ),
                            flush=True,
                        )
                summary[f"loss {loss:g}%"] = {
                    label: {
                        "median": round(statistics.median(v), 2),
                        "min": round(min(v), 2),
                        "max": round(max(v), 2),
                    }
                    for label, v in rates.items()
                } | {
                    f"{b} / {a}": round(
                        statistics.median(rates[b]) / statistics.median(rates[a]), 2
                    )
                    for a, b in itertools.pairwise(modes)
                }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
