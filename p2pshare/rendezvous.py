"""Client side of the rendezvous protocol (docs/protocol.md, part 1), over websockets.

The server is untrusted: everything it sends is validated here, where it enters, and every
failure becomes a :mod:`p2pshare.errors` error (``SignallingError`` when the server is at
fault, ``PeerLostError`` only when the peer is). websockets' exceptions are translated at this
boundary too. Bodies are bytes here and base64url on the wire; the server never sees anything
but opaque strings. The wire names come from :mod:`signal_server.wire`, shared with the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import ssl
import urllib.parse
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.typing import Subprotocol

from p2pshare import __version__
from p2pshare.errors import (
    CrowdedError,
    NoSuchCodeError,
    P2PShareError,
    PeerLostError,
    SignallingError,
)
from p2pshare.files import printable
from signal_server.wire import (
    CLOSE_NORMAL,
    ERROR_CLOSE_CODES,
    NAMEPLATE_RE,
    SIDE_RE,
    SUBPROTOCOL,
    ClientType,
    ErrorCode,
    RoomMode,
    ServerType,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 48 * 1024
MAX_FRAME_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
"""For the handshake, the welcome, and every answer the server owes us (not the peer)."""
PROBE_TIMEOUT_S = 3.0
MAX_SERVER_TEXT_CHARS = 200
"""Error messages and close reasons from the server are cut to this before printing."""

# What a server may hand us as ICE servers. aiortc uses the first STUN and the first TURN URL
# and accepts neither IPv6 literals nor other transports; anything else is refused, not guessed.
MAX_ICE_SERVERS = 8
MAX_ICE_URLS = 8
MAX_ICE_FIELD_CHARS = 512
_ICE_URL_RE = re.compile(
    r"(?:stuns?|(?P<turn>turns?)):[A-Za-z0-9.\-]{1,253}(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?",
    re.ASCII,
)
_HOST_PORT_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?",
    re.ASCII,
)

_ERRORS: dict[str, type[P2PShareError]] = {
    ErrorCode.NO_SUCH_CODE: NoSuchCodeError,
    ErrorCode.EXPIRED: NoSuchCodeError,
    ErrorCode.CROWDED: CrowdedError,
    ErrorCode.CLOSED: NoSuchCodeError,  # send --many: the sender admits nobody else
}

_PEER_GONE_CLOSES = {ERROR_CLOSE_CODES[ErrorCode.PEER_LEFT], CLOSE_NORMAL}
_HTTP_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def parse_server_url(text: str) -> str:
    """The ``ws://`` or ``wss://`` URL of a rendezvous server, from what a user typed.

    ``HOST:PORT`` means ``ws://HOST:PORT``; ``http://`` and ``https://`` mean ``ws://`` and
    ``wss://`` (the browser page and the websocket share one origin, so people paste the page's
    address). Raise ``ValueError`` with a one-line message (a usage error) for anything else.
    """
    shown = printable(text)
    expected = "expected ws://HOST:PORT, wss://HOST, or HOST:PORT"
    text = text.strip()
    if "://" not in text:
        if not _HOST_PORT_RE.fullmatch(text):
            raise ValueError(f"not a rendezvous server address: {shown} ({expected})")
        text = f"ws://{text}"
    scheme, rest = text.split("://", 1)
    ws_scheme = _HTTP_SCHEMES.get(scheme.lower())
    if ws_scheme is None:
        raise ValueError(f"not a rendezvous server address: {shown} ({expected})")
    url = f"{ws_scheme}://{rest}"
    if not url.isascii() or any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ValueError(f"not a rendezvous server address: {shown} ({expected})")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(
            f"not a rendezvous server address: {shown} (the port must be 1 to 65535)"
        ) from None
    if port == 0:
        raise ValueError(f"not a rendezvous server address: {shown} (the port must be 1 to 65535)")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"not a rendezvous server address: {shown} ({expected})")
    return url


def check_ice_servers(value: object) -> list[dict[str, Any]]:
    """The ``ice_servers`` of a welcome, validated: ``RTCIceServer`` dicts whose ``urls`` is a
    STUN/TURN URL or a list of them and whose ``username``/``credential`` are strings.
    Raise :class:`SignallingError` otherwise (a hostile or broken server)."""
    bad = SignallingError("the rendezvous server sent invalid ICE servers")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ICE_SERVERS:
        raise bad
    servers: list[dict[str, Any]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise bad
        urls = entry.get("urls")
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not 1 <= len(url_list) <= MAX_ICE_URLS:
            raise bad
        for url in url_list:
            if not isinstance(url, str) or not _valid_ice_url(url):
                raise bad
        server: dict[str, Any] = {"urls": list(url_list)}
        for name in ("username", "credential"):
            field = entry.get(name)
            if field is None:
                continue
            if not isinstance(field, str) or len(field) > MAX_ICE_FIELD_CHARS:
                raise bad
            server[name] = field
        servers.append(server)
    return servers


def _valid_ice_url(url: str) -> bool:
    match = _ICE_URL_RE.fullmatch(url)
    if match is None:
        return False
    if match["transport"] and not match["turn"]:
        return False  # STUN URLs have no transport parameter (RFC 7064)
    return match["port"] is None or 1 <= int(match["port"]) <= 65535


def check_nameplate(value: object) -> str:
    """A nameplate from the server: ASCII digits, 1 to 999999 (``wire.NAMEPLATE_RE``)."""
    if not isinstance(value, str) or not NAMEPLATE_RE.fullmatch(value):
        raise SignallingError("the rendezvous server sent an invalid nameplate")
    return value


class Relay(Protocol):
    """What pairing needs from the rendezvous: a relay to one peer. A
    :class:`RendezvousClient` in a two-peer room is one; so is each receiver's
    :class:`SideRelay` in a room opened in many mode."""

    ice_servers: list[dict[str, Any]]

    async def send(self, body: bytes) -> None: ...

    async def receive(self, timeout_s: float | None) -> bytes: ...

    async def wait_paired(self, timeout_s: float | None = None) -> None: ...

    async def close(self) -> None: ...


class RendezvousClient:
    """One connection to ``p2pshare-signal``, used for one pairing."""

    def __init__(self, ws: ClientConnection, url: str, ice_servers: list[dict[str, Any]]):
        self._ws = ws
        self.url = url
        self.ice_servers = ice_servers
        self.paired = False
        self._joined_waiting_room = False
        """We claimed a room somebody waits in: the server owes us ``paired`` at once."""

    kind = "p2pshare-signal"
    """Which protocol the server speaks (the mailbox client says ``mailbox``)."""

    @classmethod
    async def connect(cls, url: str) -> RendezvousClient:
        """A client of the ``p2pshare-signal`` at ``url`` (see also
        :func:`p2pshare.mailbox.connect_any`, which accepts either kind of server)."""
        ws, url = await open_websocket(url)
        try:
            welcome = await first_message(ws)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
            raise
        return await cls.from_welcome(ws, url, welcome)

    @classmethod
    async def from_welcome(
        cls, ws: ClientConnection, url: str, welcome: dict[str, Any]
    ) -> RendezvousClient:
        """The client for a connection whose first message, ``welcome``, has been read."""
        client = cls(ws, url, [])
        try:
            if welcome.get("type") != ServerType.WELCOME:
                raise SignallingError(
                    "the rendezvous server did not greet us; is it p2pshare-signal?"
                )
            client.ice_servers = check_ice_servers(welcome.get("ice_servers"))
        except BaseException:
            await client.close()
            raise
        return client

    async def _next(self, timeout_s: float | None, *, from_peer: bool = False) -> dict[str, Any]:
        """The next server message; server errors and closes become exceptions.

        ``from_peer``: what we wait for must come from the peer, so a timeout means the peer is
        gone; otherwise the server owes it and a timeout is the server's fault.
        """
        obj = await self._next_frame(timeout_s, from_peer=from_peer)
        if obj.get("type") == ServerType.PEER_LEFT:
            raise PeerLostError("the other side left before the connection was set up")
        return obj

    async def _next_frame(
        self, timeout_s: float | None, *, from_peer: bool = False
    ) -> dict[str, Any]:
        """Like :meth:`_next`, with ``peer-left`` returned (many mode: one receiver left)."""
        try:
            async with asyncio.timeout(timeout_s):
                frame = await self._ws.recv()
        except TimeoutError:
            if from_peer:
                raise PeerLostError("the other side did not answer in time") from None
            raise SignallingError("the rendezvous server did not answer in time") from None
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            raise SignallingError("the rendezvous server sent something unexpected")
        if obj.get("type") == ServerType.ERROR:
            code, message = str(obj.get("code")), _server_text(obj.get("message", ""))
            raise _ERRORS.get(code, SignallingError)(f"rendezvous server: {message}")
        return obj

    def _closed_error(self, exc: ConnectionClosed) -> P2PShareError:
        # After pairing the server closes us with 4007 when the peer vanished and 1000 when it
        # said bye (the peer-left message before it may not have been read yet, if we were
        # sending). Other closes (timeouts, going away, a dropped connection) are the server's.
        if self.paired and exc.rcvd is not None and exc.rcvd.code in _PEER_GONE_CLOSES:
            return PeerLostError("the other side left before the connection was set up")
        reason = _server_text(exc.rcvd.reason) if exc.rcvd and exc.rcvd.reason else "closed"
        return SignallingError(f"the rendezvous server closed the connection: {reason}")

    async def _request(self, message: dict[str, Any], expect: ServerType) -> dict[str, Any]:
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        reply = await self._next(CONNECT_TIMEOUT_S)
        if reply.get("type") != expect:
            raise SignallingError("the rendezvous server sent something unexpected")
        return reply

    async def allocate(self, many: bool = False) -> str:
        message: dict[str, Any] = {"type": ClientType.ALLOCATE}
        if many:
            message["mode"] = RoomMode.MANY
        reply = await self._request(message, ServerType.ALLOCATED)
        _check_mode(reply, many)
        return check_nameplate(reply.get("nameplate"))

    async def claim(self, nameplate: str, create: bool = False, many: bool = False) -> None:
        message: dict[str, Any] = {"type": ClientType.CLAIM, "nameplate": nameplate}
        if create:
            message["create"] = True
        if many:
            message["mode"] = RoomMode.MANY
        reply = await self._request(message, ServerType.CLAIMED)
        if reply.get("nameplate") != nameplate:
            raise SignallingError("the rendezvous server confirmed another nameplate")
        _check_mode(reply, many)
        self._joined_waiting_room = not create

    async def _send_json(self, message: dict[str, Any]) -> None:
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        if self.paired:
            return
        if self._joined_waiting_room:
            # The server sends paired right after claimed: waiting longer is its fault.
            reply = await self._next(CONNECT_TIMEOUT_S)
        else:
            reply = await self._next(timeout_s, from_peer=True)
        if reply.get("type") != ServerType.PAIRED:
            raise SignallingError("the rendezvous server sent something unexpected")
        self.paired = True

    async def send(self, body: bytes) -> None:
        if len(body) > MAX_BODY_BYTES:
            raise SignallingError("signalling message too large for the rendezvous server")
        try:
            await self._ws.send(json.dumps({"type": ClientType.SEND, "body": _b64(body)}))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None

    async def receive(self, timeout_s: float | None) -> bytes:
        reply = await self._next(timeout_s, from_peer=True)
        body = reply.get("body")
        if reply.get("type") != ServerType.MESSAGE or not isinstance(body, str):
            raise SignallingError("the rendezvous server sent something unexpected")
        try:
            return base64.urlsafe_b64decode(body.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError):
            raise SignallingError("a relayed message was not valid base64") from None

    async def close(self) -> None:
        """Say bye and close; the server drops the room (we no longer need it)."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self._ws.send(json.dumps({"type": ClientType.BYE}))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 2)


