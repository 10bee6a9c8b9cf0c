"""The rendezvous server over real websockets: pairing, relaying, limits, and garbage."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from signal_server.server import RunningServer
from tests.signal_helpers import (
    FakeClock,
    expect_close,
    make_pair,
    open_client,
    recv_json,
    send_json,
)


async def test_allocate_then_claim_pairs_and_relays_both_ways(signal: RunningServer) -> None:
    """A sender allocates, a receiver claims, and messages flow both ways."""
    a, b, nameplate = await make_pair(signal.url)
    assert nameplate == "1"
    await send_json(a, {"type": "send", "body": "offer"})
    assert await recv_json(b) == {"type": "message", "body": "offer"}
    await send_json(b, {"type": "send", "body": "answer"})
    assert await recv_json(a) == {"type": "message", "body": "answer"}


async def test_chosen_nameplate_pairs(signal: RunningServer) -> None:
    """A sender can open a room under a nameplate of its choosing (claim with create)."""
    a = await open_client(signal.url)
    await send_json(a, {"type": "claim", "nameplate": "4242", "create": True})
    assert await recv_json(a) == {"type": "claimed", "nameplate": "4242"}
    b = await open_client(signal.url)
    await send_json(b, {"type": "claim", "nameplate": "4242"})
    assert (await recv_json(b))["type"] == "claimed"
    assert await recv_json(b) == {"type": "paired"}
    assert await recv_json(a) == {"type": "paired"}


async def test_messages_sent_before_pairing_are_delivered_in_order(signal: RunningServer) -> None:
    """What the creator sends while waiting is held and delivered right after pairing."""
    a = await open_client(signal.url)
    await send_json(a, {"type": "allocate"})
    nameplate = (await recv_json(a))["nameplate"]
    for i in range(3):
        await send_json(a, {"type": "send", "body": f"early {i}"})
    b = await open_client(signal.url)
    await send_json(b, {"type": "claim", "nameplate": nameplate})
    seen = [await recv_json(b) for _ in range(5)]
    assert seen[:2] == [{"type": "claimed", "nameplate": nameplate}, {"type": "paired"}]
    assert [m["body"] for m in seen[2:]] == ["early 0", "early 1", "early 2"]


async def test_allocation_hands_out_smallest_free_nameplate(signal: RunningServer) -> None:
    """Nameplates stay short: a freed number is handed out again before larger ones."""
    clients = []
    for expected in ("1", "2", "3"):
        ws = await open_client(signal.url)
        await send_json(ws, {"type": "allocate"})
        assert (await recv_json(ws))["nameplate"] == expected
        clients.append(ws)
    await clients[1].close()
    await signal.signal.wait_for_connections(2)
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "allocate"})
    assert (await recv_json(ws))["nameplate"] == "2"


async def test_third_peer_gets_crowded(signal: RunningServer) -> None:
    """A third client on a paired nameplate is refused, and the pair keeps working."""
    a, b, nameplate = await make_pair(signal.url)
    c = await open_client(signal.url)
    await send_json(c, {"type": "claim", "nameplate": nameplate})
    code, _reason, seen = await expect_close(c)
    assert code == 4002
    assert seen[0]["code"] == "crowded"
    await send_json(a, {"type": "send", "body": "still here"})
    assert await recv_json(b) == {"type": "message", "body": "still here"}


async def test_unknown_nameplate_fails_at_once(signal: RunningServer) -> None:
    """A typo in the code is reported immediately as no-such-code."""
    c = await open_client(signal.url)
    await send_json(c, {"type": "claim", "nameplate": "777"})
    code, _, seen = await expect_close(c)
    assert code == 4001
    assert seen == [{"type": "error", "code": "no-such-code", "message": seen[0]["message"]}]


async def test_creating_a_taken_nameplate_is_refused(signal: RunningServer) -> None:
    """Two senders cannot choose the same nameplate at once."""
    a = await open_client(signal.url)
    await send_json(a, {"type": "claim", "nameplate": "9", "create": True})
    await recv_json(a)
    b = await open_client(signal.url)
    await send_json(b, {"type": "claim", "nameplate": "9", "create": True})
    code, _, seen = await expect_close(b)
    assert code == 4003 and seen[0]["code"] == "nameplate-taken"


async def test_nameplate_is_single_use(signal: RunningServer) -> None:
    """Once a pair has used a nameplate and left, the same words cannot be reused to join it."""
    a, b, nameplate = await make_pair(signal.url)
    await a.close()
    assert (await expect_close(b))[0] == 4007
    c = await open_client(signal.url)
    await send_json(c, {"type": "claim", "nameplate": nameplate})
    assert (await expect_close(c))[0] == 4001


async def test_relay_keeps_order(signal: RunningServer) -> None:
    """Messages arrive in the order they were sent."""
    a, b, _ = await make_pair(signal.url)
    for i in range(50):
        await send_json(a, {"type": "send", "body": str(i)})
    assert [(await recv_json(b))["body"] for _ in range(50)] == [str(i) for i in range(50)]


async def test_oversized_message_closes_only_its_sender(start_signal: Any) -> None:
    """A frame over the size cap closes that client with 1009; the peer learns it left."""
    async with start_signal(max_message_bytes=1024) as signal:
        a, b, _ = await make_pair(signal.url)
        await send_json(a, {"type": "send", "body": "x" * 900})
        assert (await recv_json(b))["body"] == "x" * 900
        await send_json(a, {"type": "send", "body": "x" * 2000})
        assert (await expect_close(a))[0] == 1009
        code, _, seen = await expect_close(b)
        assert code == 4007 and seen == [{"type": "peer-left"}]


async def test_peer_vanishing_mid_pairing_tells_the_other(signal: RunningServer) -> None:
    """When one peer drops its TCP connection, the other gets peer-left and a 4007 close."""
    a, b, _ = await make_pair(signal.url)
    a.transport.abort()
    code, _reason, seen = await expect_close(b)
    assert code == 4007 and seen == [{"type": "peer-left"}]


async def test_waiting_sender_vanishing_frees_the_room(signal: RunningServer) -> None:
    """A sender that disappears before anyone claims leaves no room behind."""
    a = await open_client(signal.url)
    await send_json(a, {"type": "allocate"})
    nameplate = (await recv_json(a))["nameplate"]
    a.transport.abort()
    await signal.signal.wait_for_connections(0)
    b = await open_client(signal.url)
    await send_json(b, {"type": "claim", "nameplate": nameplate})
    assert (await expect_close(b))[0] == 4001


async def test_bye_closes_normally_and_tells_peer(signal: RunningServer) -> None:
    """A peer that is done says bye: both connections close with 1000."""
    a, b, _ = await make_pair(signal.url)
    await send_json(a, {"type": "bye"})
    assert (await expect_close(a))[0] == 1000
    code, _, seen = await expect_close(b)
    assert code == 1000 and seen == [{"type": "peer-left"}]
    assert len(signal.signal.registry) == 0


async def test_waiting_room_expires_after_ttl(start_signal: Any, clock: FakeClock) -> None:
    """A code nobody claims expires after the TTL (clock injected) and the sender is told."""
    async with start_signal(room_ttl_s=600) as signal:
        a = await open_client(signal.url)
        await send_json(a, {"type": "allocate"})
        await recv_json(a)
        clock.advance(599)
        signal.signal.sweep()
        assert len(signal.signal.registry) == 1
        clock.advance(1)
        signal.signal.sweep()
        code, _, seen = await expect_close(a)
        assert code == 4006 and seen[0]["code"] == "expired"
        assert len(signal.signal.registry) == 0


async def test_idle_paired_room_times_out(start_signal: Any, clock: FakeClock) -> None:
    """A paired room with no traffic for the idle timeout is closed for both peers."""
    async with start_signal(idle_timeout_s=30) as signal:
        a, b, _ = await make_pair(signal.url)
        clock.advance(30)
        signal.signal.sweep()
        assert (await expect_close(a))[0] == 4008
        assert (await expect_close(b))[0] == 4008


async def test_messages_per_room_limit(start_signal: Any) -> None:
    """The room closes when it has relayed its quota; the sender gets room-limit."""
    async with start_signal(max_messages_per_room=3) as signal:
        a, b, _ = await make_pair(signal.url)
        for i in range(3):
            await send_json(a, {"type": "send", "body": str(i)})
        await send_json(a, {"type": "send", "body": "one too many"})
        code, _, seen = await expect_close(a)
        assert code == 4005 and seen[-1]["code"] == "room-limit"
        code, _, seen = await expect_close(b)
        assert code == 4007
        assert [m.get("body") for m in seen] == ["0", "1", "2", None]


async def test_max_rooms_limit(start_signal: Any) -> None:
    """Past the room cap new rooms are refused with 1013 (try again later)."""
    async with start_signal(max_rooms=2) as signal:
        held = []
        for _ in range(2):
            ws = await open_client(signal.url)
            await send_json(ws, {"type": "allocate"})
            await recv_json(ws)
            held.append(ws)
        ws = await open_client(signal.url)
        await send_json(ws, {"type": "allocate"})
        code, _, seen = await expect_close(ws)
        assert code == 1013 and seen[0]["code"] == "server-full"
        for h in held:
            await h.close()


async def test_connections_per_ip_limit(start_signal: Any) -> None:
    """One address cannot hold more than its share of connections (refused at accept, with
    HTTP 429 when the client gets to read it); others still get in."""
    async with start_signal(max_conns_per_ip=2) as signal:
        held = [await open_client(signal.url, source_ip="127.0.0.5") for _ in range(2)]
        with pytest.raises((InvalidHandshake, ConnectionClosed, OSError)) as refused:
            await connect(
                signal.url,
                subprotocols=["p2pshare.v1"],  # type: ignore[list-item]
                local_addr=("127.0.0.5", 0),
            )
        if isinstance(refused.value, InvalidStatus):
            assert refused.value.response.status_code == 429
        assert signal.signal.stats["refused:429"] == 1
        other = await open_client(signal.url, source_ip="127.0.0.6")
        await send_json(other, {"type": "allocate"})
        assert (await recv_json(other))["type"] == "allocated"
        for ws in [*held, other]:
            await ws.close()


async def test_joins_per_ip_per_minute_limit(start_signal: Any, clock: FakeClock) -> None:
    """An address that opens too many rooms in a minute is refused until the minute passes."""
    async with start_signal(joins_per_ip_per_minute=3) as signal:
        for _ in range(3):
            ws = await open_client(signal.url, source_ip="127.0.0.7")
            await send_json(ws, {"type": "allocate"})
            assert (await recv_json(ws))["type"] == "allocated"
            await ws.close()
        ws = await open_client(signal.url, source_ip="127.0.0.7")
        await send_json(ws, {"type": "allocate"})
        code, _, seen = await expect_close(ws)
        assert code == 4004 and seen[0]["code"] == "rate-limited"
        clock.advance(60)
        ws = await open_client(signal.url, source_ip="127.0.0.7")
        await send_json(ws, {"type": "allocate"})
        assert (await recv_json(ws))["type"] == "allocated"
        await ws.close()


async def test_handshake_timeout_closes_silent_clients(start_signal: Any) -> None:
    """A client that connects but never asks for a room is closed with timeout."""
    async with start_signal(handshake_timeout_s=0.2) as signal:
        ws = await open_client(signal.url)
        code, _, seen = await expect_close(ws)
        assert code == 4008 and seen[0]["code"] == "timeout"


async def test_keepalive_closes_clients_that_stop_answering(start_signal: Any) -> None:
    """A client that stops answering pings is dropped and its peer told."""
    async with start_signal(ping_interval_s=0.1, ping_timeout_s=0.2) as signal:
        a, b, _ = await make_pair(signal.url)
        # Stop a's reading side so it never answers pings, but keep its socket open.
        a.transport.pause_reading()
        code, _, seen = await expect_close(b)
        assert code == 4007 and seen == [{"type": "peer-left"}]
        a.transport.abort()


@pytest.mark.parametrize("offered", [["p2pshare.v0"], None, ["p2pshare.v2", "chat"]])
async def test_other_protocol_versions_get_a_clear_close_reason(
    signal: RunningServer, offered: list[str] | None
) -> None:
    """A client of another protocol version is told what the server speaks."""
    ws = await open_client(signal.url, subprotocols=offered)
    code, reason, seen = await expect_close(ws)
    assert code == 4009
    assert reason is not None and "p2pshare.v1" in reason
    assert seen[0]["code"] == "unsupported-version"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2, 3]",
        '"just a string"',
        "{}",
        '{"type": "fly"}',
        '{"type": "claim"}',
        '{"type": "claim", "nameplate": 7}',
        '{"type": "claim", "nameplate": "007"}',
        '{"type": "claim", "nameplate": "1234567"}',
        '{"type": "claim", "nameplate": "../1"}',
        '{"type": "claim", "nameplate": "5", "create": "yes"}',
        '{"type": "send"}',
        '{"type": "send", "body": 5}',
        '{"type": "send", "body": "too early"}',
        "[" * 50_000,
    ],
)
async def test_garbage_text_frames_are_refused(signal: RunningServer, frame: str) -> None:
    """Malformed messages close that client with bad-request (4000)."""
    ws = await open_client(signal.url)
    await ws.send(frame)
    code, _, seen = await expect_close(ws)
    assert code == 4000 and seen[0]["code"] == "bad-request"


async def test_binary_frames_are_refused(signal: RunningServer) -> None:
    """Binary frames are not part of the protocol: 1003."""
    ws = await open_client(signal.url)
    await ws.send(b"\x00\x01binary")
    assert (await expect_close(ws))[0] == 1003


async def test_huge_frame_is_refused(signal: RunningServer) -> None:
    """A frame far above the cap is cut off with 1009 without buffering it all."""
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "send", "body": "x" * (4 * 1024 * 1024)})
    assert (await expect_close(ws))[0] == 1009


async def test_second_join_on_one_connection_is_refused(signal: RunningServer) -> None:
    """A connection belongs to one room; asking for another is a bad request."""
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "allocate"})
    await recv_json(ws)
    await send_json(ws, {"type": "allocate"})
    assert (await expect_close(ws))[0] == 4000


async def _raw_exchange(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=15)
    writer.close()
    return data


async def test_raw_tcp_junk_is_dropped(signal: RunningServer) -> None:
    """Bytes that are not HTTP get the connection closed."""
    data = await _raw_exchange(signal.url, b"\x16\x03\x01\x02\x00junk junk junk\r\n\r\n")
    assert b"101" not in data.split(b"\r\n", 1)[0]


async def test_plain_http_to_an_unknown_path_gets_404(signal: RunningServer) -> None:
    """A plain GET that is neither the page nor /healthz gets a 404, not a hang."""
    data = await _raw_exchange(signal.url, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404")


async def test_healthz(signal: RunningServer) -> None:
    """Operators can probe /healthz over plain HTTP."""
    data = await _raw_exchange(signal.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n")


async def test_welcome_lists_protocol_version(signal: RunningServer) -> None:
    """The first frame a client gets names the protocol version and ICE servers."""
    ws = await connect(signal.url, subprotocols=["p2pshare.v1"])  # type: ignore[list-item]
    welcome = json.loads(await ws.recv())
    assert welcome == {"type": "welcome", "version": 1, "ice_servers": []}
    await ws.close()


async def test_welcome_hands_out_turn_credentials(start_signal: Any) -> None:
    """With --turn and a secret, every client gets minted credentials, never the secret."""
    async with start_signal(
        stun_urls=("stun:s:3478",), turn_urls=("turn:t:3478",), turn_secret="sekrit", turn_ttl_s=600
    ) as signal:
        ws = await connect(signal.url, subprotocols=["p2pshare.v1"])  # type: ignore[list-item]
        welcome = json.loads(await ws.recv())
        stun, turn = welcome["ice_servers"]
        assert stun == {"urls": ["stun:s:3478"]}
        assert turn["urls"] == ["turn:t:3478"]
        assert re.fullmatch(r"\d+:p2pshare-[0-9a-f]{8}", turn["username"])
        assert "sekrit" not in json.dumps(welcome)
        # A username of its own per connection: coturn's user-quota is then per client.
        other = await connect(signal.url, subprotocols=["p2pshare.v1"])  # type: ignore[list-item]
        assert json.loads(await other.recv())["ice_servers"][1]["username"] != turn["username"]
        await other.close()
        await ws.close()
