"""Client side of the rendezvous protocol (docs/protocol.md, part 1), over websockets.

Translates websockets' exceptions and the server's error codes into :mod:`p2pshare.errors`.
Bodies are bytes here and base64url on the wire; the server never sees anything but opaque
strings.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from p2pshare.errors import (
    CrowdedError,
    NoSuchCodeError,
    P2PShareError,
    PeerLostError,
    SignallingError,
)
from p2pshare.files import printable
from signal_server.wire import SUBPROTOCOL, ClientType, ErrorCode, ServerType

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 48 * 1024
CONNECT_TIMEOUT_S = 10.0

_ERRORS: dict[str, type[P2PShareError]] = {
    ErrorCode.NO_SUCH_CODE: NoSuchCodeError,
    ErrorCode.EXPIRED: NoSuchCodeError,
    ErrorCode.CROWDED: CrowdedError,
}


class RendezvousClient:
    """One connection to ``p2pshare-signal``, used for one pairing."""

    def __init__(self, ws: ClientConnection, url: str, ice_servers: list[dict[str, Any]]):
        self._ws = ws
        self.url = url
        self.ice_servers = ice_servers
        self.paired = False

    @classmethod
    async def connect(cls, url: str) -> RendezvousClient:
        try:
            ws = await connect(
                url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                compression=None,
                open_timeout=CONNECT_TIMEOUT_S,
                max_size=256 * 1024,
            )
        except (InvalidURI, ValueError):
            raise SignallingError(
                f"not a rendezvous server address: {printable(url)} "
                "(expected ws://HOST:PORT or wss://...)"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            reason = printable(str(exc) or type(exc).__name__)
            raise SignallingError(
                f"cannot reach the rendezvous server at {printable(url)}: {reason}"
            ) from None
        client = cls(ws, url, [])
        welcome = await client._next()
        if welcome.get("type") != ServerType.WELCOME:
            raise SignallingError("the rendezvous server did not greet us; is it p2pshare-signal?")
        servers = welcome.get("ice_servers")
        if isinstance(servers, list):
            client.ice_servers = [s for s in servers if isinstance(s, dict) and "urls" in s]
        return client

    async def _next(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next server message; server errors and closes become exceptions."""
        try:
            async with asyncio.timeout(timeout_s):
                frame = await self._ws.recv()
        except TimeoutError:
            raise PeerLostError("the other side did not answer in time") from None
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        try:
            obj = json.loads(frame)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise SignallingError("the rendezvous server sent something unexpected")
        if obj.get("type") == ServerType.ERROR:
            code, message = str(obj.get("code")), printable(str(obj.get("message", "")))
            raise _ERRORS.get(code, SignallingError)(f"rendezvous server: {message}")
        if obj.get("type") == ServerType.PEER_LEFT:
            raise PeerLostError("the other side left before the connection was set up")
        return obj

    def _closed_error(self, exc: ConnectionClosed) -> P2PShareError:
        if self.paired:
            return PeerLostError("the other side left before the connection was set up")
        reason = printable(exc.rcvd.reason) if exc.rcvd and exc.rcvd.reason else "closed"
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

    async def allocate(self) -> str:
        reply = await self._request({"type": ClientType.ALLOCATE}, ServerType.ALLOCATED)
        nameplate = reply.get("nameplate")
        if not isinstance(nameplate, str) or not nameplate.isdigit():
            raise SignallingError("the rendezvous server sent an invalid nameplate")
        return nameplate

    async def claim(self, nameplate: str, create: bool = False) -> None:
        message: dict[str, Any] = {"type": ClientType.CLAIM, "nameplate": nameplate}
        if create:
            message["create"] = True
        await self._request(message, ServerType.CLAIMED)

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        if not self.paired:
            reply = await self._next(timeout_s)
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
        reply = await self._next(timeout_s)
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")
