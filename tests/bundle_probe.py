"""Small clients the bundle lab runs inside a home's namespace (they print one JSON line).

``python -m tests.bundle_probe conns URL N [--forge ADDRESSES]``
    Opens N rendezvous websockets one after the other (optionally with a forged
    ``X-Forwarded-For``) and prints what each got: ``"open"`` or the HTTP status of the
    refusal. Keeps them open until its standard input closes.

``python -m tests.bundle_probe cert HOST PORT``
    Prints the SHA-256 of the certificate a TLS server presents (not verified: the point is
    which one it is).

``python -m tests.bundle_probe turn URL HOST:PORT...``
    Takes the TURN credentials the rendezvous server hands out, allocates on its
    ``turns:`` (TLS) server, then asks the relay to reach each HOST:PORT (a UDP echo): prints
    ``{"relayed": ADDRESS, "targets": {"HOST:PORT": "echo" | "refused 403 ..." | ...}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

from aioice import stun, turn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from signal_server.protocol import SUBPROTOCOL

ECHO_WAIT_S = 3.0


async def welcome(url: str, forge: str | None = None) -> tuple[ClientConnection, dict[str, Any]]:
    headers = {"X-Forwarded-For": forge} if forge else {}
    ws = await connect(
        url,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        additional_headers=headers,
        compression=None,
        open_timeout=10,
    )
    frame = await ws.recv()
    assert isinstance(frame, str)
    message: dict[str, Any] = json.loads(frame)
    return ws, message


async def conns(url: str, count: int, forge: str | None) -> None:
    held: list[ClientConnection] = []
    results: list[str | int] = []
    for _ in range(count):
        try:
            ws, message = await welcome(url, forge)
        except InvalidStatus as exc:
            results.append(exc.response.status_code)
            continue
        assert message["type"] == "welcome"
        held.append(ws)
        results.append("open")
    print(json.dumps(results), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in held:
        await ws.close()


class _Echoes(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def probe_turn(url: str, targets: list[str]) -> None:
    ws, message = await welcome(url)
    await ws.close()
    server = next(s for s in message["ice_servers"] if s.get("username"))
    tls_url = next(u for u in server["urls"] if u.startswith("turns:"))
    hostport = urlsplit(tls_url.replace("turns:", "turns://", 1).split("?")[0])
    assert hostport.hostname is not None and hostport.port is not None
    server_addr = (hostport.hostname, hostport.port)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: turn.TurnClientTcpProtocol(
            server_addr,
            username=server["username"],
            password=server["credential"],
            lifetime=600,
            channel_refresh_time=300,
        ),
        host=server_addr[0],
        port=server_addr[1],
        ssl=ssl.create_default_context(),  # the lab CA, through SSL_CERT_FILE
    )
    relayed = await client.connect()
    echoes = _Echoes()
    client.receiver = echoes
    outcome: dict[str, str] = {}
    for target in targets:
        host, port = target.rsplit(":", 1)
        addr = (host.strip("[]"), int(port))
        try:
            await client.send_data(b"ping", addr)
        except stun.TransactionFailed as exc:
            code, reason = exc.response.attributes["ERROR-CODE"]
            outcome[target] = f"refused {code} {reason}"
            continue
        try:
            data, source = await asyncio.wait_for(echoes.received.get(), ECHO_WAIT_S)
        except TimeoutError:
            outcome[target] = "no echo"
            continue
        outcome[target] = "echo" if data == b"echo:ping" and source == addr else f"odd {data!r}"
    print(json.dumps({"relayed": f"{relayed[0]}:{relayed[1]}", "targets": outcome}), flush=True)
    await client.delete()


def presented_cert(host: str, port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    print(hashlib.sha256(der).hexdigest(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bundle_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("conns")
    c.add_argument("url")
    c.add_argument("count", type=int)
    c.add_argument("--forge")
    k = sub.add_parser("cert")
    k.add_argument("host")
    k.add_argument("port", type=int)
    t = sub.add_parser("turn")
    t.add_argument("url")
    t.add_argument("targets", nargs="+")
    args = parser.parse_args()
    if args.command == "conns":
        asyncio.run(conns(args.url, args.count, args.forge))
    elif args.command == "cert":
        presented_cert(args.host, args.port)
    else:
        asyncio.run(probe_turn(args.url, args.targets))


if __name__ == "__main__":
    main()
