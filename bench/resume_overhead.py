"""What resuming costs, through the real CLI on loopback (real p2pshare-signal, two processes).

    python bench/resume_overhead.py --mib 512 --trials 3

Per trial: a fresh transfer (time from the receiver's offer event to its first byte on disk);
the same file with the receiver SIGKILLed at half, then resent (the same time, now including
both sides' hashing of the prefix, and the bytes sent); then once more with the whole file in
place (time to check and skip it). The difference between the first two times is the cost
of the prefix check; compare it with the time sending those bytes again would take.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli_helpers import Peer, run_signal_server

MIB = 1 << 20


def _run(
    server: str, src: Path, out: Path, kill_at: int | None = None
) -> tuple[int, float, dict[str, Any]] | None:
    sender = Peer(["send", str(src), "--server", server, "--json"], cwd=src.parent)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)], cwd=out
    )
    offer = receiver.event("offer")
    offered = time.monotonic()
    if kill_at is not None:
        receiver.event("progress", where=lambda e: e["done"] >= kill_at)
        receiver.kill()
        sender.send_signal(signal.SIGINT)
        sender.wait()
        return None
    found: int = offer["found"]
    if found < offer["bytes"]:
        receiver.event("progress", where=lambda e: e["done"] > found)
    first = time.monotonic() - offered
    if receiver.wait() != 0 or sender.wait() != 0:
        raise SystemExit(f"transfer failed: {receiver.stderr} {sender.stderr}")
    return found, first, receiver.last("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * MIB
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "big.bin", Path(tmp) / "out"
        out.mkdir()
        with open(src, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(MIB))
        with run_signal_server("--host", "127.0.0.1", "--port", "0") as url:
            for _ in range(args.trials):
                for leftover in out.iterdir():
                    leftover.unlink()
                fresh = _run(url, src, out)
                (out / src.name).unlink()
                _run(url, src, out, kill_at=size // 2)
                resumed = _run(url, src, out)
                skipped = _run(url, src, out)
                assert fresh and resumed and skipped
                print(
                    f"fresh: first byte {fresh[1] * 1000:.0f} ms after the offer | "
                    f"resumed with {resumed[0] / MIB:.0f} MiB found: {resumed[1] * 1000:.0f} ms, "
                    f"{resumed[2]['sent'] / MIB:.0f} MiB sent | whole file in place: "
                    f"checked in {skipped[2]['seconds'] * 1000:.0f} ms, "
                    f"{skipped[2]['sent']} bytes sent",
                    flush=True,
                )


if __name__ == "__main__":
    main()
