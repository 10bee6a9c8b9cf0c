"""``send --many`` against hostile receivers speaking raw websocket: a malformed key exchange
burns the code like a wrong one, and receivers that never prove the code lose their place.

The sender is the real CLI against a real ``p2pshare-signal``; the hostile receivers are raw
websocket clients (``tests/signal_helpers.py``) that claim the nameplate and then do what the
case says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from p2pshare import session
from p2pshare.codes import Code, parse_code
from p2pshare.config import IceConfig, Settings
from p2pshare.errors import P2PShareError
from p2pshare.events import CodeReady, SessionEvent
from p2pshare.pairing import authenticate
from p2pshare.pake import Role
from p2pshare.rendezvous import RendezvousClient
from signal_server.server import RunningServer
from tests.cli_helpers import Peer, interruptible_env
from tests.signal_helpers import expect_close, open_client, recv_json, send_json

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))

WRONG_CODE_EXIT = 6

# Bodies a receiver may relay as its PAKE message: none is a valid SPAKE2 element for side B.
MALFORMED_PAKE: dict[str, bytes] = {
    "side-b-not-a-point": b"B" + b"\xff" * 32,
    "arbitrary-33-bytes": bytes(range(33)),
    "wrong-side-byte": b"A" + b"\x01" * 32,
    "too-short": b"B",
    "empty": b"",
}


def _sender(server: str, tmp_path: Path, *args: str) -> tuple[Peer, str]:
    source = tmp_path / "f.txt"
    source.write_text("secret")
    sender = Peer(
        ["send", str(source), "--server", server, "--json", "--many", *args],
        cwd=tmp_path,
        env=interruptible_env(),
    )
    return sender, sender.event("code")["code"]


async def _claim_and_relay(server: str, nameplate: str, body: bytes) -> None:
    """Claim the room, read the sender's PAKE message, answer with ``body``."""
    ws = await open_client(server)
    try:
        await send_json(ws, {"type": "claim", "nameplate": nameplate})
        assert (await recv_json(ws))["type"] == "claimed"
        assert (await recv_json(ws))["type"] == "paired"
        assert (await recv_json(ws))["type"] == "message"  # the sender's SPAKE2 element
        await send_json(ws, {"type": "send", "body": base64.urlsafe_b64encode(body).decode()})
        # The sender kicks or leaves: the connection ends without anything more for us.
        async for _ in ws:
            pass
    finally:
        await ws.close()


@pytest.mark.parametrize("case", sorted(MALFORMED_PAKE))
def test_a_malformed_pake_message_burns_the_code(server: str, tmp_path: Path, case: str) -> None:
    """A receiver whose PAKE message is malformed burns the code like a wrong confirmation:
    the sender says so, summarises "burned" and exits 6, never 0."""
    sender, code = _sender(server, tmp_path, "2")
    asyncio.run(
        asyncio.wait_for(_claim_and_relay(server, code.split("-")[0], MALFORMED_PAKE[case]), 30)
    )
    assert sender.wait(60) == WRONG_CODE_EXIT, sender.stderr
    assert sender.last("code-burned")["served"] == 0
    assert sender.last("summary")["stopped"] == "burned"
    assert "code is burned" in sender.last("error")["message"]


async def _silent_claim(url: str, nameplate: str, source_ip: str) -> ClientConnection:
    """Claim the room from ``source_ip``, read the sender's PAKE message, then say nothing."""
    ws = await open_client(url, source_ip=source_ip)
    await send_json(ws, {"type": "claim", "nameplate": nameplate})
    assert (await recv_json(ws))["type"] == "claimed"
    assert (await recv_json(ws))["type"] == "paired"
    assert (await recv_json(ws))["type"] == "message"
    return ws


async def _claim_refusal(url: str, nameplate: str, source_ip: str) -> str | None:
    """Claim and leave: the error code the server answered with, or None if admitted."""
    ws = await open_client(url, source_ip=source_ip)
    try:
        await send_json(ws, {"type": "claim", "nameplate": nameplate})
        answer = await recv_json(ws)
        return str(answer["code"]) if answer["type"] == "error" else None
    finally:
        await ws.close()


async def _prove(url: str, code: Code, settings: Settings) -> None:
    """An honest receiver's key exchange with the right code (raises if it fails)."""
    rv = await RendezvousClient.connect(url)
    try:
        await rv.claim(code.nameplate)
        await authenticate(rv, Role.RECEIVER, code, settings)
    finally:
        await rv.close()


async def test_silent_receivers_are_dropped_at_the_deadline(
    start_signal: Callable[..., Any], tmp_path: Path
) -> None:
    """Receivers that claim and never prove the code fill a many room only until the
    sender's key-exchange deadline: then the sender kicks them (close 4010) and an honest
    receiver, refused as crowded before, gets in and proves the code."""
    (tmp_path / "in.bin").write_bytes(b"secret")
    async with start_signal(max_receivers_per_room=2) as signal:
        settings = Settings(server=signal.url, ice=LOOPBACK, connect_timeout_s=2)
        ready: asyncio.Queue[str] = asyncio.Queue()

        def on_event(event: SessionEvent) -> None:
            if isinstance(event, CodeReady):
                ready.put_nowait(event.code)

        sending = asyncio.create_task(
            session.send_many(tmp_path / "in.bin", settings, count=1, on_event=on_event)
        )
        try:
            code = parse_code(await ready.get())
            silent = [
                await _silent_claim(signal.url, code.nameplate, ip)
                for ip in ("127.0.0.2", "127.0.0.3")
            ]
            assert await _claim_refusal(signal.url, code.nameplate, "127.0.0.4") == "crowded"
            for ws in silent:
                close_code, _, seen = await asyncio.wait_for(expect_close(ws), 30)
                assert close_code == 4010 and seen[-1]["code"] == "closed"
            await asyncio.wait_for(_prove(signal.url, code, settings), 30)
            assert not sending.done()  # not burned: silence is not a guess
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, P2PShareError):
                await sending


async def test_one_address_holds_few_unproven_receivers(signal: RunningServer) -> None:
    """The server lets one address hold at most 4 receivers of a many room that the creator
    has not answered with its confirmation (its second body): a fifth from that address is
    crowded, another address still gets in, and a receiver the creator answered no longer
    counts."""
    creator = await open_client(signal.url)
    await send_json(creator, {"type": "allocate", "mode": "many"})
    nameplate = (await recv_json(creator))["nameplate"]
    held = []
    for side in ("1", "2", "3", "4"):
        ws = await open_client(signal.url, source_ip="127.0.0.5")
        await send_json(ws, {"type": "claim", "nameplate": nameplate})
        assert (await recv_json(ws))["type"] == "claimed"
        assert await recv_json(creator) == {"type": "joined", "side": side}
        held.append(ws)
    assert await _claim_refusal(signal.url, nameplate, "127.0.0.5") == "crowded"
    assert await _claim_refusal(signal.url, nameplate, "127.0.0.6") is None
    assert (await recv_json(creator))["type"] == "joined"
    assert (await recv_json(creator))["type"] == "peer-left"
    for body in ("pake", "confirmation"):
        await send_json(creator, {"type": "send", "to": "1", "body": body})
    assert await _claim_refusal(signal.url, nameplate, "127.0.0.5") is None
    for ws in [*held, creator]:
        await ws.close()
