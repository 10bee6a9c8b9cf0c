"""Who may hold a socket of the server: connections counted from accept, by address. Pure.

Every accepted TCP connection costs a file descriptor, long before it completes a websocket
upgrade (if it ever does). A flood of half-open upgrades, from one address or many, would
otherwise hold every descriptor and lock out everyone, ``/healthz`` included. So:

- A connection is counted from the moment it is accepted, against its address and the total.
- The total stays below the descriptor limit by a reserve (see :func:`connection_capacity`),
  so ``accept()`` never fails with EMFILE and the server can still open what it needs.
- Half-open connections (not yet upgraded, not yet answered) may take at most half of the
  capacity: a flood cannot push out established websockets.
- When a new connection finds its address, the half-open share or the total full, the
  *oldest half-open* connection (of that address, if the address is full) makes room for it.
  A real client finishes its handshake within milliseconds and leaves the half-open set at
  once; a flood's connections never do, so they are the ones that age and go first.
- Under pressure (the half-open share more than half used) the handshake window shrinks
  from ``handshake_timeout_s`` to ``pressure_timeout_s``.

Behind a reverse proxy (``--trusted-proxy``) the address at accept is the proxy's, shared by
every user. Such a connection is admitted without the per-address limit (still within the
total and the half-open share) and is charged to its client once the request names it
(:meth:`Admission.attribute`, see :mod:`signal_server.client_address`): a trusted proxy has
already read the whole request, so what a flood of half-open connections through it costs is
the proxy's to bound.

The server's adapter (``server.py``) calls :meth:`Admission.admit` from ``connection_made``,
:meth:`Admission.upgraded` once the handshake is done, :meth:`Admission.closed` from
``connection_lost``, and aborts what :meth:`Admission.overdue` returns, once a second.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Conn = TypeVar("Conn")

RESERVED_FDS = 32
"""Descriptors never used for connections: log files, DNS, a TURN secret file, the listening
sockets of a restart, and the margin between counting and the kernel's own accounting."""


def connection_capacity(nofile_limit: int, open_fds: int, reserve: int = RESERVED_FDS) -> int:
    """How many connections fit under the descriptor limit, keeping ``reserve`` spare."""
    return max(8, nofile_limit - open_fds - reserve)


@dataclass(frozen=True)
class Admitted(Generic[Conn]):
    """The connection may stay; ``evict`` must be aborted first to make room for it."""

    evict: tuple[Conn, ...] = ()


@dataclass(frozen=True)
class Refused:
    """The connection must be closed at once; ``reason`` is for the client and the log."""

    reason: str
    status: int
    """HTTP status to answer with: 429 for one address's share, 503 for the server's."""


@dataclass
class _Entry:
    address: str
    accepted_at: float
    half_open: bool = True


