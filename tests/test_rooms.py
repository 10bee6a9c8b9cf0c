"""The pure room registry, checked against a simple model by a Hypothesis state machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from signal_server import protocol
from signal_server.protocol import SignalError
from signal_server.rooms import CloseConn, RoomRegistry, SendTo, SlidingWindowLimiter

MAX_ROOMS = 6
TTL_S = 100.0
IDLE_S = 30.0
MAX_RECEIVERS = 3
MANY_TTL_S = 150.0


@dataclass
class ModelRoom:
    members: list[int]
    created: float
    active: float
    pending: list[str] = field(default_factory=list)
    many: bool = False
    locked: bool = False
    sides: dict[str, int] = field(default_factory=dict)
    """Many mode: receiver side -> connection."""
    next_side: int = 1


def _singles(machine: RegistryMachine) -> list[str]:
    return sorted(n for n, r in machine.model.items() if not r.many)


def _manys(machine: RegistryMachine) -> list[str]:
    return sorted(n for n, r in machine.model.items() if r.many)


class RegistryMachine(RuleBasedStateMachine):
    """Random sequences of joins, relays, departures and clock ticks keep the registry sane."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = RoomRegistry(
            max_rooms=MAX_ROOMS,
            max_messages_per_room=1000,
            room_ttl_s=TTL_S,
            idle_timeout_s=IDLE_S,
            max_receivers_per_room=MAX_RECEIVERS,
            many_room_ttl_s=MANY_TTL_S,
        )
        self.model: dict[str, ModelRoom] = {}
        self.now = 0.0
        self.next_conn = 1
        self.closed: set[int] = set()

    def _room_of(self, conn: int) -> str | None:
        return next((n for n, r in self.model.items() if conn in r.members), None)

    def _apply_closes(self, actions: list[SendTo | CloseConn]) -> None:
        for action in actions:
            if isinstance(action, CloseConn):
                self.closed.add(action.conn)

    def _fresh_conn(self) -> int:
        conn = self.next_conn
        self.next_conn += 1
        return conn

    @rule(many=st.booleans())
    def allocate(self, many: bool) -> None:
        conn = self._fresh_conn()
        if len(self.model) >= MAX_ROOMS:
            with pytest.raises(SignalError) as err:
                self.registry.allocate(conn, self.now, many)
            assert err.value.kind is protocol.SERVER_FULL
            return
        actions = self.registry.allocate(conn, self.now, many)
        smallest_free = next(str(i) for i in range(1, 10_000) if str(i) not in self.model)
        assert actions == [SendTo(conn, protocol.allocated_msg(smallest_free, many))]
        self.model[smallest_free] = ModelRoom([conn], self.now, self.now, many=many)

    @rule(number=st.integers(1, 12), create=st.booleans(), many=st.booleans())
    def claim(self, number: int, create: bool, many: bool) -> None:
        conn = self._fresh_conn()
        nameplate = str(number)
        room = self.model.get(nameplate)
        many = many and create
        expected_error = None
        if room is not None and room.many and not create:
            self._join_many(conn, nameplate, room)
            return
        if room is None and not create:
            expected_error = protocol.NO_SUCH_CODE
        elif room is None and len(self.model) >= MAX_ROOMS:
            expected_error = protocol.SERVER_FULL
        elif room is not None and create:
            expected_error = protocol.NAMEPLATE_TAKEN
        elif room is not None and len(room.members) == 2:
            expected_error = protocol.CROWDED
        if expected_error is not None:
            with pytest.raises(SignalError) as err:
                self.registry.claim(conn, nameplate, create, self.now, many)
            assert err.value.kind is expected_error
            return
        actions = self.registry.claim(conn, nameplate, create, self.now, many)
        if room is None:
            self.model[nameplate] = ModelRoom([conn], self.now, self.now, many=many)
            assert actions == [SendTo(conn, protocol.claimed_msg(nameplate, many))]
        else:
            creator = room.members[0]
            room.members.append(conn)
            room.active = self.now
            assert SendTo(creator, protocol.paired_msg()) in actions
            delivered = [
                a.message["body"]
                for a in actions
                if isinstance(a, SendTo) and a.message["type"] == "message"
            ]
            assert delivered == room.pending
            room.pending = []

    def _join_many(self, conn: int, nameplate: str, room: ModelRoom) -> None:
        expected_error = None
        if room.locked:
            expected_error = protocol.CLOSED
        elif len(room.sides) >= MAX_RECEIVERS:
            expected_error = protocol.CROWDED
        if expected_error is not None:
            with pytest.raises(SignalError) as err:
                self.registry.claim(conn, nameplate, False, self.now)
            assert err.value.kind is expected_error
            return
        actions = self.registry.claim(conn, nameplate, False, self.now)
        side = str(room.next_side)
        room.next_side += 1
        room.sides[side] = conn
        room.members.append(conn)
        # The receiver sees a plain pairing; only the creator learns the side.
        assert actions == [
            SendTo(conn, protocol.claimed_msg(nameplate)),
            SendTo(room.members[0], protocol.joined_msg(side)),
            SendTo(conn, protocol.paired_msg()),
        ]

    @precondition(lambda self: bool(_manys(self)))
    @rule(data=st.data(), from_creator=st.booleans(), stale=st.booleans())
    def relay_many(self, data: st.DataObject, from_creator: bool, stale: bool) -> None:
        """Messages inside a many room reach exactly the addressed pair, never another
        receiver."""
        room = self.model[data.draw(st.sampled_from(_manys(self)))]
        creator = room.members[0]
        body = f"m{self.now}"
        if from_creator:
            if stale or not room.sides:
                side = str(room.next_side + 5)  # a receiver that is gone (or never was)
                assert self.registry.relay(creator, body, self.now, side) == []
                return
            side = data.draw(st.sampled_from(sorted(room.sides)))
            actions = self.registry.relay(creator, body, self.now, side)
            assert actions == [SendTo(room.sides[side], protocol.relayed_msg(body))]
        elif room.sides:
            side = data.draw(st.sampled_from(sorted(room.sides)))
            actions = self.registry.relay(room.sides[side], body, self.now)
            assert actions == [SendTo(creator, protocol.relayed_msg(body, side))]
            with pytest.raises(SignalError):
                self.registry.relay(room.sides[side], body, self.now, side)
        else:
            with pytest.raises(SignalError):
                self.registry.relay(creator, body, self.now)  # no 'to' in many mode

    @precondition(lambda self: bool(_manys(self)))
    @rule(data=st.data(), graceful=st.booleans(), kick=st.booleans())
    def receiver_departs(self, data: st.DataObject, graceful: bool, kick: bool) -> None:
        """A receiver leaving (or kicked) affects nobody else; the creator learns its side."""
        room = self.model[data.draw(st.sampled_from(_manys(self)))]
        if not room.sides:
            return
        side = data.draw(st.sampled_from(sorted(room.sides)))
        conn = room.sides.pop(side)
        room.members.remove(conn)
        creator = room.members[0]
        if kick:
            actions = self.registry.kick(creator, side, self.now)
            assert [a.message["code"] for a in actions if isinstance(a, SendTo)] == ["closed"]
            assert all(a.conn == conn for a in actions)
        elif graceful:
            actions = self.registry.bye(conn, self.now)
            assert SendTo(creator, protocol.peer_left_msg(side)) in actions
        else:
            actions = self.registry.leave(conn, self.now)
            assert actions == [SendTo(creator, protocol.peer_left_msg(side))]
        self._apply_closes(actions)
        self.closed.add(conn)
        assert creator not in self.closed

    @precondition(lambda self: bool(_manys(self)))
    @rule(data=st.data())
    def lock(self, data: st.DataObject) -> None:
        """After a lock nobody else gets in; those inside stay."""
        room = self.model[data.draw(st.sampled_from(_manys(self)))]
        assert self.registry.lock(room.members[0], self.now) == []
        room.locked = True
        if room.sides:
            with pytest.raises(SignalError):
                self.registry.lock(next(iter(room.sides.values())), self.now)

    @precondition(lambda self: bool(_singles(self)))
    @rule(data=st.data())
    def relay(self, data: st.DataObject) -> None:
        nameplate = data.draw(st.sampled_from(_singles(self)))
        room = self.model[nameplate]
        conn = data.draw(st.sampled_from(room.members))
        body = f"m{self.now}"
        actions = self.registry.relay(conn, body, self.now)
        room.active = self.now
        if len(room.members) == 2:
            peer = room.members[1 - room.members.index(conn)]
            assert actions == [SendTo(peer, protocol.relayed_msg(body))]
        else:
            assert actions == []
            room.pending.append(body)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), graceful=st.booleans())
    def depart(self, data: st.DataObject, graceful: bool) -> None:
        """A single room's member, or a many room's creator: the room goes for everyone."""
        nameplate = data.draw(st.sampled_from(sorted(self.model)))
        room = self.model.pop(nameplate)
        conn = room.members[0] if room.many else data.draw(st.sampled_from(room.members))
        if graceful:
            actions = self.registry.bye(conn, self.now)
        else:
            actions = self.registry.leave(conn, self.now)
        self._apply_closes(actions)
        for other in room.members:
            if other != conn:
                assert SendTo(other, protocol.peer_left_msg()) in actions
                assert other in self.closed

    @rule(seconds=st.sampled_from([1.0, 29.0, 30.0, 99.0, 100.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        actions = self.registry.expire(self.now)
        self._apply_closes(actions)
        for nameplate, room in list(self.model.items()):
            if room.many:
                if self.now - room.created >= MANY_TTL_S:
                    del self.model[nameplate]
                    assert all(m in self.closed for m in room.members)
                continue
            paired = len(room.members) == 2
            if (not paired and self.now - room.created >= TTL_S) or (
                paired and self.now - room.active >= IDLE_S
            ):
                del self.model[nameplate]
                assert all(m in self.closed for m in room.members)

    @invariant()
    def registry_matches_model(self) -> None:
        assert self.registry.nameplates() == set(self.model)
        for nameplate, room in self.model.items():
            assert 1 <= len(room.members) <= (MAX_RECEIVERS + 1 if room.many else 2)
            for member in room.members:
                found = self.registry.room_of(member)
                assert found is not None and found.nameplate == nameplate
                assert member not in self.closed
        assert len(self.registry) <= MAX_ROOMS


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_sliding_window_limiter_counts_per_key_and_window() -> None:
    """The limiter admits ``limit`` events per key per window and forgets old keys."""
    limiter = SlidingWindowLimiter(2, 60.0)
    assert limiter.allow("a", 0) and limiter.allow("a", 1)
    assert not limiter.allow("a", 59)
    assert limiter.allow("b", 59)
    assert limiter.allow("a", 60)
    limiter.prune(200)
    assert limiter._events == {}
    assert SlidingWindowLimiter(0).allow("x", 0)


def test_each_receiver_of_a_many_room_has_its_own_message_budget() -> None:
    """A receiver that spends its budget is dropped alone; the creator and others go on."""
    registry = RoomRegistry(max_messages_per_room=2)
    registry.allocate(1, 0.0, many=True)
    registry.claim(2, "1", False, 0.0)
    registry.claim(3, "1", False, 0.0)
    assert registry.relay(2, "a", 0.0) == [SendTo(1, protocol.relayed_msg("a", "1"))]
    assert registry.relay(1, "b", 0.0, "1") == [SendTo(2, protocol.relayed_msg("b"))]
    actions = registry.relay(2, "c", 0.0)
    assert SendTo(1, protocol.peer_left_msg("1")) in actions
    assert any(isinstance(a, CloseConn) and a.conn == 2 for a in actions)
    assert registry.relay(3, "d", 0.0) == [SendTo(1, protocol.relayed_msg("d", "2"))]
    assert registry.room_of(1) is registry.room_of(3) is not None
