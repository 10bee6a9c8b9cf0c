"""The rendezvous client's checks on what users type and what servers send."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pshare.errors import PeerLostError, SignallingError
from p2pshare.rendezvous import (
    RendezvousClient,
    check_ice_servers,
    check_nameplate,
    parse_server_url,
)
from signal_server.server import RunningServer
from tests.signal_helpers import FakeClock


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("ws://127.0.0.1:4750", "ws://127.0.0.1:4750"),
        ("wss://signal.example.org", "wss://signal.example.org"),
        ("127.0.0.1:4751", "ws://127.0.0.1:4751"),
        ("localhost:4750", "ws://localhost:4750"),
        ("signal.example.org", "ws://signal.example.org"),
        ("[::1]:4750", "ws://[::1]:4750"),
        ("http://192.168.1.20:41234/", "ws://192.168.1.20:41234/"),
        ("https://signal.example.org/", "wss://signal.example.org/"),
        ("  WS://host:1  ", "ws://host:1"),
    ],
)
def test_server_urls_people_type_are_accepted(typed: str, url: str) -> None:
    """host:port means ws://; http(s):// (the page's address) means ws(s):// on the same origin."""
    assert parse_server_url(typed) == url


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ws://127.0.0.1:99999",
        "127.0.0.1:99999",
        "ws://127.0.0.1:0",
        "ws://host:port",
        "ftp://host:21",
        "ws://",
        "ws://user:pw@host:1",
        "ws://ho st:1",
        "host:1/path",
        "ws:/host",
        "ws://h\u00f6st:1",
        "ws://host:1\x1b[2J",
        "-v",
    ],
)
def test_malformed_server_urls_are_usage_errors(typed: str) -> None:
    """Malformed addresses are refused with a one-line ValueError (the CLI's usage error)."""
    with pytest.raises(ValueError, match="not a rendezvous server address") as info:
        parse_server_url(typed)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


@given(st.text(max_size=12))
def test_only_ascii_nameplates_of_the_documented_form_pass(text: str) -> None:
    """A server's nameplate is 1 to 999999 in ASCII digits, or refused (never ² or ٣)."""
    ok = text.isascii() and text.isdigit() and not text.startswith("0") and len(text) <= 6
    try:
        assert check_nameplate(text) == text and ok
    except SignallingError:
        assert not ok


@pytest.mark.parametrize("digits", ["\u00b2", "\u0663", "1" * 50_000, "0", "\uff11"])
def test_hostile_nameplates_are_refused(digits: str) -> None:
    """Unicode digits and absurd lengths are a server error, not a crash or a long wait."""
    with pytest.raises(SignallingError):
        check_nameplate(digits)


def test_valid_ice_servers_pass_unchanged() -> None:
    """What p2pshare-signal hands out (STUN list, TURN with credentials) is accepted."""
    servers: list[dict[str, object]] = [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": "turn:t.example.org:3478?transport=udp", "username": "1:p", "credential": "c"},
    ]
    assert check_ice_servers(servers) == [
        servers[0],
        {**servers[1], "urls": ["turn:t.example.org:3478?transport=udp"]},
    ]
    assert check_ice_servers(None) == []


@pytest.mark.parametrize(
    "servers",
    [
        [{"urls": 5}],
        [{"urls": []}],
        [{"urls": [5]}],
        [{}],
        "stun:x",
        [["stun:x"]],
        [{"urls": "http://x"}],
        [{"urls": "stun:x:99999"}],
        [{"urls": "stun:x?transport=udp"}],
        [{"urls": "turn:x?transport=tls"}],
        [{"urls": "stun:[::1]"}],
        [{"urls": "turn:x", "username": 5}],
        [{"urls": "turn:x", "credential": ["c"]}],
        [{"urls": "turn:x", "credential": "c" * 10_000}],
        [{"urls": "stun:x"}] * 100,
    ],
)
def test_malformed_ice_servers_are_a_server_error(servers: object) -> None:
    """ICE servers that would crash aiortc later are refused where they enter."""
    with pytest.raises(SignallingError, match="invalid ICE servers"):
        check_ice_servers(servers)


async def test_wss_against_a_plain_server_says_so(signal: RunningServer) -> None:
    """wss:// to a server without TLS says what is wrong, and says it at once."""
    started = time.monotonic()
    with pytest.raises(SignallingError, match="does not speak TLS; try ws://"):
        await RendezvousClient.connect(signal.url.replace("ws://", "wss://"))
    assert time.monotonic() - started < 5


async def test_connecting_to_a_closed_port_is_a_server_error() -> None:
    """Nothing listening: a server error naming the address."""
    with pytest.raises(SignallingError, match="cannot reach the rendezvous server"):
        await RendezvousClient.connect("ws://127.0.0.1:9")


async def _paired(url: str) -> tuple[RendezvousClient, RendezvousClient]:
    a = await RendezvousClient.connect(url)
    b = await RendezvousClient.connect(url)
    await b.claim(await a.allocate())
    await b.wait_paired(5)
    await a.wait_paired(5)
    return a, b


async def test_peer_that_said_bye_is_a_lost_peer_even_while_we_send(
    signal: RunningServer,
) -> None:
    """The server closes us with 1000 when the peer said bye: sending into that is the
    peer's doing (exit 7), not a server error."""
    a, b = await _paired(signal.url)
    await a.close()
    await signal.signal.wait_for_connections(0)
    with pytest.raises(PeerLostError):
        async with asyncio.timeout(5):
            while True:
                await b.send(b"late offer")
                await asyncio.sleep(0)  # let the close frame in


async def test_server_going_away_after_pairing_is_a_server_error(start_signal: Any) -> None:
    """A close that is not about the peer (here the room's idle timeout) is the server's."""
    async with start_signal(idle_timeout_s=30) as running:
        a, b = await _paired(running.url)
        clock = running.signal.clock
        assert isinstance(clock, FakeClock)
        clock.advance(30)
        running.signal.sweep()
        with pytest.raises(SignallingError, match="rendezvous server"):
            await b.receive(5)
        await a.close()
        await b.close()