USER_AGENT = f"p2pshare/{__version__} (+https://github.com/p2pshare/p2pshare)"
"""Servers we do not run see which program connects (the mailbox's operator, for one)."""


async def open_websocket(url: str) -> tuple[ClientConnection, str]:
    """A websocket to the rendezvous server at ``url`` (as the user typed it), offering our
    subprotocol (a mailbox server ignores it); returns the connection and the parsed URL."""
    try:
        url = parse_server_url(url)
    except ValueError as exc:
        raise SignallingError(str(exc)) from None
    try:
        ws = await connect(
            url,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            compression=None,
            open_timeout=CONNECT_TIMEOUT_S,
            max_size=MAX_FRAME_BYTES,
            user_agent_header=USER_AGENT,
        )
    except InvalidURI:
        raise SignallingError(f"not a rendezvous server address: {printable(url)}") from None
    except (OSError, WebSocketException, TimeoutError, EOFError, ValueError) as exc:
        # ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidMessage and a server
        # out of descriptors all end here: we could not get a connection.
        raise await _connect_error(url, exc) from None
    return ws, url


async def first_message(ws: ClientConnection) -> dict[str, Any]:
    """The server's greeting, which says which protocol it speaks: a JSON object."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            frame = await ws.recv()
    except TimeoutError:
        raise SignallingError("the rendezvous server did not answer in time") from None
    except ConnectionClosed as exc:
        reason = _server_text(exc.rcvd.reason) if exc.rcvd and exc.rcvd.reason else "closed"
        raise SignallingError(f"the rendezvous server closed the connection: {reason}") from None
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        raise SignallingError("the rendezvous server did not greet us; is it a rendezvous server?")
    if obj.get("type") == ServerType.ERROR and not isinstance(obj.get("welcome"), dict):
        code, message = str(obj.get("code")), _server_text(obj.get("message", ""))
        raise _ERRORS.get(code, SignallingError)(f"rendezvous server: {message}")
    return obj


def _check_mode(reply: dict[str, Any], many: bool) -> None:
    """A server that knows many mode echoes it; an older one ignores the field and would open
    a two-peer room, where the second receiver would be told "crowded"."""
    if many and reply.get("mode") != RoomMode.MANY:
        raise SignallingError(
            "this rendezvous server does not support send --many; update it, or send "
            "without --server (the sender's own server supports it)"
        )


class ManyRoom:
    """The creator's side of a room opened in many mode: receivers arrive one by one as
    :class:`SideRelay` objects, each a private relay to one receiver.

    One task reads the connection and routes every relayed body by its ``from`` side, so
    nothing of one receiver's exchange reaches another's pairing.
    """

    def __init__(self, client: RendezvousClient) -> None:
        self.client = client
        self._sides: dict[str, SideRelay] = {}
        self._arrivals: asyncio.Queue[SideRelay | P2PShareError] = asyncio.Queue()
        self._failure: P2PShareError | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                obj = await self.client._next_frame(None)
                kind, side = obj.get("type"), obj.get("side", obj.get("from"))
                if not isinstance(side, str) or not SIDE_RE.fullmatch(side):
                    raise SignallingError("the rendezvous server sent something unexpected")
                if kind == ServerType.JOINED:
                    if side in self._sides:
                        raise SignallingError("the rendezvous server reused a receiver's side")
                    relay = SideRelay(self, side)
                    self._sides[side] = relay
                    self._arrivals.put_nowait(relay)
                elif kind == ServerType.MESSAGE and side in self._sides:
                    self._sides[side]._inbox.put_nowait(_decode_body(obj.get("body")))
                elif kind == ServerType.PEER_LEFT and side in self._sides:
                    gone = PeerLostError("the receiver left before the connection was set up")
                    self._sides.pop(side)._inbox.put_nowait(gone)
                elif kind not in (ServerType.MESSAGE, ServerType.PEER_LEFT):
                    raise SignallingError("the rendezvous server sent something unexpected")
        except P2PShareError as exc:
            self._failure = exc
            self._arrivals.put_nowait(exc)
            for relay in self._sides.values():
                relay._inbox.put_nowait(exc)

    @property
    def failed(self) -> bool:
        """The room is gone (the server closed it, or the connection broke)."""
        return self._failure is not None

    async def next_receiver(self) -> SideRelay:
        """The next receiver to join the room; raises what ended the room."""
        item = await self._arrivals.get()
        if isinstance(item, P2PShareError):
            self._arrivals.put_nowait(item)
            raise item
        return item

    async def lock(self) -> None:
        """Admit nobody else: later claims are refused by the server with ``closed``."""
        await self.client._send_json({"type": ClientType.LOCK})

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class SideRelay:
    """The relay to one receiver of a many-mode room (a :class:`Relay`)."""

    def __init__(self, room: ManyRoom, side: str) -> None:
        self.room = room
        self.side = side
        self.ice_servers = room.client.ice_servers
        self._inbox: asyncio.Queue[bytes | P2PShareError] = asyncio.Queue()
        self._closed = False

    async def send(self, body: bytes) -> None:
        if len(body) > MAX_BODY_BYTES:
            raise SignallingError("signalling message too large for the rendezvous server")
        await self.room.client._send_json(
            {"type": ClientType.SEND, "to": self.side, "body": _b64(body)}
        )

    async def receive(self, timeout_s: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._inbox.get()
        except TimeoutError:
            raise PeerLostError("the receiver did not answer in time") from None
        if isinstance(item, P2PShareError):
            self._inbox.put_nowait(item)  # every later receive fails the same way
            raise item
        return item

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        """The receiver is here already: it joined to become this relay."""

    async def kick(self) -> None:
        """Close this receiver's connection (``closed``: it was not admitted)."""
        with contextlib.suppress(P2PShareError):
            await self.room.client._send_json({"type": ClientType.KICK, "side": self.side})
        await self.close()

    async def close(self) -> None:
        """Stop listening; the receiver leaves the room itself (the room stays ours)."""
        self.room._sides.pop(self.side, None)


