"""The websockets side of the rendezvous server: decode frames, call the registry, send.

All pairing decisions live in :mod:`signal_server.rooms`; this module maps frames to registry
calls and registry actions to frames. Each connection has one writer task fed by a queue, so
the order in which the registry emits messages is the order in which every client sees them,
whichever handler produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from signal_server import ice, protocol
from signal_server.admission import Admission, Refused, connection_capacity
from signal_server.client_address import TrustedProxies, normalize
from signal_server.protocol import SignalError
from signal_server.redis_registry import LOST_ROOM, RedisRooms, SendText
from signal_server.rooms import Action, CloseConn, RoomRegistry, SendTo, SlidingWindowLimiter
from signal_server.static import StaticSite, add_security_headers, text_response

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of the server, with the defaults a public deployment should start from."""

    host: str = "127.0.0.1"
    port: int = 4750
    max_message_bytes: int = 64 * 1024
    max_messages_per_room: int = 64
    max_rooms: int = 10_000
    max_conns_per_ip: int = 64
    joins_per_ip_per_minute: int = 60
    room_ttl_s: float = 600.0
    idle_timeout_s: float = 120.0
    max_receivers_per_room: int = 16
    """Many mode: receivers in one room at once."""
    many_room_ttl_s: float = 3600.0
    """Many mode: how long a room may live, however busy."""
    max_unproven_per_address: int = 4
    """Many mode: receivers one address may hold in a room before proving the code."""
    handshake_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    sweep_interval_s: float = 1.0
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    static_dir: str | None = None
    max_connections: int = 0
    """Sockets open at once; 0: as many as the descriptor limit allows, less a reserve."""
    pressure_handshake_timeout_s: float = 2.0
    redis_url: str | None = None
    """Share rooms with other instances through this Redis (None: rooms in this process)."""
    trusted_proxies: tuple[str, ...] = ()
    """Networks of reverse proxies whose ``X-Forwarded-For`` names the client (see
    :mod:`signal_server.client_address`); from anyone else the header is ignored."""
    """The handshake window while half-open connections fill more than half their share."""
    """Folder of the browser page served at ``/``; None means the one in the package."""


@dataclass(frozen=True)
class _CloseRequest:
    code: int
    reason: str


