"""The room registry: pairing and relaying as pure logic, with the time passed in.

Nothing here does I/O or reads a clock. Each operation takes the caller's connection id and
``now`` and returns the list of :class:`Action` to carry out, in order; refusals of the caller's
own request are raised as :class:`~signal_server.protocol.SignalError`. The websockets handler in
``server.py`` only decodes frames, calls these methods and executes the actions.

Life of a room::

    allocate / claim(create) ──> waiting ──claim──> paired ──leave/bye/idle──> dropped
                                    └────────── TTL or creator leaves ───────────┘

A room opened in **many mode** (``send --many``) has one creator and up to
``max_receivers_per_room`` receivers at once, each under its own side number. The creator
addresses every message to one side; a receiver's messages go to the creator only, tagged with
its side, so receivers never see each other. A receiver leaving affects only itself; the
creator leaving drops the room. The creator can ``lock`` the room (later claims are refused
with ``closed``) and ``kick`` one receiver. Each receiver's exchange with the creator has its
own message budget; the room lives at most ``many_room_ttl_s``. One address may hold at most
``max_unproven_per_address`` receivers that have not proven the code yet (see
:data:`PROVEN_AFTER_CREATOR_BODIES`), so silent connections from one place cannot keep the
room crowded.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from signal_server import protocol
from signal_server.protocol import ErrorKind, SignalError

ConnId = int

PROVEN_AFTER_CREATOR_BODIES = 2
"""Many mode: a receiver counts as *unproven* until the creator has sent it this many bodies.
The sender's first body is its SPAKE2 message, the second its key confirmation, which it
sends only after checking the receiver's (docs/protocol.md, "Many receivers, one guess"); the
bodies stay opaque, only their number is used."""


@dataclass(frozen=True)
class SendTo:
    """Send ``message`` to connection ``conn``."""

    conn: ConnId
    message: dict[str, Any]


@dataclass(frozen=True)
class CloseConn:
    """Close connection ``conn`` with ``code`` and a human-readable ``reason``."""

    conn: ConnId
    code: int
    reason: str


Action = SendTo | CloseConn


@dataclass
class Room:
    nameplate: str
    created_s: float
    last_activity_s: float
    members: list[ConnId] = field(default_factory=list)
    messages: int = 0
    # Messages the creator sent before a peer arrived, delivered in order on pairing.
    pending: list[str] = field(default_factory=list)
    many: bool = False
    locked: bool = False
    """Many mode: the creator admits nobody else."""
    side_of: dict[ConnId, str] = field(default_factory=dict)
    """Many mode: each receiver's side number (the creator has none)."""
    conn_of: dict[str, ConnId] = field(default_factory=dict)
    next_side: int = 1
    exchanged: dict[ConnId, int] = field(default_factory=dict)
    """Many mode: messages relayed between the creator and each receiver, both ways."""
    from_creator: dict[ConnId, int] = field(default_factory=dict)
    """Many mode: bodies the creator sent to each receiver."""
    address_of: dict[ConnId, str] = field(default_factory=dict)
    """Many mode: each receiver's address, when the server gave one."""

    @property
    def paired(self) -> bool:
        return not self.many and len(self.members) == 2

    @property
    def creator(self) -> ConnId:
        return self.members[0]


def _close_with_error(conn: ConnId, kind: ErrorKind, message: str) -> list[Action]:
    return [
        SendTo(conn, protocol.error_msg(kind, message)),
        CloseConn(conn, kind.close_code, message),
    ]


