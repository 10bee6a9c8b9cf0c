"""Load test of p2pshare-signal on loopback, in two modes.

``pairs`` (the default): N concurrent pairs allocate, claim and relay. Runs the real
``p2pshare-signal`` in a subprocess (limits lifted for one source address) and drives it from
this process. Reports pairs per second, connect and pairing latency percentiles, and the
server's peak RSS (VmHWM).

``flood``: a descriptor-exhaustion attack (issue 17 item 5). N connections from one address
send the start of an HTTP upgrade and never finish it, and reopen (after ``--reopen-delay``)
whenever the server closes them, for ``--duration`` seconds. Without ``--url`` the server is
started with its open-file limit lowered to ``--nofile`` (soft and hard); meanwhile this
process probes ``/healthz`` and pairs a couple every ``--probe-interval`` and reports how many
succeeded, their latency, and the server's peak descriptor count. With ``--url`` it only
floods (tests drive their own probes) and prints one JSON line when every connection has been
opened once, and the statistics when it ends. Usage::

    python bench/signal_load.py --pairs 1000 --messages 3 [--json out.json]
    python bench/signal_load.py --mode flood --connections 1100 --nofile 1024 --duration 30
    python bench/signal_load.py --pairs 1000 --instances 1,2,3   # over one shared Redis
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    urls: tuple[str, str],
    messages: int,
    sample: Sample,
    index: int,
    rate: float,
    gate: asyncio.Semaphore,
) -> None:
    try:
        async with gate:  # bounds simultaneous TCP+websocket handshakes, like a real client mix
            t0 = time.perf_counter()
            a = await _open(urls[0])
            b = await _open(urls[1])
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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    pairs: int,
    messages: int,
    rate: float,
    instances: int = 1,
    redis_url: str | None = None,
    redis_pid: int | None = None,
) -> dict[str, Any]:
    """``instances`` servers (on ``redis_url`` when given); pair i's sender uses instance
    i mod N and its receiver the next one, so with N > 1 every pair crosses instances."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * pairs + 256)), hard))
    cluster = ["--redis", redis_url] if redis_url else []
    servers = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "signal_server", "--port", "0"),
                *("--log-level", "warning", "--max-conns-per-ip", "0"),
                *("--joins-per-ip-per-minute", "0", "--max-rooms", str(pairs * 2), *cluster),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(instances)
    ]
    try:
        urls = []
        for server in servers:
            assert server.stdout is not None
            urls.append(server.stdout.readline().split()[-1])
        base_rss = max(_peak_rss_mib(server.pid) for server in servers)
        sample = Sample(pairs)
        gate = asyncio.Semaphore(100)
        t0 = time.perf_counter()
        # Pairing starts once everyone is connected; with a rate, pair i starts i/rate later.
        tasks = [
            asyncio.create_task(
                one_pair(
                    (urls[i % instances], urls[(i + 1) % instances]),
                    messages,
                    sample,
                    i,
                    rate,
                    gate,
                )
            )
            for i in range(pairs)
        ]
        await sample.all_connected.wait()
        cpu_before = [_cpu_s(server.pid) for server in servers]
        redis_before = _cpu_s(redis_pid) if redis_pid else 0.0
        own_before = _own_cpu_s()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - sample.pairing_started
        cpu = [
            _cpu_s(server.pid) - before for server, before in zip(servers, cpu_before, strict=True)
        ]
        redis_cpu = _cpu_s(redis_pid) - redis_before if redis_pid else None
        own_cpu = _own_cpu_s() - own_before
        connect_elapsed = sample.pairing_started - t0
        peak = max(_peak_rss_mib(server.pid) for server in servers)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
    return {
        "pairs": pairs,
        "instances": instances,
        "redis": bool(redis_url),
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
        "cpu_s_during_pairing": {
            "servers": [round(c, 2) for c in cpu],
            "redis": None if redis_cpu is None else round(redis_cpu, 2),
            "load_generator": round(own_cpu, 2),
        },
        "server_rss_mib": {"idle": round(base_rss, 1), "peak": round(peak, 1)},
        "cpus": os.cpu_count(),
    }


async def run_instances(
    pairs: int, messages: int, rate: float, counts: list[int], redis_url: str | None
) -> list[dict[str, Any]]:
    """The same load against 1, 2, ... instances sharing one Redis (started here unless
    ``redis_url`` is given), one after the other in one run."""
    from tests.redis_helpers import redis_server_process

    results = []
    with contextlib.ExitStack() as stack:
        pid = None
        if redis_url is None:
            redis_url, proc = stack.enter_context(redis_server_process())
            pid = proc.pid
        for count in counts:
            results.append(await run(pairs, messages, rate, count, redis_url, pid))
    return results


