"""Wire format of the rendezvous protocol (``p2pshare.v1``), without any I/O.

Every frame is a UTF-8 JSON object in a text frame with a ``type`` field. Client messages are
parsed into small frozen dataclasses by :func:`parse_client_message`, which validates every field
and raises :class:`BadRequest` on anything else; server messages are built by the ``*_msg``
helpers. ``docs/protocol.md`` is the reference for other implementations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from signal_server.wire import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
    ERROR_CLOSE_CODES,
    NAMEPLATE_RE,
    PROTOCOL_VERSION,
    SIDE_RE,
    SUBPROTOCOL,
    ClientType,
    ErrorCode,
    RoomMode,
    ServerType,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "NAMEPLATE_RE",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
]


@dataclass(frozen=True)
class ErrorKind:
    """One error the server can report: its stable name and the close code that goes with it."""

    name: str
    close_code: int


def _kind(code: ErrorCode) -> ErrorKind:
    return ErrorKind(code, ERROR_CLOSE_CODES[code])


BAD_REQUEST = _kind(ErrorCode.BAD_REQUEST)
NO_SUCH_CODE = _kind(ErrorCode.NO_SUCH_CODE)
CROWDED = _kind(ErrorCode.CROWDED)
NAMEPLATE_TAKEN = _kind(ErrorCode.NAMEPLATE_TAKEN)
RATE_LIMITED = _kind(ErrorCode.RATE_LIMITED)
ROOM_LIMIT = _kind(ErrorCode.ROOM_LIMIT)
EXPIRED = _kind(ErrorCode.EXPIRED)
PEER_LEFT = _kind(ErrorCode.PEER_LEFT)
TIMEOUT = _kind(ErrorCode.TIMEOUT)
UNSUPPORTED_VERSION = _kind(ErrorCode.UNSUPPORTED_VERSION)
SERVER_FULL = _kind(ErrorCode.SERVER_FULL)
CLOSED = _kind(ErrorCode.CLOSED)
UNSUPPORTED_MODE = _kind(ErrorCode.UNSUPPORTED_MODE)
BINARY_FRAME = ErrorKind(ErrorCode.BAD_REQUEST, CLOSE_UNSUPPORTED_DATA)

ERROR_KINDS = {
    kind.name: kind
    for kind in (
        BAD_REQUEST,
        NO_SUCH_CODE,
        CROWDED,
        NAMEPLATE_TAKEN,
        RATE_LIMITED,
        ROOM_LIMIT,
        EXPIRED,
        PEER_LEFT,
        TIMEOUT,
        UNSUPPORTED_VERSION,
        SERVER_FULL,
        CLOSED,
        UNSUPPORTED_MODE,
    )
}


class SignalError(Exception):
    """A request the server refuses; the client gets an ``error`` message, then a close."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class BadRequest(SignalError):
    """The client sent something that is not a valid ``p2pshare.v1`` message."""

    def __init__(self, message: str) -> None:
        super().__init__(BAD_REQUEST, message)


# -- client to server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocate:
    """Ask the server for the smallest free nameplate and wait in its room."""

    many: bool = False
    """Open the room in many mode (one creator, several receivers, addressed by side)."""


@dataclass(frozen=True)
class Claim:
    """Join the room of ``nameplate``; ``create`` opens it if it does not exist yet."""

    nameplate: str
    create: bool
    many: bool = False
    """With ``create``: open the room in many mode."""


@dataclass(frozen=True)
class Send:
    """Relay ``body`` (an opaque string) to the paired peer; in many mode the creator names
    the receiver with ``to``."""

    body: str
    to: str | None = None


@dataclass(frozen=True)
class Lock:
    """Many mode, creator only: admit nobody else into the room."""


@dataclass(frozen=True)
class Kick:
    """Many mode, creator only: close the receiver ``side``'s connection."""

    side: str


@dataclass(frozen=True)
class Bye:
    """The client is done with the room; the server closes the connection normally."""


ClientMessage = Allocate | Claim | Send | Bye | Lock | Kick


def _mode(obj: dict[str, Any]) -> bool:
    """True for ``"mode":"many"``; absent or ``"single"`` is single mode."""
    mode = obj.get("mode", RoomMode.SINGLE)
    if mode not in (RoomMode.SINGLE, RoomMode.MANY):
        raise BadRequest("field 'mode' must be 'single' or 'many'")
    return bool(mode == RoomMode.MANY)


def _side(obj: dict[str, Any], name: str) -> str:
    side = _field(obj, name, str)
    if not SIDE_RE.fullmatch(side):
        raise BadRequest(f"field {name!r} must be a side number")
    return str(side)


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    # bool is a subclass of int in Python; JSON does not mix them, neither do we.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"field {name!r} must be a {kind.__name__}")
    return value


def parse_client_message(text: str) -> ClientMessage:
    """Decode and validate one client frame; raise :class:`BadRequest` if it is not valid."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("message is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise BadRequest("message must be a JSON object")
    kind = obj.get("type")
    if kind == ClientType.ALLOCATE:
        return Allocate(_mode(obj))
    if kind == ClientType.CLAIM:
        nameplate = _field(obj, "nameplate", str)
        if not NAMEPLATE_RE.fullmatch(nameplate):
            raise BadRequest("nameplate must be a number from 1 to 999999")
        create = obj.get("create", False)
        if not isinstance(create, bool):
            raise BadRequest("field 'create' must be a bool")
        many = _mode(obj)
        if many and not create:
            raise BadRequest("'mode' goes with 'create' (receivers join without it)")
        return Claim(nameplate, create, many)
    if kind == ClientType.SEND:
        return Send(_field(obj, "body", str), _side(obj, "to") if "to" in obj else None)
    if kind == ClientType.BYE:
        return Bye()
    if kind == ClientType.LOCK:
        return Lock()
    if kind == ClientType.KICK:
        return Kick(_side(obj, "side"))
    raise BadRequest("unknown message type")


# -- server to client -------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """Serialise a server message compactly."""
    return json.dumps(message, separators=(",", ":"))


def welcome_msg(ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": ServerType.WELCOME, "version": PROTOCOL_VERSION, "ice_servers": ice_servers}


def allocated_msg(nameplate: str, many: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": ServerType.ALLOCATED, "nameplate": nameplate}
    if many:
        msg["mode"] = RoomMode.MANY  # the echo tells a client this server knows many mode
    return msg


def claimed_msg(nameplate: str, many: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": ServerType.CLAIMED, "nameplate": nameplate}
    if many:
        msg["mode"] = RoomMode.MANY
    return msg


def joined_msg(side: str) -> dict[str, Any]:
    return {"type": ServerType.JOINED, "side": side}


def paired_msg() -> dict[str, Any]:
    return {"type": ServerType.PAIRED}


def relayed_msg(body: str, side: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": ServerType.MESSAGE, "body": body}
    if side is not None:
        msg["from"] = side
    return msg


def peer_left_msg(side: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": ServerType.PEER_LEFT}
    if side is not None:
        msg["side"] = side
    return msg


def error_msg(kind: ErrorKind, message: str) -> dict[str, Any]:
    return {"type": ServerType.ERROR, "code": kind.name, "message": message}