class _Client:
    """One websocket connection and the writer task that owns its outgoing side."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[str | _CloseRequest] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                item = await self.outbox.get()
                if isinstance(item, _CloseRequest):
                    await self.ws.close(item.code, item.reason)
                    return
                await self.ws.send(item)


class SignalServer:
    """Pairs peers by nameplate and relays their messages. Use :func:`start_server` to run it."""

    def __init__(self, settings: ServerSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = RoomRegistry(
            max_rooms=settings.max_rooms,
            max_messages_per_room=settings.max_messages_per_room,
            room_ttl_s=settings.room_ttl_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_receivers_per_room=settings.max_receivers_per_room,
            many_room_ttl_s=settings.many_room_ttl_s,
            max_unproven_per_address=settings.max_unproven_per_address,
        )
        self.joins = SlidingWindowLimiter(settings.joins_per_ip_per_minute, 60.0)
        self._clients: dict[int, _Client] = {}
        self.admission: Admission[ServerConnection] = Admission(
            capacity=_capacity(settings.max_connections),
            per_address=settings.max_conns_per_ip,
            handshake_timeout_s=settings.handshake_timeout_s,
            pressure_timeout_s=min(
                settings.pressure_handshake_timeout_s, settings.handshake_timeout_s
            ),
        )
        self.proxies = TrustedProxies.parse(settings.trusted_proxies)
        self._addresses: dict[ServerConnection, str] = {}
        """The client's address of each open connection: the peer's, or the one a trusted
        proxy named once the request arrived. Every per-address limit and log line uses it."""
        self._ids = itertools.count(1)
        self.stats: Counter[str] = Counter()
        self._handler_exited = asyncio.Condition()
        self.cluster: RedisRooms | None = None
        """Set by :func:`start_server` when rooms live in Redis."""
        self.site = (
            StaticSite() if settings.static_dir is None else StaticSite(Path(settings.static_dir))
        )

    # -- websockets callbacks ---------------------------------------------------------------

    def select_subprotocol(self, connection: ServerConnection, offered: Any) -> Subprotocol | None:
        # Accept clients of other versions too, so that the handler can tell them why it closes
        # rather than leaving them with a bare HTTP 400.
        return Subprotocol(protocol.SUBPROTOCOL) if protocol.SUBPROTOCOL in offered else None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # The request is complete: whatever comes next is quick (an answer or the upgrade),
        # so the connection is no longer one of the half-open a flood is made of.
        self.admission.upgraded(connection)
        refusal = self._identify_client(connection, request)
        if refusal is not None:
            return refusal
        # A websocket upgrade on any path is the rendezvous protocol; a plain GET is the page.
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        if request.path.split("?", 1)[0] == "/healthz":
            if self.cluster is not None and not self.cluster.healthy:
                return text_response(http.HTTPStatus.SERVICE_UNAVAILABLE, "redis unreachable\n")
            return text_response(http.HTTPStatus.OK, "ok\n")
        return self.site.response(request.method, request.path)

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        # Also websockets' own refusals (400, 426, ...) carry the headers the page relies on.
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            add_security_headers(response)

    async def handler(self, ws: ServerConnection) -> None:
        conn = next(self._ids)
        ip = self.client_address(ws)
        client = _Client(ws)
        self._clients[conn] = client
        self.stats["connections"] += 1
        try:
            await self._serve(conn, ip, client)
        except ConnectionClosed:
            pass
        finally:
            if self.cluster is None:
                self._execute(self.registry.leave(conn, self.clock()))
            else:
                with contextlib.suppress(SignalError):
                    await self.cluster.leave(conn)
            # Let queued frames (an error, a close reason) reach the client before websockets
            # closes the connection for us when this handler returns.
            client.outbox.put_nowait(_CloseRequest(protocol.CLOSE_NORMAL, ""))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.writer, self.settings.handshake_timeout_s)
            client.writer.cancel()
            del self._clients[conn]
            async with self._handler_exited:
                self._handler_exited.notify_all()

    async def wait_for_connections(self, count: int) -> None:
        """Return once at most ``count`` connections are open (their rooms already dropped)."""
        async with self._handler_exited:
            await self._handler_exited.wait_for(lambda: len(self._clients) <= count)

    async def _serve(self, conn: int, ip: str, client: _Client) -> None:
        settings = self.settings
        if client.ws.subprotocol != protocol.SUBPROTOCOL:
            self._refuse(
                conn,
                protocol.UNSUPPORTED_VERSION,
                "unsupported protocol version: this "
                f"server speaks {protocol.SUBPROTOCOL}; upgrade p2pshare",
            )
            return
        servers = ice.ice_servers(
            settings.stun_urls,
            settings.turn_urls,
            settings.turn_secret,
            settings.turn_ttl_s,
            time.time(),
            f"{ice.TURN_LABEL}-{secrets.token_hex(4)}",
        )
        client.outbox.put_nowait(protocol.encode(protocol.welcome_msg(servers)))
        while True:
            joined = (
                self.registry.room_of(conn) is not None
                if self.cluster is None
                else self.cluster.joined(conn)
            )
            try:
                # Until it joins a room a client has handshake_timeout_s to say what it wants;
                # after that the registry's TTL and idle timeout govern it.
                async with asyncio.timeout(None if joined else settings.handshake_timeout_s):
                    frame = await client.ws.recv()
            except TimeoutError:
                self._refuse(conn, protocol.TIMEOUT, "timeout: no request received in time")
                return
            if isinstance(frame, bytes):
                self._refuse(conn, protocol.BINARY_FRAME, "binary frames are not accepted")
                return
            try:
                message = protocol.parse_client_message(frame)
                if self.cluster is None:
                    self._execute(self._dispatch(conn, ip, message))
                else:
                    await self._dispatch_cluster(self.cluster, conn, ip, message)
            except SignalError as exc:
                self.stats[f"error:{exc.kind.name}"] += 1
                self._refuse(conn, exc.kind, exc.message)
                return

    def _dispatch(self, conn: int, ip: str, message: protocol.ClientMessage) -> list[Action]:
        now = self.clock()
        if isinstance(message, protocol.Send):
            self.stats["relayed"] += 1
            return self.registry.relay(conn, message.body, now, message.to)
        if isinstance(message, protocol.Bye):
            return self.registry.bye(conn, now)
        if isinstance(message, protocol.Lock):
            return self.registry.lock(conn, now)
        if isinstance(message, protocol.Kick):
            return self.registry.kick(conn, message.side, now)
        if not self.joins.allow(ip, now):
            raise SignalError(
                protocol.RATE_LIMITED, "too many codes used from your address; wait a minute"
            )
        if isinstance(message, protocol.Allocate):
            actions = self.registry.allocate(conn, now, message.many)
        else:
            actions = self.registry.claim(
                conn, message.nameplate, message.create, now, message.many, address=ip
            )
        self.stats["joins"] += 1
        logger.debug("join accepted (rooms open: %d)", len(self.registry))
        return actions

    async def _dispatch_cluster(
        self, cluster: RedisRooms, conn: int, ip: str, message: protocol.ClientMessage
    ) -> None:
        """The same requests against the cluster's rooms; what clients receive arrives
        through this instance's inbox (see :mod:`signal_server.redis_registry`).

        Many mode is refused here: the cluster's rooms pair exactly two peers."""
        if (
            (isinstance(message, protocol.Allocate | protocol.Claim) and message.many)
            or isinstance(message, protocol.Lock | protocol.Kick)
            or (isinstance(message, protocol.Send) and message.to is not None)
        ):
            raise SignalError(
                protocol.UNSUPPORTED_MODE,
                "no many mode here: rooms are shared through Redis (send without --many)",
            )
        if isinstance(message, protocol.Send):
            self.stats["relayed"] += 1
            await cluster.relay(conn, message.body)
        elif isinstance(message, protocol.Bye):
            self._execute([CloseConn(conn, protocol.CLOSE_NORMAL, "bye")])
            await cluster.leave(conn, bye=True)
        elif isinstance(message, protocol.Allocate):
            await cluster.allocate(conn, ip)
            self.stats["joins"] += 1
        else:
            await cluster.claim(conn, ip, message.nameplate, message.create)
            self.stats["joins"] += 1

    def _refuse(self, conn: int, kind: protocol.ErrorKind, message: str) -> None:
        self._execute(
            [
                SendTo(conn, protocol.error_msg(kind, message)),
                CloseConn(conn, kind.close_code, message),
            ]
        )

    def _execute(self, actions: Sequence[Action | SendText]) -> None:
        for action in actions:
            client = self._clients.get(action.conn)
            if client is None:
                continue
            if isinstance(action, SendTo):
                client.outbox.put_nowait(protocol.encode(action.message))
            elif isinstance(action, SendText):
                client.outbox.put_nowait(action.text)
            else:
                client.outbox.put_nowait(_CloseRequest(action.code, action.reason))

    # -- client addresses (behind a trusted proxy: X-Forwarded-For) -------------------------

    def client_address(self, connection: ServerConnection) -> str:
        """The address this connection is counted and logged under."""
        return self._addresses.get(connection, "?")

    def _identify_client(self, connection: ServerConnection, request: Request) -> Response | None:
        """Charge a proxied connection to the client its proxy names; a refusal to send if
        that client already holds its share of connections."""
        peer = self._addresses.get(connection)
        if peer is None or not self.proxies.trusts(peer):
            return None
        client = self.proxies.client_address(peer, request.headers.get_all("X-Forwarded-For"))
        decision = self.admission.attribute(connection, client)
        if isinstance(decision, Refused):
            self.stats[f"refused:{decision.status}"] += 1
            logger.debug("refused %s (via proxy %s): %s", client, peer, decision.reason)
            return text_response(http.HTTPStatus(decision.status), f"{decision.reason}\n")
        self._addresses[connection] = client
        for old in decision.evict:
            self.stats["evicted"] += 1
            old.transport.abort()
        return None

    # -- admission (every accepted socket, before any HTTP) ----------------------------------

    def connection_made(self, connection: ServerConnection, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = normalize(str(peer[0])) if peer else "?"
        decision = self.admission.admit(
            connection, address, self.clock(), per_address=not self.proxies.trusts(address)
        )
        if isinstance(decision, Refused):
            self.stats[f"refused:{decision.status}"] += 1
            logger.debug("refused %s: %s", address, decision.reason)
            # Best effort: a client whose request is already on its way may see a reset
            # instead, as the socket closes with unread data. Either way the descriptor is
            # free at once.
            transport.write(_refusal(decision))
            transport.close()
            return
        self._addresses[connection] = address
        for old in decision.evict:
            self.stats["evicted"] += 1
            old.transport.abort()

    def connection_lost(self, connection: ServerConnection) -> None:
        self.admission.closed(connection)
        self._addresses.pop(connection, None)

    def _abort_overdue(self) -> None:
        overdue = self.admission.overdue(self.clock())
        if overdue:
            self.stats["handshake-timeouts"] += len(overdue)
            logger.info(
                "closed %d connections that did not finish their handshake in time (%s)",
                len(overdue),
                "under pressure" if self.admission.under_pressure else "normal window",
            )
        for connection in overdue:
            connection.transport.abort()

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire rooms and forget stale rate-limit entries as of ``clock()``."""
        now = self.clock()
        actions = self.registry.expire(now)
        if actions:
            logger.info("expired rooms; %d open", len(self.registry))
        self._execute(actions)
        self.joins.prune(now)
        self._abort_overdue()

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            self.sweep()
            if self.cluster is not None:
                with contextlib.suppress(SignalError):  # logged by the cluster; retried
                    for conn in await self.cluster.sweep():
                        self._refuse(conn, *LOST_ROOM)


class _AdmittedConnection(ServerConnection):
    """A websocket connection that is counted (and may be refused) from accept on.

    websockets takes a class here, so :func:`start_server` subclasses it per server to set
    ``signal``."""

    signal: ClassVar[SignalServer]
    _head_tail = b""
    """The last bytes of the request head received so far (its end may straddle reads)."""
    _head_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.signal.connection_made(self, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        """Pass on the first request; hold back nothing else until the handshake is over.

        websockets parses whatever follows the request head as websocket frames at once,
        while the response is still being prepared: a second request pipelined behind the
        first (two GETs in one write) fails that parse, which ends the stream, and the
        response then trips an assertion in ``send_response`` (no answer, a traceback in
        the log). A client must wait for the 101 before it sends frames (RFC 6455, 4.1) and
        every plain HTTP answer here closes the connection, so bytes that arrive after the
        head and before the handshake is over are dropped: the first request is answered,
        then the connection closes."""
        if self.protocol.state is not State.CONNECTING:
            super().data_received(data)
            return
        if self._head_done:
            return
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._head_tail = seen[-3:]
        else:
            self._head_done = True
            keep = end + 4 - len(self._head_tail)
            if keep < len(data):
                self.signal.stats["pipelined"] += 1
                data = data[:keep]
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.signal.connection_lost(self)


def _refusal(refused: Refused) -> bytes:
    body = f"{refused.reason}\n".encode()
    phrase = http.HTTPStatus(refused.status).phrase
    return (
        f"HTTP/1.1 {refused.status} {phrase}\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _open_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return 0


def _capacity(max_connections: int) -> int:
    """Connections that fit under this process's descriptor limit (``max_connections`` caps
    it further when set)."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit of this kind
        return max_connections or 10_000
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    capacity = connection_capacity(limit, _open_fds())
    return min(capacity, max_connections) if max_connections else capacity


