"""Time one p2pshare transfer through the real CLI: real p2pshare-signal, two processes.

Used by the benchmarks; also runnable on its own::

    python bench/p2pshare_run.py small-files       # 10,000 files of 1 KiB
    python bench/p2pshare_run.py random --mib 256  # one incompressible file

Reports wall seconds from the receiver's start to its exit, bytes, files per second, MB/s,
each side's peak RSS and CPU seconds, and the time from starting ``receive`` to its first
progress past zero bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def as_installed(*more: Path) -> None:
    """Compile the project's bytecode (and any of ``more``: another program's virtualenv), as
    ``pip install`` does. A checkout run with ``PYTHONDONTWRITEBYTECODE`` set (this machine sets
    it) compiles every p2pshare module from source at each start: 0.06-0.1 s that no installed
    copy pays."""
    for path in (ROOT / "p2pshare", ROOT / "signal_server", *more):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(path)], check=True)


def make_small_files(directory: Path, count: int = 10_000, size: int = 1024) -> Path:
    tree = directory / "small"
    for i in range(count):
        sub = tree / f"d{i // 1000:02}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:05}.txt").write_bytes(os.urandom(size // 2).hex().encode()[:size])
    return tree


def make_random_file(directory: Path, mib: int) -> Path:
    path = directory / "random.bin"
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    return path


@contextmanager
def signal_server() -> Iterator[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signal_server",
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
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


def wait_usage(proc: subprocess.Popen[Any], timeout: float = 1800) -> dict[str, float]:
    """Wait for ``proc`` (killed after ``timeout`` s); its peak RSS (MiB) and CPU seconds."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rss_mib": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def run_transfer(
    source: Path, server: str, out: Path, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Send ``source`` (file or directory) to ``out`` and measure both sides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
    env.update({"P2PSHARE_LOCAL_ADDRESSES": "127.0.0.1", **(env_extra or {})})
    p2pshare = str(BIN / "p2pshare")
    sender = subprocess.Popen(
        [p2pshare, "send", str(source), "--server", server, "--json"],
        cwd=source.parent,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdout is not None
    code = json.loads(sender.stdout.readline())["code"]
    threading.Thread(target=sender.stdout.read, daemon=True).start()
    started = time.perf_counter()
    receiver = subprocess.Popen(
        [p2pshare, "receive", code, "--server", server, "--json", "--yes", "-o", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    first_byte: list[float] = []
    done: list[dict[str, Any]] = []

    def watch() -> None:
        assert receiver.stdout is not None
        for line in receiver.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["done"] > 0 and not first_byte:
                first_byte.append(time.perf_counter() - started)
            if event["event"] == "done":
                done.append(event)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    receiver_usage = wait_usage(receiver)
    seconds = time.perf_counter() - started
    sender_usage = wait_usage(sender)
    watcher.join(10)
    if receiver.returncode or sender.returncode or not done:
        raise RuntimeError(
            f"transfer failed: receiver {receiver.returncode}, sender {sender.returncode}"
        )
    nbytes, files = done[0]["bytes"], done[0]["files"]
    return {
        "seconds": round(seconds, 3),
        "bytes": nbytes,
        "files": files,
        "mb_per_s": round(nbytes / seconds / 1e6, 2),
        "files_per_s": round(files / seconds, 1),
        "first_byte_s": round(first_byte[0], 3) if first_byte else None,
        "sender": {k: round(v, 2) for k, v in sender_usage.items()},
        "receiver": {k: round(v, 2) for k, v in receiver_usage.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["small-files", "random"])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    as_installed()
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    with tempfile.TemporaryDirectory(prefix="p2pshare-bench-") as tmp:
        base = Path(tmp)
        source = (
            make_small_files(base)
            if args.kind == "small-files"
            else make_random_file(base, args.mib)
        )
        with signal_server() as server:
            for _ in range(args.runs):
                out = base / "out"
                out.mkdir()
                print(json.dumps({"kind": args.kind, **run_transfer(source, server, out)}))
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
