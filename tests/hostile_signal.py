"""A hostile or broken rendezvous server in many modes, for tests of the real CLI against it.

Run as ``python -m tests.hostile_signal MODE``; prints ``listening on URL`` like the real one.
Every mode misbehaves at one step of docs/protocol.md part 1 and otherwise plays along;
the ``reconnect-*`` modes answer a reconnect's claim and then send garbage where the peer's
hello should come. Misbehaviour in a reconnect's room after an honest pairing (replays,
tampering, a fake peer) is ``python -m tests.tampering_signal reconnect:MODE``
(tests/test_reconnect_hostile.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from signal_server import eventloop
from signal_server.wire import SUBPROTOCOL

WELCOME: dict[str, Any] = {"type": "welcome", "version": 1, "ice_servers": []}


def _welcome(ice: Any) -> dict[str, Any]:
    return {**WELCOME, "ice_servers": ice}


# Misbehaviour in the welcome: mode -> the welcome sent.
BAD_WELCOMES: dict[str, dict[str, Any]] = {
    "ice-urls-int": _welcome([{"urls": 5}]),
    "ice-urls-list-of-int": _welcome([{"urls": [5, None]}]),
    "ice-not-a-list": _welcome("stun:x"),
    "ice-entry-not-a-dict": _welcome(["stun:stun.example.org"]),
    "ice-url-http": _welcome([{"urls": "http://stun.example.org"}]),
    "ice-url-port-huge": _welcome([{"urls": "stun:stun.example.org:99999999"}]),
    "ice-url-unicode-host": _welcome([{"urls": "stun:st\u00fcn.example.org"}]),
    "ice-username-int": _welcome([{"urls": "turn:t.example.org", "username": 5}]),
    "ice-credential-dict": _welcome(
        [{"urls": "turn:t.example.org", "username": "u", "credential": {}}]
    ),
    "ice-too-many": _welcome([{"urls": "stun:s.example.org"}] * 1000),
    "welcome-wrong-type": {"type": "allocated", "nameplate": "1"},
}

# Misbehaviour in the answer to allocate (the sender): mode -> the answer.
BAD_ALLOCATIONS: dict[str, str] = {
    "nameplate-superscript": json.dumps({"type": "allocated", "nameplate": "\u00b2"}),
    "nameplate-arabic-indic": json.dumps({"type": "allocated", "nameplate": "\u0663"}),
    "nameplate-huge": json.dumps({"type": "allocated", "nameplate": "1" * 50_000}),
    "nameplate-int": json.dumps({"type": "allocated", "nameplate": 7}),
    "nameplate-leading-zero": json.dumps({"type": "allocated", "nameplate": "007"}),
    "deep-json": "[" * 200_000,
    "not-json": "\x00\x1b[2J garbage",
    "error-says-wrong-code": json.dumps(
        {"type": "error", "code": "wrong-code", "message": "x" * 10_000 + "\x1b[2J"}
    ),
}

# Misbehaviour in the answer to claim (the receiver): mode -> the frames sent.
BAD_CLAIMS: dict[str, list[str]] = {
    "claimed-other-nameplate": [json.dumps({"type": "claimed", "nameplate": "999"})],
    "claim-deep-json": ["[" * 200_000],
    "claim-error-says-wrong-code": [
        json.dumps({"type": "error", "code": "wrong-code", "message": "guess"})
    ],
}

# Misbehaviour in a reconnect's room (a claim with create): mode -> the frame sent after
# claimed and paired, where the peer's sealed hello should come.
BAD_RECONNECT_ROOMS: dict[str, str | bytes] = {
    "reconnect-not-json": "\x00garbage",
    "reconnect-deep-json": "[" * 200_000,
    "reconnect-list": "[1, 2]",
    "reconnect-unknown-type": json.dumps({"type": "welcome"}),
    "reconnect-body-int": json.dumps({"type": "message", "body": 5}),
    "reconnect-body-not-base64": json.dumps({"type": "message", "body": "!!!"}),
    "reconnect-body-too-big": json.dumps({"type": "message", "body": "A" * 900_000}),
    "reconnect-error-wrong-code": json.dumps(
        {"type": "error", "code": "wrong-code", "message": "\x1b[2J guess"}
    ),
    "reconnect-error-crowded": json.dumps({"type": "error", "code": "crowded", "message": "x"}),
    "reconnect-peer-left": json.dumps({"type": "peer-left"}),
    "reconnect-binary": b"\xff\xfe",
    "reconnect-claimed-again": json.dumps({"type": "claimed", "nameplate": "1"}),
}

SILENT_MODES = {
    "silent-after-handshake",  # never sends the welcome
    "silent-after-allocate",  # never answers allocate (a slow server, not a lost peer)
    "silent-after-claimed",  # the receiver's room should pair at once; it never does
}
RAW_MODES = {"close-at-once", "reset-after-request", "http-503", "garbage-status-line"}
MODES = sorted(
    {*BAD_WELCOMES, *BAD_ALLOCATIONS, *BAD_CLAIMS, *BAD_RECONNECT_ROOMS, *SILENT_MODES, *RAW_MODES}
)


async def _hold(ws: ServerConnection) -> None:
    """Keep the connection open until the client goes away."""
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass


def ws_handler(mode: str) -> Callable[[ServerConnection], Awaitable[None]]:
    async def handler(ws: ServerConnection) -> None:
        if mode == "silent-after-handshake":
            return await _hold(ws)
        await ws.send(json.dumps(BAD_WELCOMES.get(mode, WELCOME)))
        if mode in BAD_WELCOMES:
            return await _hold(ws)
        try:
            request = json.loads(await ws.recv())
        except ConnectionClosed:
            return
        if request.get("type") == "allocate":
            if mode in BAD_ALLOCATIONS:
                await ws.send(BAD_ALLOCATIONS[mode])
        elif request.get("type") == "claim" and mode in BAD_RECONNECT_ROOMS:
            await ws.send(json.dumps({"type": "claimed", "nameplate": request["nameplate"]}))
            await ws.send(json.dumps({"type": "paired"}))
            await ws.send(BAD_RECONNECT_ROOMS[mode])
        elif request.get("type") == "claim":
            if mode == "silent-after-claimed":
                await ws.send(json.dumps({"type": "claimed", "nameplate": request["nameplate"]}))
            for frame in BAD_CLAIMS.get(mode, []):
                await ws.send(frame)
        await _hold(ws)

    return handler


async def raw_connection(mode: str, reader: asyncio.StreamReader, writer: Any) -> None:
    try:
        if mode == "close-at-once":
            return
        await reader.readuntil(b"\r\n\r\n")
        if mode == "reset-after-request":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "http-503":
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        elif mode == "garbage-status-line":
            writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(mode: str) -> None:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode}; one of {', '.join(MODES)}")
    if mode in RAW_MODES:
        server = await asyncio.start_server(lambda r, w: raw_connection(mode, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()
    async with serve(
        ws_handler(mode),
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        compression=None,
        max_size=None,
    ) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1]))
