"""Several p2pshare-signal instances sharing rooms through a real redis-server (issue 14)."""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from signal_server.redis_registry import INSTANCE_TIMEOUT_MS
from signal_server.server import RunningServer, ServerSettings, start_server
from tests.cli_helpers import ROOT, Peer, signal_process
from tests.redis_helpers import REDIS_SERVER, CuttableProxy, free_port, redis_server
from tests.signal_helpers import (
    FakeClock,
    expect_close,
    http_request,
    make_pair,
    open_client,
    recv_json,
    send_json,
)

# scripts/install-system-deps installs redis-server: its absence is a failure, not a skip.
assert REDIS_SERVER is not None, "redis-server is missing: run scripts/install-system-deps"

Instances = Callable[..., AbstractAsyncContextManager[list[RunningServer]]]


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def instances(redis_url: str, clock: FakeClock) -> Instances:
    """Start ``count`` instances on one Redis (with some settings changed)."""

    @asynccontextmanager
    async def start(count: int = 2, **changes: Any) -> AsyncIterator[list[RunningServer]]:
        settings = ServerSettings(
            **{"host": "127.0.0.1", "port": 0, "redis_url": redis_url, **changes}
        )
        async with AsyncExitStack() as stack:
            yield [
                await stack.enter_async_context(start_server(settings, clock)) for _ in range(count)
            ]

    return start


async def allocate(url: str, source_ip: str = "127.0.0.1") -> tuple[Any, str]:
    ws = await open_client(url, source_ip=source_ip)
    await send_json(ws, {"type": "allocate"})
    reply = await recv_json(ws)
    assert reply["type"] == "allocated", reply
    return ws, reply["nameplate"]


async def test_peers_on_two_instances_pair_and_relay(instances: Instances) -> None:
    """A sender on one instance and a receiver on another pair; bodies flow both ways, and
    what the sender posted before pairing arrives first, in order."""
    async with instances(2) as (one, two):
        a, nameplate = await allocate(one.url)
        for i in range(3):
            await send_json(a, {"type": "send", "body": f"early {i}"})
        b = await open_client(two.url)
        await send_json(b, {"type": "claim", "nameplate": nameplate})
        seen = [await recv_json(b) for _ in range(5)]
        assert seen[:2] == [{"type": "claimed", "nameplate": nameplate}, {"type": "paired"}]
        assert [m["body"] for m in seen[2:]] == ["early 0", "early 1", "early 2"]
        assert await recv_json(a) == {"type": "paired"}
        await send_json(b, {"type": "send", "body": "answer"})
        assert await recv_json(a) == {"type": "message", "body": "answer"}
        await send_json(a, {"type": "send", "body": "more"})
        assert await recv_json(b) == {"type": "message", "body": "more"}


async def test_nameplates_are_cluster_wide_and_smallest_first(instances: Instances) -> None:
    """Allocation counts every instance's rooms, and a freed number is handed out again."""
    async with instances(2) as (one, two):
        first, n1 = await allocate(one.url)
        _second, n2 = await allocate(two.url)
        assert (n1, n2) == ("1", "2")
        await first.close()
        await one.signal.wait_for_connections(0)
        _third, n3 = await allocate(two.url)
        assert n3 == "1"


async def test_third_peer_is_crowded_across_instances(instances: Instances) -> None:
    """Two peers on two instances fill the room: a third, on either, gets crowded."""
    async with instances(2) as (one, two):
        a, b, nameplate = await make_pair_across(one.url, two.url)
        c = await open_client(one.url)
        await send_json(c, {"type": "claim", "nameplate": nameplate})
        code, _, seen = await expect_close(c)
        assert code == 4002 and seen[0]["code"] == "crowded"
        await send_json(a, {"type": "send", "body": "still here"})
        assert await recv_json(b) == {"type": "message", "body": "still here"}


async def make_pair_across(url_a: str, url_b: str) -> tuple[Any, Any, str]:
    a, nameplate = await allocate(url_a)
    b = await open_client(url_b)
    await send_json(b, {"type": "claim", "nameplate": nameplate})
    assert (await recv_json(b))["type"] == "claimed"
    assert await recv_json(b) == {"type": "paired"}
    assert await recv_json(a) == {"type": "paired"}
    return a, b, nameplate


async def test_peer_leaving_is_told_across_instances(instances: Instances) -> None:
    """A peer that drops its connection on one instance: the other hears peer-left (4007)."""
    async with instances(2) as (one, two):
        a, b, _ = await make_pair_across(one.url, two.url)
        a.transport.abort()
        code, _, seen = await expect_close(b)
        assert code == 4007 and seen == [{"type": "peer-left"}]


async def test_join_limit_holds_across_instances(instances: Instances) -> None:
    """Joins per address per minute are counted over the whole cluster."""
    async with instances(2, joins_per_ip_per_minute=3) as (one, two):
        for url in (one.url, two.url, one.url):
            await allocate(url, source_ip="127.0.0.7")
        ws = await open_client(two.url, source_ip="127.0.0.7")
        await send_json(ws, {"type": "allocate"})
        code, _, seen = await expect_close(ws)
        assert code == 4004 and seen[0]["code"] == "rate-limited"


