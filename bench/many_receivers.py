"""``send --many`` with 1, 2 and 3 receivers at once: total and per-receiver throughput and
the sender's peak RSS. Real CLI processes and a real p2pshare-signal on 127.0.0.1 (loopback,
large packets as by default); every receiver's copy is checked.

    .venv/bin/python bench/many_receivers.py --mib 64 --runs 2

Each receiver's figure is its own bytes over its own time (from its proof of the code to its
Done, as the sender's summary reports); the total is all bytes over the span from the first
receiver's start to the last one's end. Receivers start together with ``--parallel`` equal to
their number, so they share the machine's two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli_helpers import Peer, peak_rss, peer_env, run_signal_server

MIB = 1024 * 1024


def one_run(server: str, payload: Path, receivers: int, work: Path) -> dict[str, float]:
    rss_file = work / f"rss-{receivers}.txt"
    sender = Peer(
        [
            "send",
            str(payload),
            "--server",
            server,
            "--json",
            "--many",
            str(receivers),
            "--parallel",
            str(receivers),
        ],
        cwd=work,
        env=peer_env(),
        rss_file=rss_file,
    )
    code = sender.event("code")["code"]
    started = time.monotonic()
    peers = []
    for i in range(receivers):
        out = work / f"out-{receivers}-{i}"
        out.mkdir()
        peers.append(
            (
                out,
                Peer(
                    ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)],
                    cwd=out,
                    env=peer_env(),
                ),
            )
        )
    for _, peer in peers:
        assert peer.wait(300) == 0, peer.stderr
    span = time.monotonic() - started
    assert sender.wait(60) == 0, sender.stderr
    want = hashlib.sha256(payload.read_bytes()).hexdigest()
    for out, _ in peers:
        copy = out / payload.name
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == want
        copy.unlink()
    done = sender.last("summary")["receivers"]
    rates = [r["bytes"] / r["seconds"] / MIB for r in done]
    return {
        "total": receivers * payload.stat().st_size / span / MIB,
        "per_receiver_min": min(rates),
        "per_receiver_max": max(rates),
        "rss_mib": peak_rss(rss_file) / MIB,
    }


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_signal_server("--host", "127.0.0.1", "--port", "0") as server,
    ):
        work = Path(tmp)
        payload = work / "payload.bin"
        with open(payload, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(MIB))
        print("| receivers | total MiB/s | per receiver MiB/s | sender peak RSS MiB |")
        print("|---|---|---|---|")
        for run in range(args.runs):
            for receivers in (1, 2, 3):
                r = one_run(server, payload, receivers, _mkdir(work / f"{run}-{receivers}"))
                print(
                    f"| {receivers} | {r['total']:.1f} | {r['per_receiver_min']:.1f}-"
                    f"{r['per_receiver_max']:.1f} | {r['rss_mib']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
