"""The names on the wire of the rendezvous protocol ``p2pshare.v1``: the one source for both ends.

The server (:mod:`signal_server.protocol`) and the Python client (``p2pshare/rendezvous.py``)
both import these, so that a renamed message or error cannot drift apart between them. This
module imports nothing: the client may depend on it without pulling in any server code, and the
server stays deployable without the client. ``docs/protocol.md`` documents every name.
"""

from __future__ import annotations

import enum
import re

SUBPROTOCOL = "p2pshare.v1"
"""Offered in ``Sec-WebSocket-Protocol``; a new incompatible version gets a new name."""
PROTOCOL_VERSION = 1

NAMEPLATE_RE = re.compile(r"[1-9][0-9]{0,5}")
"""Nameplates are decimal numbers from 1 to 999999 without leading zeros (ASCII digits only)."""
NAMEPLATE_MAX_DIGITS = 6
SIDE_RE = re.compile(r"[1-9][0-9]{0,8}")
"""A receiver's side in a many-mode room: a decimal number the server hands out."""


class ClientType(enum.StrEnum):
    """``type`` of the messages a client sends."""

    ALLOCATE = "allocate"
    CLAIM = "claim"
    SEND = "send"
    BYE = "bye"
    LOCK = "lock"
    """Many mode, the creator only: admit nobody else (later claims get ``closed``)."""
    KICK = "kick"
    """Many mode, the creator only: close one receiver's connection with ``closed``."""


class RoomMode(enum.StrEnum):
    """``mode`` of an ``allocate`` or creating ``claim``; absent means single."""

    SINGLE = "single"
    MANY = "many"


class ServerType(enum.StrEnum):
    """``type`` of the messages the server sends."""

    WELCOME = "welcome"
    ALLOCATED = "allocated"
    CLAIMED = "claimed"
    PAIRED = "paired"
    JOINED = "joined"
    """Many mode, to the creator: a receiver joined under ``side``."""
    MESSAGE = "message"
    PEER_LEFT = "peer-left"
    ERROR = "error"


class ErrorCode(enum.StrEnum):
    """``code`` of an ``error`` message."""

    BAD_REQUEST = "bad-request"
    NO_SUCH_CODE = "no-such-code"
    CROWDED = "crowded"
    NAMEPLATE_TAKEN = "nameplate-taken"
    RATE_LIMITED = "rate-limited"
    ROOM_LIMIT = "room-limit"
    EXPIRED = "expired"
    PEER_LEFT = "peer-left"
    TIMEOUT = "timeout"
    UNSUPPORTED_VERSION = "unsupported-version"
    SERVER_FULL = "server-full"
    CLOSED = "closed"
    UNSUPPORTED_MODE = "unsupported-mode"


# Close codes sent with the final close frame. 1000-1015 are RFC 6455's; 4000-4999 are ours.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013

ERROR_CLOSE_CODES: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 4000,
    ErrorCode.NO_SUCH_CODE: 4001,
    ErrorCode.CROWDED: 4002,
    ErrorCode.NAMEPLATE_TAKEN: 4003,
    ErrorCode.RATE_LIMITED: 4004,
    ErrorCode.ROOM_LIMIT: 4005,
    ErrorCode.EXPIRED: 4006,
    ErrorCode.PEER_LEFT: 4007,
    ErrorCode.TIMEOUT: 4008,
    ErrorCode.UNSUPPORTED_VERSION: 4009,
    ErrorCode.SERVER_FULL: CLOSE_TRY_AGAIN_LATER,
    ErrorCode.CLOSED: 4010,
    ErrorCode.UNSUPPORTED_MODE: 4011,
}
"""The close code that follows each ``error`` (and, for ``peer-left``, the peer-left message)."""
