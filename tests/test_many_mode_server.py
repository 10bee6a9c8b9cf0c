"""The rendezvous server's many mode over real websockets: sides, privacy between
receivers, lock and kick, older clients unchanged, and the refusal with Redis."""

from __future__ import annotations

import pytest

from signal_server.server import RunningServer, ServerSettings, start_server
from tests.redis_helpers import redis_server
from tests.signal_helpers import FakeClock, expect_close, open_client, recv_json, send_json


async def test_a_many_room_addresses_each_receiver_by_side(signal: RunningServer) -> None:
    """Receivers join with a plain claim; the creator learns each one's side, addresses its
    messages to one, and a receiver never sees another's messages."""
    creator = await open_client(signal.url)
    await send_json(creator, {"type": "allocate", "mode": "many"})
    assert await recv_json(creator) == {"type": "allocated", "nameplate": "1", "mode": "many"}
    receivers = []
    for side in ("1", "2"):
        ws = await open_client(signal.url)
        await send_json(ws, {"type": "claim", "nameplate": "1"})
        assert await recv_json(ws) == {"type": "claimed", "nameplate": "1"}
        assert await recv_json(ws) == {"type": "paired"}
        assert await recv_json(creator) == {"type": "joined", "side": side}
        receivers.append(ws)
    await send_json(creator, {"type": "send", "to": "2", "body": "for two"})
    await send_json(creator, {"type": "send", "to": "1", "body": "for one"})
    assert await recv_json(receivers[1]) == {"type": "message", "body": "for two"}
    assert await recv_json(receivers[0]) == {"type": "message", "body": "for one"}
    await send_json(receivers[0], {"type": "send", "body": "from one"})
    assert await recv_json(creator) == {"type": "message", "body": "from one", "from": "1"}
    await send_json(receivers[0], {"type": "bye"})
    assert await recv_json(creator) == {"type": "peer-left", "side": "1"}
    # The room goes on for the others, and a lock refuses newcomers only.
    await send_json(creator, {"type": "lock"})
    late = await open_client(signal.url)
    await send_json(late, {"type": "claim", "nameplate": "1"})
    refusal = await recv_json(late)
    assert refusal["type"] == "error" and refusal["code"] == "closed"
    assert (await expect_close(late))[0] == 4010
    await send_json(creator, {"type": "kick", "side": "2"})
    kicked = await recv_json(receivers[1])
    assert kicked["type"] == "error" and kicked["code"] == "closed"
    assert (await expect_close(receivers[1]))[0] == 4010
    await send_json(creator, {"type": "bye"})


async def test_single_mode_refuses_many_mode_fields(signal: RunningServer) -> None:
    """``to`` in a two-peer room, and ``mode`` on a plain claim, are bad requests."""
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "claim", "nameplate": "5", "mode": "many"})
    assert (await recv_json(ws))["code"] == "bad-request"
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "allocate"})
    assert await recv_json(ws) == {"type": "allocated", "nameplate": "1"}
    await send_json(ws, {"type": "send", "to": "1", "body": "x"})
    assert (await recv_json(ws))["code"] == "bad-request"


async def test_many_mode_is_refused_clearly_with_redis(clock: FakeClock) -> None:
    """Rooms shared through Redis pair two peers only: many mode gets ``unsupported-mode``
    with a message saying what to do, and single mode still works there."""
    with redis_server() as url:
        settings = ServerSettings(host="127.0.0.1", port=0, redis_url=url)
        async with start_server(settings, clock) as running:
            ws = await open_client(running.url)
            await send_json(ws, {"type": "allocate", "mode": "many"})
            refusal = await recv_json(ws)
            assert refusal["code"] == "unsupported-mode"
            assert "without --many" in refusal["message"]
            assert (await expect_close(ws))[0] == 4011
            ws = await open_client(running.url)
            await send_json(ws, {"type": "allocate"})
            assert (await recv_json(ws))["type"] == "allocated"


@pytest.mark.parametrize("mode", ["single", "many"])
async def test_an_old_server_is_detected(signal: RunningServer, mode: str) -> None:
    """The echo of ``mode`` is how a client tells a server that knows many mode."""
    ws = await open_client(signal.url)
    await send_json(ws, {"type": "claim", "nameplate": "77", "create": True, "mode": mode})
    reply = await recv_json(ws)
    assert (reply.get("mode") == "many") is (mode == "many")
