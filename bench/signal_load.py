"""Load test of p2pshare-signal: N concurrent pairs allocate, claim and relay on loopback.

Runs the real ``p2pshare-signal`` in a subprocess (limits lifted for one source address) and
drives it from this process. Reports pairs per second, connect and pairing latency percentiles,
and the server's peak RSS (VmHWM). Usage::

    python bench/signal_load.py --pairs 1000 --messages 3 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from signal_server import eventloop

SUBPROTOCOL = Subprotocol("p2pshare.v1")


@dataclass
class Sample:
    pairs: int
    connect_s: list[float] = field(default_factory=list)
    pairing_s: list[float] = field(default_factory=list)
    relay_done_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    pairing_started: float = 0.0


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame = await ws.recv()
    obj: dict[str, Any] = json.loads(frame)
    return obj


async def _open(url: str) -> ClientConnection:
    ws = await connect(url, subprotocols=[SUBPROTOCOL], compression=None, open_timeout=60)
    assert (await _recv(ws))["type"] == "welcome"
    return ws


async def one_pair(
    url: str, messages: int, sample: Sample, index: int, rate: float, gate: asyncio.Semaphore
) -> None:
    try:
        async with gate:  # bounds simultaneous TCP+websocket handshakes, like a real client mix
            t0 = time.perf_counter()
            a = await _open(url)
            b = await _open(url)
            sample.connect_s.append(time.perf_counter() - t0)
        _count_connected(sample)
        # Every socket of every pair is open before any pairing starts: the server holds
        # 2 x pairs connections while it pairs.
        await sample.all_connected.wait()
        if rate:
            start_at = sample.pairing_started + index / rate
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        t1 = time.perf_counter()
        await a.send('{"type":"allocate"}')
        nameplate = (await _recv(a))["nameplate"]
        await b.send(json.dumps({"type": "claim", "nameplate": nameplate}))
        assert (await _recv(b))["type"] == "claimed"
        assert (await _recv(b))["type"] == "paired"
        assert (await _recv(a))["type"] == "paired"
        sample.pairing_s.append(time.perf_counter() - t1)
        for i in range(messages):
            await a.send(json.dumps({"type": "send", "body": f"sealed-{i}" * 20}))
            assert (await _recv(b))["type"] == "message"
            await b.send(json.dumps({"type": "send", "body": f"reply-{i}" * 20}))
            assert (await _recv(a))["type"] == "message"
        sample.relay_done_s.append(time.perf_counter() - t1)
        await a.send('{"type":"bye"}')
        await a.wait_closed()
        await b.wait_closed()
    except Exception as exc:
        sample.failures.append(f"{type(exc).__name__}: {exc}")
        sample.connect_s.append(float("nan"))
        _count_connected(sample)


def _count_connected(sample: Sample) -> None:
    if len(sample.connect_s) >= sample.pairs and not sample.all_connected.is_set():
        sample.pairing_started = time.perf_counter()
        sample.all_connected.set()


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(values, 0.5) * 1e3, 1), "p99": round(_pct(values, 0.99) * 1e3, 1)}


async def run(pairs: int, messages: int, rate: float) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * pairs + 256)), hard))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signal_server",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--max-conns-per-ip",
            "0",
            "--joins-per-ip-per-minute",
            "0",
            "--max-rooms",
            str(pairs * 2),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        base_rss = _peak_rss_mib(server.pid)
        sample = Sample(pairs)
        gate = asyncio.Semaphore(100)
        t0 = time.perf_counter()
        # Pairing starts once everyone is connected; with a rate, pair i starts i/rate later.
        tasks = [
            asyncio.create_task(one_pair(url, messages, sample, i, rate, gate))
            for i in range(pairs)
        ]
        await sample.all_connected.wait()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - sample.pairing_started
        connect_elapsed = sample.pairing_started - t0
        peak = _peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    return {
        "pairs": pairs,
        "sockets_held": 2 * pairs,
        "messages_each_way": messages,
        "arrival": f"{rate:g} pairs/s" if rate else "burst (all at once)",
        "succeeded": pairs - len(sample.failures),
        "failures": sample.failures[:5],
        "connect_phase_s": round(connect_elapsed, 3),
        "pairing_phase_s": round(elapsed, 3),
        "pairs_per_s": round(pairs / elapsed, 1),
        "connect_ms": _ms(sample.connect_s),
        "pairing_ms": _ms(sample.pairing_s),
        "pair_and_relay_ms": _ms(sample.relay_done_s),
        "server_rss_mib": {"idle": round(base_rss, 1), "peak": round(peak, 1)},
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3, help="messages each way per pair")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pairs starting per second once all are connected (0: all at once)",
    )
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = eventloop.run(run(args.pairs, args.messages, args.rate))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if result["succeeded"] == args.pairs else 1)


if __name__ == "__main__":
    main()
