"""Admission of sockets from accept: per-address and total caps, eviction, handshake windows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signal_server.admission import Admission, Admitted, Refused, connection_capacity


def make(capacity: int = 10, per_address: int = 3, timeout: float = 10.0) -> Admission[int]:
    return Admission(capacity, per_address, handshake_timeout_s=timeout, pressure_timeout_s=2.0)


def test_capacity_keeps_a_reserve_of_descriptors() -> None:
    """Under a 1,024 limit with 20 descriptors open, 972 connections fit and 32 stay spare."""
    assert connection_capacity(1024, 20) == 1024 - 20 - 32
    assert connection_capacity(10, 20) == 8


def test_an_address_at_its_share_loses_its_oldest_half_open_connection() -> None:
    """A new connection from a full address pushes out that address's oldest half-open one."""
    adm = make(per_address=3)
    for conn in range(3):
        assert adm.admit(conn, "a", now=conn) == Admitted()
    assert adm.admit(10, "b", now=5) == Admitted()
    assert adm.admit(3, "a", now=6) == Admitted((0,))
    assert adm.count("a") == 3 and adm.count("b") == 1


def test_an_address_whose_connections_all_upgraded_is_refused() -> None:
    """Completed websockets are never pushed out: a fourth from the same address gets 429."""
    adm = make(per_address=3)
    for conn in range(3):
        adm.admit(conn, "a", now=0)
        adm.upgraded(conn)
    decision = adm.admit(3, "a", now=1)
    assert isinstance(decision, Refused) and decision.status == 429
    assert adm.count("a") == 3


def test_half_open_connections_take_at_most_half_the_capacity() -> None:
    """A flood of half-open connections from many addresses recycles half the capacity,
    oldest first, and never touches upgraded connections."""
    adm = make(capacity=10, per_address=0)
    for conn in range(4):
        adm.admit(conn, f"real{conn}", now=0)
        adm.upgraded(conn)
    evicted: list[int] = []
    for conn in range(100, 130):
        decision = adm.admit(conn, f"flood{conn}", now=conn)
        assert isinstance(decision, Admitted)
        evicted += decision.evict
    assert adm.half_open == 5 and adm.open == 9
    assert evicted == list(range(100, 125))


def test_full_of_upgraded_connections_refuses_with_503() -> None:
    """When every socket is an upgraded websocket, a new one is refused (server full)."""
    adm = make(capacity=4, per_address=0)
    for conn in range(4):
        adm.admit(conn, str(conn), now=0)
        adm.upgraded(conn)
    decision = adm.admit(9, "x", now=0)
    assert isinstance(decision, Refused) and decision.status == 503


def test_handshake_window_shrinks_under_pressure() -> None:
    """Half-open connections get the full window normally, the short one under pressure."""
    adm = make(capacity=20, per_address=0, timeout=10.0)
    adm.admit(1, "a", now=0)
    assert adm.overdue(now=5) == []
    assert adm.overdue(now=10) == [1]
    for conn in range(10, 16):  # 6 half-open of a share of 10: pressure
        adm.admit(conn, f"f{conn}", now=100)
    assert adm.under_pressure
    assert adm.overdue(now=101) == []
    assert adm.overdue(now=102) == list(range(10, 16))
    assert adm.open == 0


def test_closing_and_upgrading_are_idempotent() -> None:
    """Forgetting a connection twice, or upgrading a forgotten one, changes nothing."""
    adm = make()
    adm.admit(1, "a", now=0)
    adm.closed(1)
    adm.closed(1)
    adm.upgraded(1)
    assert adm.open == 0 and adm.count("a") == 0


ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "upgrade", "close", "tick"]),
        st.integers(0, 30),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=200,
)


@given(ops, st.integers(2, 12), st.integers(0, 5))
def test_caps_hold_whatever_happens(steps: list[tuple[str, int, str]], cap: int, per: int) -> None:
    """Model check: the total, the half-open share and each address's share are never
    exceeded, and the bookkeeping matches the connections the adapter still holds."""
    adm = make(capacity=cap, per_address=per, timeout=3.0)
    held: dict[int, str] = {}
    now = 0.0
    for op, conn, address in steps:
        if op == "admit" and conn not in held:
            decision = adm.admit(conn, address, now)
            if isinstance(decision, Admitted):
                for old in decision.evict:
                    del held[old]
                held[conn] = address
        elif op == "upgrade":
            adm.upgraded(conn)
        elif op == "close":
            adm.closed(conn)
            held.pop(conn, None)
        else:
            now += 1
            for old in adm.overdue(now):
                del held[old]
        assert adm.open == len(held) <= cap
        assert adm.half_open <= adm.half_open_capacity
        for addr in "abcd":
            assert adm.count(addr) == sum(1 for a in held.values() if a == addr)
            assert not per or adm.count(addr) <= per