@dataclass
class Flood:
    """Holds ``connections`` half-open HTTP upgrades from ``source_ip``; bounded in time."""

    host: str
    port: int
    connections: int
    duration_s: float
    reopen_delay_s: float = 1.0
    source_ip: str = "127.0.0.1"
    opened: int = 0
    closed_by_server: int = 0
    failed_to_open: int = 0
    held: int = 0
    peak_held: int = 0
    all_tried: asyncio.Event = field(default_factory=asyncio.Event)
    _tried: int = 0

    async def run(self) -> None:
        """Flood until ``duration_s`` has passed (or the task is cancelled), then close all."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        try:
            await asyncio.sleep(self.duration_s)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        first = True
        while True:
            opened = await self._open_one()
            if first:
                first = False
                self._tried += 1
                if self._tried == self.connections:
                    self.all_tried.set()
            if opened is not None:
                await self._hold(*opened)
            await asyncio.sleep(self.reopen_delay_s)

    async def _open_one(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(
                self.host, self.port, local_addr=(self.source_ip, 0)
            )
        except OSError:
            self.failed_to_open += 1
            return None

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.held += 1
        self.peak_held = max(self.peak_held, self.held)
        try:
            # The start of an upgrade, never the blank line that ends it.
            writer.write(f"GET / HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n".encode())
            await reader.read()  # until the server closes it
        except OSError:
            pass
        finally:
            self.closed_by_server += 1
            self.held -= 1
            writer.transport.abort()

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "opened": self.opened,
            "closed_by_server": self.closed_by_server,
            "failed_to_open": self.failed_to_open,
            "peak_held_by_client": self.peak_held,
        }


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _healthz(host: str, port: int) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await reader.read()
    writer.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"healthz answered {data[:40]!r}")
    return time.perf_counter() - t0


async def _pair(url: str) -> float:
    t0 = time.perf_counter()
    a = await _open(url)
    await a.send('{"type":"allocate"}')
    nameplate = (await _recv(a))["nameplate"]
    b = await _open(url)
    await b.send(json.dumps({"type": "claim", "nameplate": nameplate}))
    assert (await _recv(b))["type"] == "claimed"
    assert (await _recv(b))["type"] == "paired"
    assert (await _recv(a))["type"] == "paired"
    await a.send('{"type":"bye"}')
    await a.wait_closed()
    await b.wait_closed()
    return time.perf_counter() - t0


async def _probe(what: Any, samples: list[float], failures: list[str]) -> None:
    try:
        samples.append(await asyncio.wait_for(what, 15))
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")


def _limited(nofile: int) -> Any:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return preexec


async def run_flood(
    url: str | None,
    connections: int,
    duration_s: float,
    nofile: int,
    probe_interval_s: float,
    reopen_delay_s: float,
    extra: list[str],
) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, connections + 256)), hard))
    server = None
    if url is None:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "signal_server", "--port", "0"),
                *("--log-level", "warning", "--joins-per-ip-per-minute", "0", *extra),
            ],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_limited(nofile),
        )
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    flood = Flood(host, int(port), connections, duration_s, reopen_delay_s)
    task = asyncio.create_task(flood.run())
    try:
        await flood.all_tried.wait()
        if server is None:
            print(json.dumps({"event": "flooding", **flood.stats()}), flush=True)
            await task
            return flood.stats()
        health: list[float] = []
        pairs: list[float] = []
        failures: list[str] = []
        peak_fds = 0
        while not task.done():
            peak_fds = max(peak_fds, _fd_count(server.pid))
            await asyncio.gather(
                _probe(_healthz(host, int(port)), health, failures),
                _probe(_pair(url), pairs, failures),
            )
            await asyncio.sleep(probe_interval_s)
        return {
            "mode": "flood",
            "server_nofile": nofile,
            "server_args": extra,
            "duration_s": duration_s,
            "flood": flood.stats(),
            "server_peak_fds": peak_fds,
            "healthz": {"ok": len(health), **_ms(health)},
            "pairs": {"ok": len(pairs), **_ms(pairs)},
            "failures": failures[:5],
            "failed": len(failures),
        }
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if server is not None:
            server.terminate()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["pairs", "flood"], default="pairs")
    parser.add_argument(
        "--instances",
        default="",
        help="pairs mode over Redis: comma-separated instance counts to run one after the "
        "other, e.g. 1,2,3 (every pair's two peers on different instances when N > 1)",
    )
    parser.add_argument("--redis", help="Redis URL for --instances (default: start one)")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=3, help="messages each way per pair")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pairs starting per second once all are connected (0: all at once)",
    )
    parser.add_argument("--json", help="also write the result to this file")
    flood = parser.add_argument_group("flood mode")
    flood.add_argument("--url", help="flood this server instead of starting one")
    flood.add_argument("--connections", type=int, default=1100)
    flood.add_argument("--duration", type=float, default=30.0, help="seconds (it always ends)")
    flood.add_argument("--nofile", type=int, default=1024, help="the started server's limit")
    flood.add_argument("--probe-interval", type=float, default=0.5)
    flood.add_argument("--reopen-delay", type=float, default=1.0)
    flood.add_argument(
        "--server-arg", action="append", default=[], help="passed to the started server"
    )
    args = parser.parse_args()
    if args.mode == "flood":
        result = eventloop.run(
            run_flood(
                args.url,
                args.connections,
                args.duration,
                args.nofile,
                args.probe_interval,
                args.reopen_delay,
                args.server_arg,
            )
        )
        ok = args.url is not None or not result["failed"]
    elif args.instances:
        counts = [int(n) for n in args.instances.split(",")]
        results = eventloop.run(
            run_instances(args.pairs, args.messages, args.rate, counts, args.redis)
        )
        result = {"mode": "pairs over Redis", "runs": results}
        ok = all(r["succeeded"] == args.pairs for r in results)
    else:
        result = eventloop.run(run(args.pairs, args.messages, args.rate))
        ok = result["succeeded"] == args.pairs
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
