"""One model for rooms: the same requests against the in-memory ``RoomRegistry`` and against
the Redis rooms of two instances sharing a real redis-server, compared after every step.

The in-memory registry is the reference (docs/protocol.md, "Rooms"); the Lua script of
``signal_server/redis_registry.py`` restates its rules. A Hypothesis state machine plays what
``server.py`` does with each: the joins-per-address limit, a refused request (the error, then
the connection closes and the handler's ``leave``), ``bye``, disconnects, and the clock (the
registry's ``expire`` against each instance's ``sweep``). What every connection receives, in
order, what each refusal says, which connections are in a room and which nameplates are taken
must be the same on both sides. The clock is passed in: ``now=`` to the registry, the same
``now`` as each instance's ``wall_clock``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from signal_server import protocol
from signal_server.protocol import SignalError
from signal_server.redis_registry import PREFIX, Delivery, RedisRooms, SendText
from signal_server.rooms import Action, CloseConn, RoomRegistry, SendTo, SlidingWindowLimiter
from tests.redis_helpers import REDIS_SERVER, redis_server

# scripts/install-system-deps installs redis-server: its absence is a failure, not a skip.
assert REDIS_SERVER is not None, "redis-server is missing: run scripts/install-system-deps"

MAX_ROOMS = 4
MAX_MESSAGES = 2
TTL_S = 8.0
IDLE_S = 3.0
JOINS_PER_MINUTE = 8
ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")
SETTLE_S = 10.0
"""How long an instance may take to read its own inbox (a failure, not a wait)."""

T = TypeVar("T")
Seen = tuple[Any, ...]
"""What a connection saw: ("send", text) or ("close", code, reason)."""


def _from_memory(actions: Sequence[Action]) -> list[tuple[int, Seen]]:
    out: list[tuple[int, Seen]] = []
    for action in actions:
        if isinstance(action, SendTo):
            out.append((action.conn, ("send", protocol.encode(action.message))))
        else:
            out.append((action.conn, ("close", action.code, action.reason)))
    return out


def _from_redis(actions: Sequence[Delivery]) -> list[tuple[int, Seen]]:
    out: list[tuple[int, Seen]] = []
    for action in actions:
        if isinstance(action, SendText):
            out.append((action.conn, ("send", action.text)))
        else:
            out.append((action.conn, ("close", action.code, action.reason)))
    return out


def _by_conn(seen: list[tuple[int, Seen]]) -> dict[int, list[Seen]]:
    out: dict[int, list[Seen]] = defaultdict(list)
    for conn, item in seen:
        out[conn].append(item)
    return dict(out)


class RoomsAgree(RuleBasedStateMachine):
    """Random joins, relays, byes, disconnects and clock ticks, on both registries at once."""

    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = 1_000.0
        self.memory = RoomRegistry(
            max_rooms=MAX_ROOMS,
            max_messages_per_room=MAX_MESSAGES,
            room_ttl_s=TTL_S,
            idle_timeout_s=IDLE_S,
        )
        self.joins = SlidingWindowLimiter(JOINS_PER_MINUTE)
        self.admin: Redis = Redis.from_url(self.url, decode_responses=True)
        self._run(self.admin.flushall())
        self.instances: list[RedisRooms] = []
        self.delivered: list[list[Delivery]] = []
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        for number in range(2):
            rooms = self._run(
                RedisRooms.connect(
                    self.url,
                    max_rooms=MAX_ROOMS,
                    max_messages_per_room=MAX_MESSAGES,
                    room_ttl_s=TTL_S,
                    idle_timeout_s=IDLE_S,
                    joins_per_ip_per_minute=JOINS_PER_MINUTE,
                    wall_clock=lambda: self.now,
                )
            )
            self.instances.append(rooms)
            self.delivered.append([])
            self.tasks.append(self.loop.create_task(rooms.run(self._collector(number))))
        self.taken = [0, 0]
        """Deliveries of each instance already compared."""
        self.next_conn = 1
        self.open: list[int] = []

    def _run(self, awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        return self.loop.run_until_complete(run())

    def _collector(self, number: int) -> Any:
        def execute(actions: list[Delivery]) -> None:
            self.delivered[number].extend(actions)
            self.changed.set()

        return execute

    def teardown(self) -> None:
        for rooms in self.instances:
            self._run(rooms.aclose())
        # A cancelled blocking XREAD can surface in run() as a connection error, which it
        # retries: cancel until every reader has ended.
        while not all(task.done() for task in self.tasks):
            for task in self.tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.wait(self.tasks, timeout=1.0))
        self._run(self.admin.aclose())
        self.loop.close()

    # -- the two sides of one request ---------------------------------------------------------

    def _instance(self, conn: int) -> RedisRooms:
        return self.instances[conn % 2]

    @staticmethod
    def _address(conn: int) -> str:
        return ADDRESSES[(conn // 2) % len(ADDRESSES)]

    async def _settled(self) -> list[tuple[int, Seen]]:
        """What the instances' inboxes delivered since the last call, once each has read
        everything Redis holds for it."""
        out: list[tuple[int, Seen]] = []
        async with asyncio.timeout(SETTLE_S):
            for number, rooms in enumerate(self.instances):
                target = await self.admin.xlen(f"{PREFIX}inbox:{rooms.instance}")
                while len(self.delivered[number]) < target:
                    self.changed.clear()
                    await self.changed.wait()
                out += _from_redis(self.delivered[number][self.taken[number] :])
                self.taken[number] = len(self.delivered[number])
        return out

    def _both(
        self, memory: Any, redis: Any, extra: Sequence[Delivery] = ()
    ) -> tuple[Seen | None, list[tuple[int, Seen]]]:
        """Run one request on each side; compare the refusals and what everyone received.
        ``memory`` is a function returning actions, ``redis`` a coroutine function; ``extra``
        is what server.py sends itself before the cluster's call."""
        try:
            expected: Seen | None = None
            seen_memory = _from_memory(memory())
        except SignalError as exc:
            expected, seen_memory = (exc.kind.name, exc.message), []
        try:
            refused: Seen | None = None
            self._run(redis())
        except SignalError as exc:
            refused = (exc.kind.name, exc.message)
        seen_redis = _from_redis(extra) + self._run(self._settled())
        assert refused == expected
        assert _by_conn(seen_redis) == _by_conn(seen_memory)
        return expected, seen_memory

    def _after(self, conn: int | None, outcome: tuple[Seen | None, list[tuple[int, Seen]]]) -> None:
        """As server.py: a refused request closes its connection; a closed connection's
        handler leaves (on both sides), which may close others."""
        refused, seen = outcome
        closing = [c for c, item in seen if item[0] == "close"]
        if refused is not None and conn is not None:
            closing.append(conn)
        for gone in closing:
            if gone in self.open:
                self.open.remove(gone)
                self._after(None, self._leave(gone))

    def _leave(self, conn: int) -> tuple[Seen | None, list[tuple[int, Seen]]]:
        rooms = self._instance(conn)
        return self._both(lambda: self.memory.leave(conn, self.now), lambda: rooms.leave(conn))

    def _join(self, conn: int, memory: Any, redis: Any) -> None:
        def memory_join() -> list[Action]:
            if not self.joins.allow(self._address(conn), self.now):
                raise SignalError(
                    protocol.RATE_LIMITED, "too many codes used from your address; wait a minute"
                )
            result: list[Action] = memory()
            return result

        self._after(conn, self._both(memory_join, redis))

    def _fresh(self) -> int:
        conn = self.next_conn
        self.next_conn += 1
        self.open.append(conn)
        return conn

    def _pick(self, index: int) -> int:
        return self.open[index % len(self.open)]

    # -- rules --------------------------------------------------------------------------------

    @rule()
    def allocate(self) -> None:
        conn = self._fresh()
        rooms, ip = self._instance(conn), self._address(conn)
        self._join(
            conn, lambda: self.memory.allocate(conn, self.now), lambda: rooms.allocate(conn, ip)
        )

    @rule(number=st.integers(1, 5), create=st.booleans())
    def claim(self, number: int, create: bool) -> None:
        conn = self._fresh()
        rooms, ip, nameplate = self._instance(conn), self._address(conn), str(number)
        self._join(
            conn,
            lambda: self.memory.claim(conn, nameplate, create, self.now),
            lambda: rooms.claim(conn, ip, nameplate, create),
        )

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50), number=st.integers(1, 6))
    def join_again(self, index: int, number: int) -> None:
        """A connection already in a room asks for another (a bad request)."""
        conn = self._pick(index)
        rooms, ip = self._instance(conn), self._address(conn)
        self._join(
            conn,
            lambda: self.memory.claim(conn, str(number), False, self.now),
            lambda: rooms.claim(conn, ip, str(number), False),
        )

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50), body=st.sampled_from(["pake", "sdp", "x" * 40]))
    def send(self, index: int, body: str) -> None:
        conn = self._pick(index)
        rooms = self._instance(conn)
        outcome = self._both(
            lambda: self.memory.relay(conn, body, self.now), lambda: rooms.relay(conn, body)
        )
        self._after(conn, outcome)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50))
    def bye(self, index: int) -> None:
        conn = self._pick(index)
        rooms = self._instance(conn)
        closed = CloseConn(conn, protocol.CLOSE_NORMAL, "bye")  # what server.py sends itself
        outcome = self._both(
            lambda: self.memory.bye(conn, self.now),
            lambda: rooms.leave(conn, bye=True),
            extra=[closed],
        )
        self._after(conn, outcome)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50))
    def disconnect(self, index: int) -> None:
        conn = self._pick(index)
        self.open.remove(conn)
        self._after(None, self._leave(conn))

    @rule(half_seconds=st.integers(1, 8))
    def tick(self, half_seconds: int) -> None:
        """Time passes (at most 4 s: within INSTANCE_TIMEOUT_MS both instances sweep, so
        neither looks dead to the other); rooms past their TTL or idle time are dropped."""
        self.now += half_seconds / 2

        def memory() -> list[Action]:
            self.joins.prune(self.now)
            return self.memory.expire(self.now)

        async def redis() -> None:
            for rooms in self.instances:
                assert await rooms.sweep() == []

        self._after(None, self._both(memory, redis))

    # -- after every step ---------------------------------------------------------------------

    @invariant()
    def same_rooms(self) -> None:
        """The same nameplates are taken, and the same connections are in a room."""
        taken = set(self._run(self.admin.zrange(f"{PREFIX}rooms", 0, -1)))
        assert taken == self.memory.nameplates()
        for conn in self.open:
            in_memory = self.memory.room_of(conn) is not None
            assert self._instance(conn).joined(conn) == in_memory, conn


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.mark.timeout(300)  # ~20-30 s alone; more on a machine busy with other suites
def test_memory_and_redis_rooms_answer_alike(redis_url: str) -> None:
    """Every sequence of requests and clock ticks gets the same refusals, deliveries (per
    connection, in order), room memberships and taken nameplates from RoomRegistry and from
    two Redis instances."""
    RoomsAgree.url = redis_url
    run_state_machine_as_test(
        RoomsAgree,
        settings=settings(max_examples=50, stateful_step_count=40, deadline=None),
    )
