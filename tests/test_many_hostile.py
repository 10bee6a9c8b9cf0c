"""``send --many`` against hostile receivers speaking raw websocket: a malformed key exchange
burns the code like a wrong one, and receivers that never prove the code lose their place.

The sender is the real CLI against a real ``p2pshare-signal``; the hostile receivers are raw
websocket clients (``tests/signal_helpers.py``) that claim the nameplate and then do what the
case says.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from tests.cli_helpers import Peer, interruptible_env
from tests.signal_helpers import open_client, recv_json, send_json

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
