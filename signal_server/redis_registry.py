"""Rooms shared by several ``p2pshare-signal`` instances through Redis (issue 14).

The in-memory :class:`~signal_server.rooms.RoomRegistry` stays the default and the reference;
this adapter implements the same rules (docs/protocol.md, "Rooms") for a cluster, with the
state in Redis and every decision taken atomically by one Lua script (:data:`ROOMS_LUA`).

Delivery goes through Redis **streams**, one inbox per instance (``inbox:<instance>``): the
script that decides (a claim, a relay, a drop) also appends what each member must receive to
the inbox of the instance that holds the member's connection, in the same atomic step, and each
instance reads its own inbox with one blocking ``XREAD``. So every client sees frames in the
order Redis decided them, whichever instance it is on. Streams rather than pub/sub: an instance
that loses its Redis connection for a moment resumes reading after the last entry it handled,
so nothing published meanwhile is lost (pub/sub would drop it, and a lost SDP is a failed
pairing that looks like a lost peer). The inbox is capped (``MAXLEN ~``) and expires an hour
after its instance stops refreshing it.

Keys (all under ``PREFIX``): ``rooms`` (sorted set: nameplate -> deadline in ms: the room's TTL
while it waits, its idle deadline once paired), ``room:<np>`` (hash: ``a`` creator, ``b``
joiner, ``messages``), ``pending:<np>`` (list of bodies sent before pairing), ``low`` (no free
nameplate below it), ``joins:<ip>`` (sorted set of join times, the per-minute limit;
``join-seq`` numbers its members),
``members:<instance>`` (set of the nameplates it holds members of), ``instances`` (sorted set:
instance -> last heartbeat). A member is ``<instance>/<connection id>``.

A crashed instance stops its heartbeat; within :data:`INSTANCE_TIMEOUT_MS` the sweep of any
other instance drops its rooms, frees their nameplates and tells the peers on live instances
that their partner left (``peer-left``, 4007). Rooms past their deadline are dropped the same
way (``expired``, ``timeout``).

``tests/test_rooms_model.py`` runs the same requests against this and the in-memory registry
and compares what each answers.

Not (yet) done here: Redis Cluster (the script touches keys it cannot declare), Redis
Sentinel, and the load benchmark across instances. Deployment: docs/self-hosting.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from signal_server import protocol
from signal_server.protocol import ErrorKind, SignalError
from signal_server.rooms import CloseConn, ConnId

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

PREFIX = "p2pshare:v1:"
INSTANCE_TIMEOUT_MS = 5_000
"""An instance whose heartbeat is older than this is dead: its rooms are dropped."""
INBOX_MAXLEN = 100_000
READ_BLOCK_MS = 1_000
RETRY_S = 0.5
POOL_CONNECTIONS = 16
POOL_WAIT_S = 5.0

ROOMS_LUA = r"""
local P, op, now, inst = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ROOMS = P .. "rooms"

local function inst_of(gid) return string.sub(gid, 1, string.find(gid, "/", 1, true) - 1) end
local function xadd(gid, ...)
  local i = string.find(gid, "/", 1, true)
  redis.call("XADD", P .. "inbox:" .. string.sub(gid, 1, i - 1), "MAXLEN", "~", ARGV[5],
             "*", "to", string.sub(gid, i + 1), ...)
end
local function send(gid, msg) xadd(gid, "msg", msg) end
local function close(gid, code, reason) xadd(gid, "close", code, "reason", reason) end

local function members(np)
  local r = redis.call("HMGET", P .. "room:" .. np, "a", "b")
  local out = {}
  if r[1] then table.insert(out, r[1]) end
  if r[2] then table.insert(out, r[2]) end
  return out
end

local function forget(np, gids)
  redis.call("DEL", P .. "room:" .. np, P .. "pending:" .. np)
  redis.call("ZREM", ROOMS, np)
  for _, gid in ipairs(gids) do redis.call("SREM", P .. "members:" .. inst_of(gid), np) end
  local low = tonumber(redis.call("GET", P .. "low") or "1")
  if tonumber(np) < low then redis.call("SET", P .. "low", np) end
end

-- special: gid -> {msg, code, reason}; skip gets nothing; the others get peer-left.
local function drop(np, special, skip, peer_msg, peer_code, peer_reason)
  local gids = members(np)
  forget(np, gids)
  for _, gid in ipairs(gids) do
    local s = special[gid]
    if s then
      send(gid, s[1]); close(gid, s[2], s[3])
    elseif gid ~= skip then
      send(gid, peer_msg); close(gid, peer_code, peer_reason)
    end
  end
