"""Choosing the client's address behind a trusted proxy (X-Forwarded-For), as pure logic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signal_server.client_address import (
    TrustedProxies,
    normalize,
    parse_address,
    parse_network,
    split_specs,
)

PROXIES = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


def test_an_untrusted_peer_is_the_client_whatever_its_header_says() -> None:
    """From an address that is not a trusted proxy, X-Forwarded-For is ignored."""
    assert PROXIES.client_address("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"
    assert TrustedProxies().client_address("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_a_trusted_proxy_names_the_client() -> None:
    """From a trusted proxy, the header's last address is the client."""
    assert PROXIES.client_address("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"


def test_the_right_most_untrusted_address_wins_over_a_forged_prefix() -> None:
    """Entries a client forged stand left of what the proxies appended: never chosen."""
    header = ["192.0.2.66, 203.0.113.9, 10.1.2.3"]
    assert PROXIES.client_address("127.0.0.1", header) == "203.0.113.9"


def test_several_header_lines_read_as_one_list() -> None:
    """Repeated X-Forwarded-For lines are one list, in order."""
    assert PROXIES.client_address("127.0.0.1", ["192.0.2.66", "203.0.113.9, 10.0.0.5"]) == (
        "203.0.113.9"
    )


def test_without_a_header_the_proxy_is_the_client() -> None:
    """A trusted proxy's own request (a health check) counts under its address."""
    assert PROXIES.client_address("127.0.0.1", []) == "127.0.0.1"


def test_every_hop_trusted_gives_the_left_most() -> None:
    """A client inside a trusted network is still told apart from its proxy."""
    assert PROXIES.client_address("127.0.0.1", ["10.9.9.9, 10.0.0.5"]) == "10.9.9.9"


@pytest.mark.parametrize("garbage", ["unknown", "", "_hidden", "999.1.1.1", "1.2.3.4:x"])
def test_an_unreadable_entry_stops_at_the_nearest_trusted_hop(garbage: str) -> None:
    """An entry that is not an address is never believed, and nothing left of it is."""
    assert PROXIES.client_address("127.0.0.1", [f"203.0.113.9, {garbage}"]) == "127.0.0.1"
    header = [f"203.0.113.9, {garbage}, 10.0.0.5"]
    assert PROXIES.client_address("127.0.0.1", header) == "10.0.0.5"


def test_ports_brackets_and_mapped_addresses_are_read() -> None:
    """Proxies that add ports or bracket IPv6, and dual-stack sockets, give plain addresses."""
    assert parse_address("203.0.113.9:51000") == parse_address("203.0.113.9")
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address("[2001:db8::1]")) == "2001:db8::1"
    assert normalize("::ffff:127.0.0.1") == "127.0.0.1"
    assert PROXIES.trusts("::ffff:127.0.0.1")
    assert PROXIES.client_address("::ffff:127.0.0.1", ["::ffff:203.0.113.9"]) == "203.0.113.9"
    assert PROXIES.client_address("fd00::1", ["2001:db8::5"]) == "2001:db8::5"


def test_networks_are_parsed_strictly_with_a_clear_message() -> None:
    """A single address is a /32 or /128; host bits set or garbage are refused, named."""
    assert str(parse_network("127.0.0.1")) == "127.0.0.1/32"
    assert str(parse_network("::1")) == "::1/128"
    assert str(parse_network("::ffff:10.0.0.0/104")) == "10.0.0.0/8"
    with pytest.raises(ValueError, match=r"host bits set; did you mean 10\.0\.0\.0/8"):
        parse_network("10.0.0.1/8")
    with pytest.raises(ValueError, match=r"not an address or network: 'proxy\.local'"):
        parse_network("proxy.local")


def test_the_environment_form_splits_on_commas_and_spaces() -> None:
    """P2PSHARE_TRUSTED_PROXY="127.0.0.1, ::1  10.0.0.0/8" names three networks."""
    assert split_specs(" 127.0.0.1, ::1  10.0.0.0/8,") == ["127.0.0.1", "::1", "10.0.0.0/8"]


addresses = st.ip_addresses(v=4).map(str)


@given(st.lists(addresses, max_size=6), addresses, st.integers(0, 5))
def test_the_choice_is_never_left_of_an_untrusted_hop(
    forged: list[str], client: str, trusted_hops: int
) -> None:
    """Property: whatever a client forges, the address chosen is the one the first trusted
    proxy saw (or a hop right of it), never anything the client wrote."""
    proxies = TrustedProxies.parse(["10.0.0.0/8"])
    if proxies.trusts(client):
        return
    hops = [f"10.0.0.{i + 1}" for i in range(trusted_hops)]
    header = [", ".join([*forged, client, *hops])]
    assert proxies.client_address("10.255.0.1", header) == client