def test_a_proxied_connection_is_charged_to_its_client() -> None:
    """Admitted from a trusted proxy without the per-address cap, a connection counts against
    the client its request names; a client at its share is refused, others are not."""
    adm = make(per_address=2)
    for conn in range(4):  # a proxy holds more than one address's share
        assert adm.admit(conn, "proxy", now=0, per_address=False) == Admitted()
        adm.upgraded(conn)
    assert adm.attribute(0, "a") == Admitted()
    assert adm.attribute(1, "a") == Admitted()
    decision = adm.attribute(2, "a")
    assert isinstance(decision, Refused) and decision.status == 429
    assert adm.attribute(3, "b") == Admitted()
    assert (adm.count("a"), adm.count("b"), adm.count("proxy")) == (2, 1, 1)
    adm.closed(2)
    assert adm.count("proxy") == 0 and adm.open == 3


def test_a_proxied_connection_naming_no_client_is_held_to_the_proxys_share() -> None:
    """A trusted proxy's connection that names no usable client stays on the proxy's
    address and under the per-address limit there, instead of escaping every limit."""
    adm = make(per_address=2)
    for conn in range(4):
        assert adm.admit(conn, "proxy", now=0, per_address=False) == Admitted()
        adm.upgraded(conn)
    assert adm.attribute(0, "a") == Admitted()  # named a client: charged to it
    decision = adm.attribute(1, "proxy")  # the proxy holds 3, over its share of 2
    assert isinstance(decision, Refused) and decision.status == 429
    adm.closed(1)
    assert adm.attribute(2, "proxy") == Admitted()  # 2 now: within its share


def test_attributing_a_half_open_connection_evicts_the_clients_oldest_half_open() -> None:
    """A client at its share through the proxy pushes out its own oldest half-open socket,
    never the proxy's other clients."""
    adm = make(per_address=2)
    adm.admit(0, "a", now=0)
    adm.admit(1, "a", now=1)
    adm.admit(2, "proxy", now=2, per_address=False)
    assert adm.attribute(2, "a") == Admitted((0,))
    assert adm.count("a") == 2 and adm.half_open == 2
    assert adm.overdue(now=100) == [1, 2]
    assert adm.open == 0


proxied_ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "via-proxy", "attribute", "upgrade", "close", "tick"]),
        st.integers(0, 30),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=200,
)


@given(proxied_ops, st.integers(2, 12), st.integers(1, 5))
def test_caps_hold_per_client_behind_a_proxy(
    steps: list[tuple[str, int, str]], cap: int, per: int
) -> None:
    """Model check with a trusted proxy: each client's share holds whether it connects
    directly or through the proxy, and the bookkeeping matches what the adapter holds."""
    adm = make(capacity=cap, per_address=per, timeout=3.0)
    held: dict[int, str] = {}
    now = 0.0
    for op, conn, address in steps:
        if op in ("admit", "via-proxy") and conn not in held:
            proxied = op == "via-proxy"
            where = "proxy" if proxied else address
            decision = adm.admit(conn, where, now, per_address=not proxied)
            if isinstance(decision, Admitted):
                for old in decision.evict:
                    del held[old]
                held[conn] = where
        elif op == "attribute" and held.get(conn) == "proxy":
            decision = adm.attribute(conn, address)
            if isinstance(decision, Admitted):
                for old in decision.evict:
                    del held[old]
                held[conn] = address
        elif op == "upgrade":
            adm.upgraded(conn)
        elif op == "close":
            adm.closed(conn)
            held.pop(conn, None)
        elif op == "tick":
            now += 1
            for old in adm.overdue(now):
                del held[old]
        assert adm.open == len(held) <= cap
        assert adm.half_open <= adm.half_open_capacity
        for addr in ("a", "b", "c", "d", "proxy"):
            assert adm.count(addr) == sum(1 for a in held.values() if a == addr)
        for addr in "abcd":
            assert adm.count(addr) <= per