end

local function joins_allowed(ip, limit, gid)
  if limit <= 0 then return true end
  local key = P .. "joins:" .. ip
  redis.call("ZREMRANGEBYSCORE", key, "-inf", now - 60000)
  if redis.call("ZCARD", key) >= limit then return false end
  -- One member per join, even two of one connection in the same millisecond.
  redis.call("ZADD", key, now, now .. ":" .. gid .. ":" .. redis.call("INCR", P .. "join-seq"))
  redis.call("PEXPIRE", key, 61000)
  return true
end

local function open(np, gid, ttl)
  local room = P .. "room:" .. np
  redis.call("HSET", room, "a", gid, "messages", 0)
  redis.call("PEXPIRE", room, ttl + 60000)
  redis.call("ZADD", ROOMS, now + ttl, np)
  redis.call("SADD", P .. "members:" .. inst, np)
end

local function full(max_rooms)
  return max_rooms > 0 and redis.call("ZCARD", ROOMS) >= max_rooms
end

if op == "allocate" then
  -- gid, ip, join_limit, ttl_ms, max_rooms, allocated message with NAMEPLATE
  local gid, ip, limit, ttl, max_rooms = ARGV[6], ARGV[7], tonumber(ARGV[8]),
    tonumber(ARGV[9]), tonumber(ARGV[10])
  if not joins_allowed(ip, limit, gid) then return {"err", "rate-limited"} end
  if full(max_rooms) then return {"err", "server-full"} end
  local n = tonumber(redis.call("GET", P .. "low") or "1")
  while redis.call("ZSCORE", ROOMS, tostring(n)) do n = n + 1 end
  if n > 999999 then return {"err", "server-full"} end
  redis.call("SET", P .. "low", n + 1)
  local np = tostring(n)
  open(np, gid, ttl)
  send(gid, (string.gsub(ARGV[11], "NAMEPLATE", np)))
  return {"ok", np}
elseif op == "claim" then
  -- gid, ip, join_limit, np, create, ttl_ms, idle_ms, max_rooms, claimed, paired
  local gid, ip, limit, np, create = ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10]
  local ttl, idle, max_rooms = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
  if not joins_allowed(ip, limit, gid) then return {"err", "rate-limited"} end
  local room = P .. "room:" .. np
  local r = redis.call("HMGET", room, "a", "b")
  if not redis.call("ZSCORE", ROOMS, np) or not r[1] then
    if create ~= "1" then return {"err", "no-such-code"} end
    if full(max_rooms) then return {"err", "server-full"} end
    open(np, gid, ttl)
    send(gid, ARGV[14])
    return {"ok", np}
  end
  if create == "1" then return {"err", "nameplate-taken"} end
  if r[2] then return {"err", "crowded"} end
  redis.call("HSET", room, "b", gid)
  redis.call("PEXPIRE", room, idle + 60000)
  redis.call("ZADD", ROOMS, now + idle, np)
  redis.call("SADD", P .. "members:" .. inst, np)
  send(gid, ARGV[14]); send(r[1], ARGV[15]); send(gid, ARGV[15])
  for _, body in ipairs(redis.call("LRANGE", P .. "pending:" .. np, 0, -1)) do send(gid, body) end
  redis.call("DEL", P .. "pending:" .. np)
  return {"ok", np}
elseif op == "join" then
  -- gid, ip, join_limit: a join refused before it reaches a room counts all the same
  if not joins_allowed(ARGV[7], tonumber(ARGV[8]), ARGV[6]) then return {"err", "rate-limited"} end
  return {"ok"}
elseif op == "relay" then
  -- gid, np, message, max_messages, idle_ms, limit msg/code/reason, peer msg/code/reason
  local gid, np, message, max, idle = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]),
    tonumber(ARGV[10])
  local room = P .. "room:" .. np
  local r = redis.call("HMGET", room, "a", "b")
  if r[1] ~= gid and r[2] ~= gid then return {"gone"} end
  local count = redis.call("HINCRBY", room, "messages", 1)
  if max > 0 and count > max then
    drop(np, {[gid] = {ARGV[11], ARGV[12], ARGV[13]}}, nil, ARGV[14], ARGV[15], ARGV[16])
    return {"ok"}
  end
  if not r[2] then
    redis.call("RPUSH", P .. "pending:" .. np, message)
    redis.call("PEXPIRE", P .. "pending:" .. np, tonumber(redis.call("PTTL", room)))
    return {"ok"}
  end
  redis.call("ZADD", ROOMS, "XX", now + idle, np)
  redis.call("PEXPIRE", room, idle + 60000)
  send(r[1] == gid and r[2] or r[1], message)
  return {"ok"}
