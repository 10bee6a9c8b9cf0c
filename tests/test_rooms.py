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


@dataclass
class ModelRoom:
    members: list[int]
    created: float
    active: float
    pending: list[str] = field(default_factory=list)


class RegistryMachine(RuleBasedStateMachine):
    """Random sequences of joins, relays, departures and clock ticks keep the registry sane."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = RoomRegistry(
            max_rooms=MAX_ROOMS,
            max_messages_per_room=1000,
            room_ttl_s=TTL_S,
            idle_timeout_s=IDLE_S,
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

    @rule()
    def allocate(self) -> None:
        conn = self._fresh_conn()
        if len(self.model) >= MAX_ROOMS:
            with pytest.raises(SignalError) as err:
                self.registry.allocate(conn, self.now)
            assert err.value.kind is protocol.SERVER_FULL
            return
        actions = self.registry.allocate(conn, self.now)
        smallest_free = next(str(i) for i in range(1, 10_000) if str(i) not in self.model)
        assert actions == [SendTo(conn, protocol.allocated_msg(smallest_free))]
        self.model[smallest_free] = ModelRoom([conn], self.now, self.now)

    @rule(number=st.integers(1, 12), create=st.booleans())
    def claim(self, number: int, create: bool) -> None:
        conn = self._fresh_conn()
        nameplate = str(number)
        room = self.model.get(nameplate)
        expected_error = None
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
                self.registry.claim(conn, nameplate, create, self.now)
            assert err.value.kind is expected_error
            return
        actions = self.registry.claim(conn, nameplate, create, self.now)
        if room is None:
            self.model[nameplate] = ModelRoom([conn], self.now, self.now)
            assert actions == [SendTo(conn, protocol.claimed_msg(nameplate))]
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

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def relay(self, data: st.DataObject) -> None:
        nameplate = data.draw(st.sampled_from(sorted(self.model)))
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
        nameplate = data.draw(st.sampled_from(sorted(self.model)))
        room = self.model.pop(nameplate)
        conn = data.draw(st.sampled_from(room.members))
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
            assert 1 <= len(room.members) <= 2
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
