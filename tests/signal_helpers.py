"""Small helpers for talking to a real p2pshare-signal from tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from signal_server.protocol import SUBPROTOCOL


class FakeClock:
    """A clock the test moves by hand; the server reads it instead of time.monotonic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def open_client(
    url: str,
    *,
    source_ip: str = "127.0.0.1",
    subprotocols: Sequence[str] | None = (SUBPROTOCOL,),
) -> ClientConnection:
    """Connect and swallow the welcome message (when the server sends one)."""
    ws = await connect(
        url,
        subprotocols=[Subprotocol(s) for s in subprotocols] if subprotocols else None,
        local_addr=(source_ip, 0),
        compression=None,
        open_timeout=5,
    )
    if ws.subprotocol == SUBPROTOCOL:
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome"
    return ws


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    frame = await ws.recv()
    assert isinstance(frame, str)
    obj = json.loads(frame)
    assert isinstance(obj, dict)
    return obj


async def send_json(ws: ClientConnection, obj: dict[str, Any]) -> None:
    await ws.send(json.dumps(obj))


async def expect_close(ws: ClientConnection) -> tuple[int | None, str | None, list[dict[str, Any]]]:
    """Read until the server closes; return the close code, reason and the messages seen."""
    seen: list[dict[str, Any]] = []
    try:
        while True:
            seen.append(await recv_json(ws))
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, seen


async def make_pair(
    url: str, source_ip: str = "127.0.0.1"
) -> tuple[ClientConnection, ClientConnection, str]:
    """Allocate a nameplate with one client, claim it with another; both see ``paired``."""
    a = await open_client(url, source_ip=source_ip)
    await send_json(a, {"type": "allocate"})
    allocated = await recv_json(a)
    assert allocated["type"] == "allocated"
    nameplate = allocated["nameplate"]
    b = await open_client(url, source_ip=source_ip)
    await send_json(b, {"type": "claim", "nameplate": nameplate})
    assert await recv_json(b) == {"type": "claimed", "nameplate": nameplate}
    assert await recv_json(b) == {"type": "paired"}
    assert await recv_json(a) == {"type": "paired"}
    return a, b, nameplate


async def assert_server_pairs(url: str) -> None:
    """A fresh couple (from an address no test uses) can still pair and relay both ways."""
    a, b, _ = await make_pair(url, source_ip="127.0.0.99")
    await send_json(a, {"type": "send", "body": "ping"})
    assert await recv_json(b) == {"type": "message", "body": "ping"}
    await send_json(b, {"type": "send", "body": "pong"})
    assert await recv_json(a) == {"type": "message", "body": "pong"}
    await a.close()
    await b.close()


class HttpReply(NamedTuple):
    status: int
    headers: dict[str, str]
    """Header names lowercased; the last value wins."""
    body: bytes


async def http_request(url: str, target: str, *, method: str = "GET", extra: str = "") -> HttpReply:
    """One raw HTTP/1.1 request to the server behind ``url`` (ws://HOST:PORT), read to EOF."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=15)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpReply(int(status_line.split()[1]), headers, body)