def ws_url(server: Server) -> str:
    """The ``ws://`` URL of the first socket ``server`` listens on."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


@dataclass
class RunningServer:
    signal: SignalServer
    server: Server
    url: str


@contextlib.asynccontextmanager
async def start_server(
    settings: ServerSettings,
    clock: Clock = time.monotonic,
    signal: SignalServer | None = None,
) -> AsyncIterator[RunningServer]:
    """Run a rendezvous server until the block exits; ``settings.port`` 0 picks a free port.

    ``signal`` substitutes the connection logic (tests use a deliberately malicious one).
    """
    signal = signal or SignalServer(settings, clock)
    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url is not None and signal.cluster is None:
            signal.cluster = await RedisRooms.connect(
                settings.redis_url,
                max_rooms=settings.max_rooms,
                max_messages_per_room=settings.max_messages_per_room,
                room_ttl_s=settings.room_ttl_s,
                idle_timeout_s=settings.idle_timeout_s,
                joins_per_ip_per_minute=settings.joins_per_ip_per_minute,
            )
            stack.push_async_callback(signal.cluster.aclose)
            inbox = asyncio.create_task(signal.cluster.run(signal._execute))
            stack.callback(inbox.cancel)
        async with _serve(signal, settings) as running:
            yield running


@contextlib.asynccontextmanager
async def _serve(signal: SignalServer, settings: ServerSettings) -> AsyncIterator[RunningServer]:
    async with serve(
        signal.handler,
        settings.host,
        settings.port,
        subprotocols=[Subprotocol(protocol.SUBPROTOCOL)],
        select_subprotocol=signal.select_subprotocol,
        process_request=signal.process_request,
        process_response=signal.process_response,
        compression=None,
        max_size=settings.max_message_bytes,
        max_queue=16,
        open_timeout=settings.handshake_timeout_s,
        ping_interval=settings.ping_interval_s or None,
        ping_timeout=settings.ping_timeout_s or None,
        close_timeout=5,
        server_header=None,
        create_connection=type("AdmittedConnection", (_AdmittedConnection,), {"signal": signal}),
    ) as server:
        sweeper = asyncio.create_task(signal.sweep_forever())
        try:
            yield RunningServer(signal, server, ws_url(server))
        finally:
            sweeper.cancel()