elseif op == "leave" then
  -- gid, np, peer msg/code/reason
  local gid, np = ARGV[6], ARGV[7]
  local r = redis.call("HMGET", P .. "room:" .. np, "a", "b")
  if r[1] ~= gid and r[2] ~= gid then return {"gone"} end
  drop(np, {}, gid, ARGV[8], ARGV[9], ARGV[10])
  return {"ok"}
elseif op == "sweep" then
  -- expired msg/code/reason, timeout msg/code/reason, peer msg/code/reason, instance timeout
  redis.call("ZADD", P .. "instances", now, inst)
  redis.call("PEXPIRE", P .. "inbox:" .. inst, 3600000)
  for _, np in ipairs(redis.call("ZRANGEBYSCORE", ROOMS, "-inf", now, "LIMIT", 0, 1000)) do
    local r = redis.call("HMGET", P .. "room:" .. np, "a", "b")
    local special = {}
    if r[2] then
      special[r[1]] = {ARGV[9], ARGV[10], ARGV[11]}
      special[r[2]] = {ARGV[9], ARGV[10], ARGV[11]}
    elseif r[1] then
      special[r[1]] = {ARGV[6], ARGV[7], ARGV[8]}
    end
    drop(np, special, nil, ARGV[12], ARGV[13], ARGV[14])
  end
  local dead_before = now - tonumber(ARGV[15])
  for _, dead in ipairs(redis.call("ZRANGEBYSCORE", P .. "instances", "-inf", dead_before,
                                   "LIMIT", 0, 100)) do
    for _, np in ipairs(redis.call("SMEMBERS", P .. "members:" .. dead)) do
      local gids = members(np)
      forget(np, gids)
      for _, gid in ipairs(gids) do
        if inst_of(gid) ~= dead then
          send(gid, ARGV[12]); close(gid, ARGV[13], ARGV[14])
        end
      end
    end
    redis.call("DEL", P .. "members:" .. dead, P .. "inbox:" .. dead)
    redis.call("ZREM", P .. "instances", dead)
  end
  -- ARGV[16..]: nameplates this instance believes it holds; answer those Redis no longer has
  local missing = {"ok"}
  for i = 16, #ARGV do
    if not redis.call("ZSCORE", ROOMS, ARGV[i]) then table.insert(missing, ARGV[i]) end
  end
  return missing