async def test_message_limit_holds_across_instances(instances: Instances) -> None:
    """The room's message quota counts both peers' messages, wherever they are."""
    async with instances(2, max_messages_per_room=3) as (one, two):
        a, b, _ = await make_pair_across(one.url, two.url)
        # Each waits for the previous one to arrive: the two instances' order is Redis's.
        for sender, receiver, body in ((a, b, "1"), (b, a, "2"), (a, b, "3")):
            await send_json(sender, {"type": "send", "body": body})
            assert (await recv_json(receiver))["body"] == body
        await send_json(b, {"type": "send", "body": "one too many"})
        code, _, seen = await expect_close(b)
        assert code == 4005 and seen[-1]["code"] == "room-limit"
        code, _, _ = await expect_close(a)
        assert code == 4007


async def test_room_limit_holds_across_instances(instances: Instances) -> None:
    """The cap on open rooms is the cluster's, not each instance's."""
    async with instances(2, max_rooms=2) as (one, two):
        await allocate(one.url)
        await allocate(two.url)
        ws = await open_client(one.url)
        await send_json(ws, {"type": "allocate"})
        code, _, seen = await expect_close(ws)
        assert code == 1013 and seen[0]["code"] == "server-full"


@asynccontextmanager
async def instance_process(redis_url: str) -> AsyncIterator[tuple[str, subprocess.Popen[str]]]:
    with signal_process("--port", "0", "--redis", redis_url) as (url, proc):
        yield url, proc


async def test_killed_instance_peer_is_told_and_others_still_pair(
    redis_url: str, instances: Instances
) -> None:
    """An instance killed mid-pairing: its peer on another instance is told (peer-left) within
    the heartbeat timeout, and a new pair through a live instance works."""
    async with instances(1) as (live,), instance_process(redis_url) as (doomed_url, doomed):
        _a, b, nameplate = await make_pair_across(doomed_url, live.url)
        os.kill(doomed.pid, signals.SIGKILL)
        doomed.wait(10)
        code, _, seen = await expect_close(b)
        assert code == 4007 and seen == [{"type": "peer-left"}]
        c = await open_client(live.url)
        await send_json(c, {"type": "claim", "nameplate": nameplate})
        assert (await expect_close(c))[0] == 4001
        await make_pair(live.url)
    assert INSTANCE_TIMEOUT_MS <= 10_000


def test_redis_unreachable_at_start_is_one_line_and_exit_1() -> None:
    """No Redis at start: one line naming it, exit 1, nothing listening."""
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "signal_server", "--port", "0"),
            *("--redis", f"redis://127.0.0.1:{free_port()}/0"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0]


async def test_redis_lost_then_back(clock: FakeClock) -> None:
    """Redis stopped: new rooms are refused (1013) and /healthz says 503. Redis back, empty:
    a sender whose code Redis forgot is told at once (instead of waiting for good), and the
    instance pairs again."""
    port = free_port()
    settings = ServerSettings(host="127.0.0.1", port=0, redis_url=f"redis://127.0.0.1:{port}/0")
    with redis_server(port):
        running_cm = start_server(settings, clock)
        running = await running_cm.__aenter__()
        waiting, _ = await allocate(running.url)
    try:
        cluster = running.signal.cluster
        assert cluster is not None
        await cluster.wait_healthy(False)
        health = await http_request(running.url, "/healthz")
        assert health.status == 503
        ws = await open_client(running.url)
        await send_json(ws, {"type": "allocate"})
        code, _, seen = await expect_close(ws)
        assert code == 1013 and seen[0]["code"] == "server-full"
        with redis_server(port):
            await cluster.wait_healthy(True)
            code, _, seen = await expect_close(waiting)
            assert code == 1013 and "database restarted" in seen[0]["message"]
            assert (await http_request(running.url, "/healthz")).status == 200
            await make_pair(running.url)
    finally:
        await running_cm.__aexit__(None, None, None)


async def test_leave_while_redis_is_away_reaches_the_peer_later(
    redis_url: str, clock: FakeClock
) -> None:
    """A peer leaves while its instance has lost Redis (the others have not): the leave is
    retried, and the other peer hears peer-left once the instance reaches Redis again."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with CuttableProxy(port) as proxy, AsyncExitStack() as stack:
        one, two = [
            await stack.enter_async_context(
                start_server(ServerSettings(host="127.0.0.1", port=0, redis_url=url), clock)
            )
            for url in (proxy.url, redis_url)
        ]
        a, b, _ = await make_pair_across(one.url, two.url)
        cluster = one.signal.cluster
        assert cluster is not None
        proxy.sever()
        await cluster.wait_healthy(False)
        a.transport.abort()
        await one.signal.wait_for_connections(0)
        proxy.mend()
        code, _, seen = await expect_close(b)
        assert code == 4007 and seen == [{"type": "peer-left"}]


def test_real_transfer_across_two_instances(tmp_path: Path, redis_url: str) -> None:
    """p2pshare send through one instance, p2pshare receive through another: the file
    arrives intact."""
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(256 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "signal_server", "--port", "0", "--redis", redis_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            urls.append(proc.stdout.readline().split()[-1])
        sender = Peer(["send", str(source), "--server", urls[0], "--json"], cwd=tmp_path)
        code = sender.event("code")["code"]
        receiver = Peer(
            ["receive", code, "--server", urls[1], "--json", "--yes", "-o", str(out)], cwd=out
        )
        assert receiver.wait() == 0, receiver.stderr
        assert sender.wait() == 0, sender.stderr
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    assert (out / source.name).read_bytes() == source.read_bytes()
