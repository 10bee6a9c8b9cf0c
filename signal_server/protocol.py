"""Wire format of the rendezvous protocol (``p2pshare.v1``), without any I/O.

Every frame is a UTF-8 JSON object in a text frame with a ``type`` field. Client messages are
parsed into small frozen dataclasses by :func:`parse_client_message`, which validates every field
and raises :class:`BadRequest` on anything else; server messages are built by the ``*_msg``
helpers. ``docs/protocol.md`` is the reference for other implementations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

SUBPROTOCOL = "p2pshare.v1"
PROTOCOL_VERSION = 1
NAMEPLATE_RE = re.compile(r"[1-9][0-9]{0,5}")
"""Nameplates are decimal numbers from 1 to 999999 without leading zeros."""

# Close codes sent with the final close frame. 1000-1015 are RFC 6455's; 4000-4999 are ours.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class ErrorKind:
    """One error the server can report: its stable name and the close code that goes with it."""

    name: str
    close_code: int


BAD_REQUEST = ErrorKind("bad-request", 4000)
NO_SUCH_CODE = ErrorKind("no-such-code", 4001)
CROWDED = ErrorKind("crowded", 4002)
NAMEPLATE_TAKEN = ErrorKind("nameplate-taken", 4003)
RATE_LIMITED = ErrorKind("rate-limited", 4004)
ROOM_LIMIT = ErrorKind("room-limit", 4005)
EXPIRED = ErrorKind("expired", 4006)
PEER_LEFT = ErrorKind("peer-left", 4007)
TIMEOUT = ErrorKind("timeout", 4008)
UNSUPPORTED_VERSION = ErrorKind("unsupported-version", 4009)
SERVER_FULL = ErrorKind("server-full", CLOSE_TRY_AGAIN_LATER)
BINARY_FRAME = ErrorKind("bad-request", CLOSE_UNSUPPORTED_DATA)

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


@dataclass(frozen=True)
class Claim:
    """Join the room of ``nameplate``; ``create`` opens it if it does not exist yet."""

    nameplate: str
    create: bool


@dataclass(frozen=True)
class Send:
    """Relay ``body`` (an opaque string) to the paired peer."""

    body: str


@dataclass(frozen=True)
class Bye:
    """The client is done with the room; the server closes the connection normally."""


ClientMessage = Allocate | Claim | Send | Bye


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
    if kind == "allocate":
        return Allocate()
    if kind == "claim":
        nameplate = _field(obj, "nameplate", str)
        if not NAMEPLATE_RE.fullmatch(nameplate):
            raise BadRequest("nameplate must be a number from 1 to 999999")
        create = obj.get("create", False)
        if not isinstance(create, bool):
            raise BadRequest("field 'create' must be a bool")
        return Claim(nameplate, create)
    if kind == "send":
        return Send(_field(obj, "body", str))
    if kind == "bye":
        return Bye()
    raise BadRequest("unknown message type")


# -- server to client -------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """Serialise a server message compactly."""
    return json.dumps(message, separators=(",", ":"))


def welcome_msg(ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "welcome", "version": PROTOCOL_VERSION, "ice_servers": ice_servers}


def allocated_msg(nameplate: str) -> dict[str, Any]:
    return {"type": "allocated", "nameplate": nameplate}


def claimed_msg(nameplate: str) -> dict[str, Any]:
    return {"type": "claimed", "nameplate": nameplate}


def paired_msg() -> dict[str, Any]:
    return {"type": "paired"}


def relayed_msg(body: str) -> dict[str, Any]:
    return {"type": "message", "body": body}


def peer_left_msg() -> dict[str, Any]:
    return {"type": "peer-left"}


def error_msg(kind: ErrorKind, message: str) -> dict[str, Any]:
    return {"type": "error", "code": kind.name, "message": message}