class RoomRegistry:
    """All rooms of one server. Each connection is in at most one room."""

    def __init__(
        self,
        *,
        max_rooms: int = 10_000,
        max_messages_per_room: int = 64,
        room_ttl_s: float = 600.0,
        idle_timeout_s: float = 120.0,
        max_receivers_per_room: int = 16,
        many_room_ttl_s: float = 3600.0,
        max_unproven_per_address: int = 4,
    ) -> None:
        self.max_rooms = max_rooms
        self.max_messages_per_room = max_messages_per_room
        """In many mode: per receiver, counting both directions of its exchange."""
        self.room_ttl_s = room_ttl_s
        self.idle_timeout_s = idle_timeout_s
        self.max_receivers_per_room = max_receivers_per_room
        self.many_room_ttl_s = many_room_ttl_s
        self.max_unproven_per_address = max_unproven_per_address
        """Many mode: receivers one address may hold in a room before proving the code."""
        self._rooms: dict[str, Room] = {}
        self._room_of: dict[ConnId, Room] = {}
        # Allocation hands out the smallest free number. Invariant: every free number below
        # _next_number is in _free_numbers (which may also hold stale, taken entries).
        self._free_numbers: list[int] = []
        self._next_number = 1

    # -- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rooms)

    def nameplates(self) -> set[str]:
        return set(self._rooms)

    def room_of(self, conn: ConnId) -> Room | None:
        return self._room_of.get(conn)

    # -- operations ------------------------------------------------------------------------

    def allocate(self, conn: ConnId, now: float, many: bool = False) -> list[Action]:
        """Open a room under the smallest free nameplate with ``conn`` waiting in it."""
        self._check_can_open(conn)
        while self._free_numbers and str(self._free_numbers[0]) in self._rooms:
            heapq.heappop(self._free_numbers)
        if self._free_numbers:
            number = heapq.heappop(self._free_numbers)
        else:
            while str(self._next_number) in self._rooms:
                self._next_number += 1
            number = self._next_number
            self._next_number += 1
        nameplate = str(number)
        self._open(conn, nameplate, now, many)
        return [SendTo(conn, protocol.allocated_msg(nameplate, many))]

    def claim(
        self,
        conn: ConnId,
        nameplate: str,
        create: bool,
        now: float,
        many: bool = False,
        address: str | None = None,
    ) -> list[Action]:
        """Join the room ``nameplate``; with ``create``, open it (in many mode with ``many``)
        if nobody holds it yet. ``address`` (the client's) bounds the unproven receivers one
        address may hold in a many-mode room; None: not counted."""
        if conn in self._room_of:
            raise SignalError(protocol.BAD_REQUEST, "this connection already joined a room")
        room = self._rooms.get(nameplate)
        if room is None:
            if not create:
                raise SignalError(
                    protocol.NO_SUCH_CODE, "no such code: nobody is waiting on this nameplate"
                )
            self._check_can_open(conn)
            self._open(conn, nameplate, now, many)
            return [SendTo(conn, protocol.claimed_msg(nameplate, many))]
        if create:
            raise SignalError(protocol.NAMEPLATE_TAKEN, "this nameplate is already in use")
        if room.many:
            return self._join_many(room, conn, now, address)
        if room.paired:
            raise SignalError(protocol.CROWDED, "crowded: two peers are already using this code")
        room.members.append(conn)
        room.last_activity_s = now
        self._room_of[conn] = room
        creator = room.members[0]
        actions: list[Action] = [
            SendTo(conn, protocol.claimed_msg(nameplate)),
            SendTo(creator, protocol.paired_msg()),
            SendTo(conn, protocol.paired_msg()),
        ]
        actions += [SendTo(conn, protocol.relayed_msg(body)) for body in room.pending]
        room.pending.clear()
        return actions

    def relay(self, conn: ConnId, body: str, now: float, to: str | None = None) -> list[Action]:
        """Pass ``body`` to ``conn``'s peer, or hold it until a peer arrives. In many mode
        the creator names the receiver ``to``; a receiver's body goes to the creator."""
        room = self._room_of.get(conn)
        if room is None:
            raise SignalError(protocol.BAD_REQUEST, "join a room before sending messages")
        if room.many:
            return self._relay_many(room, conn, body, now, to)
        if to is not None:
            raise SignalError(protocol.BAD_REQUEST, "'to' is only for rooms in many mode")
        room.messages += 1
        if room.messages > self.max_messages_per_room:
            # The room is spent: the sender of the extra message gets the error, the peer is
            # told that its partner left.
            reason = f"room message limit reached ({self.max_messages_per_room} messages)"
            return self._drop(room, {conn: (protocol.ROOM_LIMIT, reason)})
        room.last_activity_s = now
        if not room.paired:
            room.pending.append(body)
            return []
        peer = room.members[1] if room.members[0] == conn else room.members[0]
        return [SendTo(peer, protocol.relayed_msg(body))]

    def bye(self, conn: ConnId, now: float) -> list[Action]:
        """``conn`` is done: close it normally, drop its room, tell the peer it finished."""
        actions: list[Action] = [CloseConn(conn, protocol.CLOSE_NORMAL, "bye")]
        room = self._room_of.get(conn)
        if room is not None and room.many and conn != room.creator:
            return actions + self._remove_receiver(room, conn)
        self._room_of.pop(conn, None)
        if room is not None:
            room.members.remove(conn)
            actions += self._drop(room, {}, peer_close=(protocol.CLOSE_NORMAL, "peer finished"))
        return actions

    def leave(self, conn: ConnId, now: float) -> list[Action]:
        """``conn`` disconnected: drop its room and tell the peer, if any."""
        room = self._room_of.get(conn)
        if room is None:
            return []
        if room.many and conn != room.creator:
            return self._remove_receiver(room, conn)
        del self._room_of[conn]
        room.members.remove(conn)
        return self._drop(room, {})

    def lock(self, conn: ConnId, now: float) -> list[Action]:
        """Many mode: the creator admits nobody else; later claims get ``closed``."""
        room = self._own_many_room(conn)
        room.locked = True
        return []

    def kick(self, conn: ConnId, side: str, now: float) -> list[Action]:
        """Many mode: the creator closes receiver ``side`` (gone already: nothing to do)."""
        room = self._own_many_room(conn)
        target = room.conn_of.get(side)
        if target is None:
            return []
        self._forget_receiver(room, target)
        return _close_with_error(
            target, protocol.CLOSED, "the sender stopped admitting receivers on this code"
        )

    def expire(self, now: float) -> list[Action]:
        """Drop waiting rooms older than the TTL and paired rooms idle for too long."""
        actions: list[Action] = []
        for room in list(self._rooms.values()):
            if room.many:
                if now - room.created_s >= self.many_room_ttl_s:
                    reason = "expired: this code's time on the server is over"
                    errors = {m: (protocol.EXPIRED, reason) for m in room.members}
                    actions += self._drop(room, errors)
            elif not room.paired and now - room.created_s >= self.room_ttl_s:
                reason = "expired: nobody used this code in time"
                actions += self._drop(room, {m: (protocol.EXPIRED, reason) for m in room.members})
            elif room.paired and now - room.last_activity_s >= self.idle_timeout_s:
                reason = "timeout: no messages for too long"
                actions += self._drop(room, {m: (protocol.TIMEOUT, reason) for m in room.members})
        return actions

    # -- internals -------------------------------------------------------------------------

    def _check_can_open(self, conn: ConnId) -> None:
        if conn in self._room_of:
            raise SignalError(protocol.BAD_REQUEST, "this connection already joined a room")
        if len(self._rooms) >= self.max_rooms:
            raise SignalError(protocol.SERVER_FULL, "server full: too many open rooms, try later")

    def _open(self, conn: ConnId, nameplate: str, now: float, many: bool = False) -> None:
        room = Room(
            nameplate=nameplate, created_s=now, last_activity_s=now, members=[conn], many=many
        )
        self._rooms[nameplate] = room
        self._room_of[conn] = room

    def _own_many_room(self, conn: ConnId) -> Room:
        room = self._room_of.get(conn)
        if room is None or not room.many or conn != room.creator:
            raise SignalError(
                protocol.BAD_REQUEST, "only the creator of a room in many mode may do this"
            )
        return room

    def _join_many(self, room: Room, conn: ConnId, now: float, address: str | None) -> list[Action]:
        if room.locked:
            raise SignalError(
                protocol.CLOSED,
                "closed: the sender no longer admits receivers on this code",
            )
        if len(room.members) - 1 >= self.max_receivers_per_room:
            raise SignalError(
                protocol.CROWDED,
                f"crowded: {self.max_receivers_per_room} receivers already use this code; "
                "try again when one has finished",
            )
        limit = self.max_unproven_per_address
        if address is not None and limit > 0:
            unproven = sum(
                1
                for member, where in room.address_of.items()
                if where == address and room.from_creator[member] < PROVEN_AFTER_CREATOR_BODIES
            )
            if unproven >= limit:
                raise SignalError(
                    protocol.CROWDED,
                    f"crowded: {unproven} receivers from your address are still proving this "
                    "code; try again in a moment",
                )
        side = str(room.next_side)
        room.next_side += 1
        room.members.append(conn)
        room.side_of[conn] = side
        room.conn_of[side] = conn
        room.exchanged[conn] = 0
        room.from_creator[conn] = 0
        if address is not None:
            room.address_of[conn] = address
        room.last_activity_s = now
        self._room_of[conn] = room
        return [
            SendTo(conn, protocol.claimed_msg(room.nameplate)),
            SendTo(room.creator, protocol.joined_msg(side)),
            SendTo(conn, protocol.paired_msg()),
        ]

    def _relay_many(
        self, room: Room, conn: ConnId, body: str, now: float, to: str | None
    ) -> list[Action]:
        if conn == room.creator:
            if to is None:
                raise SignalError(protocol.BAD_REQUEST, "in many mode, say 'to' which receiver")
            receiver = room.conn_of.get(to)
            if receiver is None:
                return []  # it left; the creator has its peer-left or will have it next
            message = protocol.relayed_msg(body)
            room.from_creator[receiver] += 1
        else:
            if to is not None:
                raise SignalError(protocol.BAD_REQUEST, "a receiver's messages go to the sender")
            receiver = conn
            message = protocol.relayed_msg(body, room.side_of[conn])
        room.exchanged[receiver] += 1
        if room.exchanged[receiver] > self.max_messages_per_room:
            # Only this receiver's exchange is spent: the others go on.
            reason = f"room message limit reached ({self.max_messages_per_room} messages)"
            side = room.side_of[receiver]
            self._forget_receiver(room, receiver)
            return [
                *_close_with_error(receiver, protocol.ROOM_LIMIT, reason),
                SendTo(room.creator, protocol.peer_left_msg(side)),
            ]
        room.last_activity_s = now
        target = receiver if conn == room.creator else room.creator
        return [SendTo(target, message)]

    def _forget_receiver(self, room: Room, conn: ConnId) -> str:
        room.members.remove(conn)
        del self._room_of[conn]
        side = room.side_of.pop(conn)
        del room.conn_of[side]
        del room.exchanged[conn]
        del room.from_creator[conn]
        room.address_of.pop(conn, None)
        return side

    def _remove_receiver(self, room: Room, conn: ConnId) -> list[Action]:
        side = self._forget_receiver(room, conn)
        return [SendTo(room.creator, protocol.peer_left_msg(side))]

    def _forget(self, room: Room) -> None:
        del self._rooms[room.nameplate]
        number = int(room.nameplate)
        if number < self._next_number:
            heapq.heappush(self._free_numbers, number)

    def _drop(
        self,
        room: Room,
        errors: dict[ConnId, tuple[ErrorKind, str]],
        peer_close: tuple[int, str] = (protocol.PEER_LEFT.close_code, "peer left"),
    ) -> list[Action]:
        """Forget ``room``; members in ``errors`` get that error, the others get peer-left."""
        self._forget(room)
        actions: list[Action] = []
        for member in list(room.members):
            self._room_of.pop(member, None)
            if member in errors:
                kind, message = errors[member]
                actions += _close_with_error(member, kind, message)
            else:
                actions.append(SendTo(member, protocol.peer_left_msg()))
                actions.append(CloseConn(member, *peer_close))
        return actions


class SlidingWindowLimiter:
    """At most ``limit`` events per key in any ``window_s`` seconds (``limit`` 0: no limit)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        if self.limit <= 0:
            return True
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def prune(self, now: float) -> None:
        """Forget keys with no event in the window, so memory follows current traffic."""
        for key in [k for k, ev in self._events.items() if not ev or now - ev[-1] >= self.window_s]:
            del self._events[key]