def _decode_body(body: object) -> bytes | P2PShareError:
    if not isinstance(body, str):
        return SignallingError("the rendezvous server sent something unexpected")
    try:
        return base64.urlsafe_b64decode(body.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        return SignallingError("a relayed message was not valid base64")


def _server_text(value: object) -> str:
    return printable(str(value), MAX_SERVER_TEXT_CHARS)


async def _connect_error(url: str, exc: BaseException) -> SignallingError:
    """The error for a failed connection, saying what is wrong when we can tell."""
    reason = _server_text(str(exc) or type(exc).__name__)
    # A TLS handshake that a plain server breaks off looks like a reset, an SSL error or a
    # timeout; a certificate problem means the server does speak TLS (and nginx answers
    # plain HTTP on its TLS port, which would fool the probe).
    tls_broke = isinstance(exc, OSError | TimeoutError) and not isinstance(
        exc, ssl.SSLCertVerificationError
    )
    if url.startswith("wss://") and tls_broke and await _speaks_plain_http(url):
        plain = "ws://" + url.removeprefix("wss://")
        return SignallingError(
            f"the rendezvous server at {printable(url)} does not speak TLS; try {printable(plain)}"
        )
    if isinstance(exc, TimeoutError):
        # Connections dropped without a word: what a firewall does.
        reason = "no answer in time (a firewall may be dropping connections to that port)"
    return SignallingError(f"cannot reach the rendezvous server at {printable(url)}: {reason}")


async def _speaks_plain_http(url: str) -> bool:
    """After a failed TLS connection: does the server answer plain HTTP instead?"""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or 443
    if host is None:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
                await writer.drain()
                head = await reader.read(5)
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    return head == b"HTTP/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")
