"""Stock versus patched aiortc SCTP (p2pshare/aiortc_patches.py), in the same run, alternating.

Two network namespaces joined by a veth pair; each end drops ``--loss`` % of arriving UDP
packets (iptables statistic). The real CLI sends a random file from A to B with the sender's
embedded rendezvous server. Needs root. Prints one JSON line per transfer and a summary::

    sudo .venv/bin/python bench/sctp_ab.py --mib 64 --runs 3 --loss 0 --loss 1
"""

from __future__ import annotations

import argparse
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
from tests.natlab import lossy_link  # noqa: E402


def transfer(src: Path, out: Path, host_a: str, host_b: str, stock: bool) -> float:
    env = lab_env()
    if stock:
        env["P2PSHARE_STOCK_SCTP"] = "1"
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
    args = parser.parse_args()
    summary = {}
    with tempfile.TemporaryDirectory(prefix="p2pshare-sctp-") as tmp:
        base = Path(tmp)
        src = base / "random.bin"
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        for loss in args.loss or [0.0, 1.0]:
            with lossy_link(base, loss) as (_, host_a, host_b):
                rates: dict[str, list[float]] = {"stock": [], "patched": []}
                for run in range(args.runs):
                    for label in ("stock", "patched"):
                        out = base / f"out-{loss}-{run}-{label}"
                        out.mkdir()
                        rate = transfer(src, out, host_a, host_b, label == "stock")
                        rates[label].append(rate)
                        (out / src.name).unlink()
                        print(
                            json.dumps(
                                {"loss_pct": loss, "sctp": label, "mb_per_s": round(rate, 2)}
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
                    "ratio": round(
                        statistics.median(rates["patched"]) / statistics.median(rates["stock"]), 2
                    )
                }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