end
return redis.error_reply("unknown op " .. op)
"""

_REFUSALS = {
    "rate-limited": (protocol.RATE_LIMITED, "too many codes used from your address; wait a minute"),
    "server-full": (protocol.SERVER_FULL, "server full: too many open rooms, try later"),
    "no-such-code": (protocol.NO_SUCH_CODE, "no such code: nobody is waiting on this nameplate"),
    "nameplate-taken": (protocol.NAMEPLATE_TAKEN, "this nameplate is already in use"),
    "crowded": (protocol.CROWDED, "crowded: two peers are already using this code"),
}
LOST_ROOM = (
    protocol.SERVER_FULL,
    "the server lost this code while its database restarted; start again",
)
UNAVAILABLE = (
    protocol.SERVER_FULL,
    "the server cannot reach its database right now; try again in a moment",
)


@dataclass(frozen=True)
class SendText:
    """Send ``text``, a server message encoded by the instance that decided it, to ``conn``."""

    conn: ConnId
    text: str


Delivery = SendText | CloseConn


class RedisUnavailableError(Exception):
    """Redis cannot be reached (at start: the server does not start)."""


def _error_frames(kind: ErrorKind, reason: str) -> list[str]:
    return [protocol.encode(protocol.error_msg(kind, reason)), str(kind.close_code), reason]


@dataclass
class RedisRooms:
    """The cluster's rooms, seen from one instance. Local connections are plain ids; in Redis
    they are ``<instance>/<id>``. Call :meth:`run` in a task to receive this instance's inbox."""

    redis: Redis
    reader: Redis
    """A second client: the inbox is read with a blocking XREAD that holds its connection."""
    max_rooms: int
    max_messages_per_room: int
    room_ttl_s: float
    idle_timeout_s: float
    joins_per_ip_per_minute: int
    wall_clock: Callable[[], float] = time.time
    instance: str = field(default_factory=lambda: secrets.token_hex(6))
    healthy: bool = True
    _room_of: dict[ConnId, str] = field(default_factory=dict)
    _script: Any = None
    _health_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _unannounced_leaves: dict[ConnId, str] = field(default_factory=dict)
    _recheck: bool = False
    """Set when Redis comes back: the next sweep checks that our rooms survived."""

    def __post_init__(self) -> None:
        self._script = self.redis.register_script(ROOMS_LUA)

    @classmethod
    async def connect(cls, url: str, **limits: Any) -> RedisRooms:
        """Connect and check that Redis answers; raise :class:`RedisUnavailableError`."""
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.exceptions import RedisError

        # Every script runs alone in Redis anyway: a few connections carry any burst, and
        # a burst waits for one instead of failing with "too many connections".
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_S,
            decode_responses=True,
            socket_connect_timeout=5,
        )
        client = Redis(connection_pool=pool)
        reader = Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            await reader.aclose()
            raise RedisUnavailableError(f"cannot reach Redis at {_safe(url)}: {exc}") from None
        rooms = cls(client, reader, **limits)
        await rooms.sweep()  # the heartbeat: other instances see this one from now on
        return rooms

    async def aclose(self) -> None:
        await self.redis.aclose()
        await self.reader.aclose()

    # -- what the server calls -------------------------------------------------------------

    def joined(self, conn: ConnId) -> bool:
        return conn in self._room_of

    def __len__(self) -> int:
        return len(set(self._room_of.values()))

    async def allocate(self, conn: ConnId, ip: str) -> None:
        await self._check_not_joined(conn, ip)
        template = protocol.encode(protocol.allocated_msg("NAMEPLATE"))
        reply = await self._call(
            "allocate",
            self._gid(conn),
            ip,
            self.joins_per_ip_per_minute,
            _ms(self.room_ttl_s),
            self.max_rooms,
            template,
        )
        self._room_of[conn] = self._accepted(reply)

    async def claim(self, conn: ConnId, ip: str, nameplate: str, create: bool) -> None:
        await self._check_not_joined(conn, ip)
        reply = await self._call(
            "claim",
            self._gid(conn),
            ip,
            self.joins_per_ip_per_minute,
            nameplate,
            "1" if create else "0",
            _ms(self.room_ttl_s),
            _ms(self.idle_timeout_s),
            self.max_rooms,
            protocol.encode(protocol.claimed_msg(nameplate)),
            protocol.encode(protocol.paired_msg()),
        )
        self._room_of[conn] = self._accepted(reply)

    async def relay(self, conn: ConnId, body: str) -> None:
        nameplate = self._room_of.get(conn)
        if nameplate is None:
            raise SignalError(protocol.BAD_REQUEST, "join a room before sending messages")
        limit = f"room message limit reached ({self.max_messages_per_room} messages)"
        await self._call(
            "relay",
            self._gid(conn),
            nameplate,
            protocol.encode(protocol.relayed_msg(body)),
            self.max_messages_per_room,
            _ms(self.idle_timeout_s),
            *_error_frames(protocol.ROOM_LIMIT, limit),
            *self._peer_left(),
        )

    async def leave(self, conn: ConnId, *, bye: bool = False) -> None:
        """``conn`` is gone (or said bye): drop its room and tell the peer, wherever it is.
        Without Redis the leave is kept and retried by :meth:`sweep`."""
        nameplate = self._room_of.pop(conn, None)
        if nameplate is None:
            return
        peer = (protocol.CLOSE_NORMAL, "peer finished") if bye else None
        try:
            await self._call("leave", self._gid(conn), nameplate, *self._peer_left(peer))
        except SignalError:
            self._unannounced_leaves[conn] = nameplate
            raise

    async def sweep(self) -> list[ConnId]:
        """Heartbeat, expire rooms past their deadline, reap dead instances' rooms, and retry
        the leaves that failed while Redis was away. After an outage, also return the local
        connections whose rooms Redis no longer has (it restarted empty): their peers can
        never come, and a sender would wait for good. Close them with :data:`LOST_ROOM`."""
        for conn, nameplate in list(self._unannounced_leaves.items()):
            await self._call("leave", self._gid(conn), nameplate, *self._peer_left())
            del self._unannounced_leaves[conn]
        # Redis may come back during this very call (the flag is set then): check next time.
        recheck = self._recheck
        local = sorted(set(self._room_of.values())) if recheck else []
        reply = await self._call(
            "sweep",
            *_error_frames(protocol.EXPIRED, "expired: nobody used this code in time"),
            *_error_frames(protocol.TIMEOUT, "timeout: no messages for too long"),
            *self._peer_left(),
            INSTANCE_TIMEOUT_MS,
            *local,
        )
        if recheck:
            self._recheck = False
        lost = set(reply[1:])
        gone = [conn for conn, nameplate in self._room_of.items() if nameplate in lost]
        for conn in gone:
            del self._room_of[conn]
        return gone

    async def run(self, execute: Callable[[list[Delivery]], None]) -> None:
        """Read this instance's inbox forever and ``execute`` what it says, in order."""
        from redis.exceptions import RedisError

        key = f"{PREFIX}inbox:{self.instance}"
        last = "0-0"
        while True:
            try:
                replies = cast(
                    "list[tuple[str, list[tuple[str, dict[str, str]]]]] | None",
                    await self.reader.xread({key: last}, count=500, block=READ_BLOCK_MS),
                )
            except (RedisError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(RETRY_S)  # a retry interval, not a synchronisation
                continue
            self._back()
            actions: list[Delivery] = []
            for _key, entries in replies or []:
                for entry_id, fields in entries:
                    last = entry_id
                    actions.append(self._action(fields))
            if actions:
                execute(actions)

    # -- internals -------------------------------------------------------------------------

    def _gid(self, conn: ConnId) -> str:
        return f"{self.instance}/{conn}"

    async def _check_not_joined(self, conn: ConnId, ip: str) -> None:
        """Refuse a second room to ``conn``. As in server.py, the request counts against its
        address first (and may be refused as rate-limited instead)."""
        if conn in self._room_of:
            reply = await self._call("join", self._gid(conn), ip, self.joins_per_ip_per_minute)
            if reply[0] == "err":
                raise SignalError(*_REFUSALS[reply[1]])
            raise SignalError(protocol.BAD_REQUEST, "this connection already joined a room")

    def _accepted(self, reply: list[str]) -> str:
        if reply[0] == "err":
            kind, message = _REFUSALS[reply[1]]
            raise SignalError(kind, message)
        return reply[1]

    def _peer_left(self, close: tuple[int, str] | None = None) -> list[str]:
        code, reason = close or (protocol.PEER_LEFT.close_code, "peer left")
        return [protocol.encode(protocol.peer_left_msg()), str(code), reason]

    def _action(self, fields: dict[str, str]) -> Delivery:
        conn = int(fields["to"])
        if "close" in fields:
            # The room is gone for this connection; its handler's leave() has nothing to do.
            self._room_of.pop(conn, None)
            return CloseConn(conn, int(fields["close"]), fields.get("reason", ""))
        return SendText(conn, fields["msg"])

    async def _call(self, op: str, *args: Any) -> list[str]:
        from redis.exceptions import RedisError

        now_ms = int(self.wall_clock() * 1000)
        try:
            reply: list[str] = await self._script(
                keys=[],
                args=[PREFIX, op, now_ms, self.instance, INBOX_MAXLEN, *args],
            )
        except (RedisError, OSError) as exc:
            self._lost(exc)
            raise SignalError(*UNAVAILABLE) from None
        self._back()
        return reply

    async def wait_healthy(self, healthy: bool = True) -> None:
        """Return once Redis is (or, with False, is no longer) reachable from here."""
        while self.healthy != healthy:
            await self._health_changed.wait()

    def _lost(self, exc: BaseException) -> None:
        if self.healthy:
            logger.error("Redis unreachable (%s): refusing new rooms until it is back", exc)
            self._set_health(False)

    def _back(self) -> None:
        if not self.healthy:
            logger.warning("Redis reachable again")
            self._recheck = True
            self._set_health(True)

    def _set_health(self, healthy: bool) -> None:
        self.healthy = healthy
        self._health_changed.set()
        self._health_changed = asyncio.Event()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _safe(url: str) -> str:
    """``url`` without a password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://…@{rest.rpartition('@')[2]}"