@dataclass
class Admission(Generic[Conn]):
    capacity: int
    """Connections open at once, half-open or upgraded; see :func:`connection_capacity`."""
    per_address: int
    """Connections one address may hold (0: no per-address limit)."""
    handshake_timeout_s: float
    pressure_timeout_s: float = 2.0
    _entries: dict[Conn, _Entry] = field(default_factory=dict)
    _half_open: dict[Conn, None] = field(default_factory=dict)
    """Half-open connections, oldest first (dicts keep insertion order)."""
    _half_open_by_address: dict[str, dict[Conn, None]] = field(default_factory=dict)
    _by_address: Counter[str] = field(default_factory=Counter)

    @property
    def half_open_capacity(self) -> int:
        return max(1, self.capacity // 2)

    @property
    def open(self) -> int:
        return len(self._entries)

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    @property
    def under_pressure(self) -> bool:
        return self.half_open > self.half_open_capacity // 2

    def count(self, address: str) -> int:
        return self._by_address[address]

    def admit(
        self, conn: Conn, address: str, now: float, *, per_address: bool = True
    ) -> Admitted[Conn] | Refused:
        """A connection was just accepted from ``address``; ``per_address=False`` for a
        trusted proxy's, whose client is not known yet (see :meth:`attribute`)."""
        evict: list[Conn] = []
        if per_address:
            refused = self._make_room_for(address, evict)
            if refused is not None:
                return refused
        if self.open >= self.capacity or self.half_open >= self.half_open_capacity:
            oldest = self._oldest_half_open(None)
            if oldest is None:
                return Refused("the server is full; try again later", 503)
            evict.append(oldest)
            self._forget(oldest)
        self._entries[conn] = _Entry(address, now)
        self._half_open[conn] = None
        self._half_open_by_address.setdefault(address, {})[conn] = None
        self._by_address[address] += 1
        return Admitted(tuple(evict))

    def attribute(self, conn: Conn, address: str) -> Admitted[Conn] | Refused:
        """The connection (admitted from a trusted proxy) serves the client at ``address``:
        from now on it counts against that address's share. Refused: close it; it is still
        counted until :meth:`closed`, under its old address."""
        entry = self._entries.get(conn)
        if entry is None:
            return Admitted()
        if entry.address == address:
            # A trusted proxy's connection that names no usable client stays charged to the
            # proxy: under the per-address limit then, like anyone's (it counts itself).
            if self.per_address and self._by_address[address] > self.per_address:
                return Refused("too many connections from your address", 429)
            return Admitted()
        evict: list[Conn] = []
        refused = self._make_room_for(address, evict)
        if refused is not None:
            return refused
        self._by_address[entry.address] -= 1
        if not self._by_address[entry.address]:
            del self._by_address[entry.address]
        if entry.half_open:  # the server attributes after upgraded(); kept correct anyway
            pool = self._half_open_by_address[entry.address]
            del pool[conn]
            if not pool:
                del self._half_open_by_address[entry.address]
            self._half_open_by_address.setdefault(address, {})[conn] = None
        entry.address = address
        self._by_address[address] += 1
        return Admitted(tuple(evict))

    def _make_room_for(self, address: str, evict: list[Conn]) -> Refused | None:
        """Apply the per-address limit to one more connection from ``address``: evict that
        address's oldest half-open connection if it is full, or refuse."""
        if self.per_address and self._by_address[address] >= self.per_address:
            oldest = self._oldest_half_open(address)
            if oldest is None:
                return Refused("too many connections from your address", 429)
            evict.append(oldest)
            self._forget(oldest)
        return None

    def upgraded(self, conn: Conn) -> None:
        """The connection completed its websocket handshake (or got its HTTP answer)."""
        entry = self._entries.get(conn)
        if entry is not None and entry.half_open:
            entry.half_open = False
            self._drop_half_open(conn, entry.address)

    def closed(self, conn: Conn) -> None:
        """The connection is gone (whoever closed it); forgetting twice is harmless."""
        if conn in self._entries:
            self._forget(conn)

    def overdue(self, now: float) -> list[Conn]:
        """Half-open connections past their handshake window, oldest first; forgotten here."""
        window = self.pressure_timeout_s if self.under_pressure else self.handshake_timeout_s
        late: list[Conn] = []
        for conn in self._half_open:
            if now - self._entries[conn].accepted_at < window:
                break  # the rest are younger
            late.append(conn)
        for conn in late:
            self._forget(conn)
        return late

    def _oldest_half_open(self, address: str | None) -> Conn | None:
        pool = self._half_open if address is None else self._half_open_by_address.get(address, {})
        return next(iter(pool), None)

    def _drop_half_open(self, conn: Conn, address: str) -> None:
        self._half_open.pop(conn, None)
        pool = self._half_open_by_address.get(address)
        if pool is not None:
            pool.pop(conn, None)
            if not pool:
                del self._half_open_by_address[address]

    def _forget(self, conn: Conn) -> None:
        entry = self._entries.pop(conn)
        if entry.half_open:
            self._drop_half_open(conn, entry.address)
        self._by_address[entry.address] -= 1
        if not self._by_address[entry.address]:
            del self._by_address[entry.address]
