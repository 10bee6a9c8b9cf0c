"""`receive` start to the first byte on disk, measured honestly.

The receiver's progress events are throttled (one per 0.25 s in --json), so timing them
measures the throttle. This watches the output directory instead: the clock stops when any
file in it (the temporary file the data lands in) first has a byte. Real processes on
loopback: p2pshare-signal, a sender already waiting, then `p2pshare receive`, N times for
each output mode, alternating: `--json`, and the human display (rich, on a pipe here).
The project's bytecode is compiled first, as `pip install` leaves it.

    python bench/first_byte.py --runs 7
    python bench/first_byte.py --runs 9 --against P2PSHARE_MEDIA_STAND_IN=0  # an A/B
    python bench/first_byte.py --lan --runs 7  # as root

``--lan``: no rendezvous server and no --server, as on a real LAN without internet: the
sender (embedded server, mDNS) and the receiver run in two network namespaces on one
Ethernet segment (tests/natlab.py ``one_lan``), with nothing beyond it. The P2PSHARE_*
variables of the caller are dropped, so the public defaults would be on: every mode is
timed twice, "public on" (the public mailbox is tried, and unreachable here, beside the
LAN) and "public off" (P2PSHARE_PUBLIC=0, the LAN alone), and each line says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2pshare_run import as_installed  # noqa: E402  (this script's own directory)

MODES = {"json": ["--json"], "human": []}


def first_byte(
    server: str | None,
    source: Path,
    out: Path,
    env: dict[str, str],
    mode: list[str],
    hosts: tuple[list[str], list[str]] = ([], []),
) -> float:
    """``server`` None: no --server (the LAN); ``hosts``: a command prefix for each side
    (``ip netns exec NAME``)."""
    via = ["--server", server] if server else []
    sender = subprocess.Popen(
        [*hosts[0], BIN / "p2pshare", "send", str(source), *via, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdout is not None
    code = None
    for line in sender.stdout:
        event = json.loads(line)
        if event["event"] == "code":
            code = event["code"]
            break
    assert code is not None, "the sender printed no code"
    started = time.perf_counter()
    receiver = subprocess.Popen(
        [*hosts[1], BIN / "p2pshare", "receive", code, *via, "--yes", *mode, "-o", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = None
    while elapsed is None and receiver.poll() is None:
        for entry in os.scandir(out):
            if entry.stat(follow_symlinks=False).st_size > 0:
                elapsed = time.perf_counter() - started
                break
        else:
            time.sleep(0.0005)  # polling the disk: this is the measurement, not synchronisation
    receiver.wait()
    if elapsed is None:
        sender.kill()  # it would wait for a receiver for the room's whole lifetime
    sender.stdout.read()
    sender.wait()
    if elapsed is None:
        raise RuntimeError(f"no byte reached the disk (receive exited {receiver.returncode})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument(
        "--against",
        metavar="NAME=VALUE",
        help="also time each mode with this environment variable set, alternating (an A/B)",
    )
    parser.add_argument(
        "--lan",
        action="store_true",
        help="two network namespaces on one segment, no server at all (needs root)",
    )
    args = parser.parse_args()
    as_installed()
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
    if not args.lan:
        env["P2PSHARE_LOCAL_ADDRESSES"] = "127.0.0.1"
    modes = {mode: (flags, env) for mode, flags in MODES.items()}
    if args.lan:
        modes = {}
        for mode, flags in MODES.items():
            modes[f"{mode}, public on"] = (flags, env)
            modes[f"{mode}, public off"] = (flags, {**env, "P2PSHARE_PUBLIC": "0"})
    if args.against:
        name, _, value = args.against.partition("=")
        for mode, (flags, mode_env) in list(modes.items()):
            modes[f"{mode}, {args.against}"] = (flags, {**mode_env, name: value})
    work = Path(tempfile.mkdtemp(prefix="p2pshare-fb-"))
    source = work / "data.bin"
    source.write_bytes(os.urandom(args.mib << 20))
    if args.lan:
        try:
            lan_runs(args.runs, modes, work, source)
        finally:
            shutil.rmtree(work)
        return
    server_proc = subprocess.Popen(
        [
            BIN / "p2pshare-signal",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--joins-per-ip-per-minute",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server_proc.stdout is not None
        server = server_proc.stdout.readline().split()[-1]
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for run in range(args.runs):
            for k, (mode, (flags, mode_env)) in enumerate(modes.items()):
                out = work / f"out-{k}-{run}"
                out.mkdir()
                times[mode].append(first_byte(server, source, out, mode_env, flags))
                shutil.rmtree(out)
        report(times, args.runs)
    finally:
        server_proc.terminate()
        server_proc.wait()
        shutil.rmtree(work)


def report(times: dict[str, list[float]], runs: int) -> None:
    for mode, samples in times.items():
        print(
            f"receive ({mode}) start to first byte on disk, {runs} runs: median "
            f"{statistics.median(samples):.3f} s "
            f"(min {min(samples):.3f}, max {max(samples):.3f})"
        )


def lan_runs(
    runs: int, modes: dict[str, tuple[list[str], dict[str, str]]], work: Path, source: Path
) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.natlab import one_lan

    with one_lan(work) as (_, host_a, host_b):
        hosts = (["ip", "netns", "exec", host_a], ["ip", "netns", "exec", host_b])
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for run in range(runs):
            for k, (mode, (flags, mode_env)) in enumerate(modes.items()):
                out = work / f"out-{k}-{run}"
                out.mkdir()
                times[mode].append(first_byte(None, source, out, mode_env, flags, hosts))
                shutil.rmtree(out)
        report(times, runs)


if __name__ == "__main__":
    main()
