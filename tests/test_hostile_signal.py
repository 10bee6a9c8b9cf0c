"""A hostile or broken rendezvous server against the real ``p2pshare send`` and ``receive``.

Whatever the server sends, each command ends with the documented server error (exit 3) and
one line on stderr: never exit 1 ("unexpected error"), never a traceback, and a slow server is
never reported as a lost peer (exit 7). In a reconnect's room, whatever it sends fails that
attempt only (tests/test_reconnect_hostile.py has the whole commands).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pshare.codes import wordlist
from p2pshare.config import Settings
from p2pshare.errors import P2PShareError, ServerRefusedError, WrongCodeError
from p2pshare.pake import Role
from p2pshare.reconnect import ReconnectKeys, Reconnector
from tests.cli_helpers import Peer, run_signal_server
from tests.hostile_signal import (
    BAD_ALLOCATIONS,
    BAD_CLAIMS,
    BAD_RECONNECT_ROOMS,
    BAD_WELCOMES,
    RAW_MODES,
)

SENDER_MODES = sorted(
    {*BAD_WELCOMES, *BAD_ALLOCATIONS, *RAW_MODES, "silent-after-handshake", "silent-after-allocate"}
)
RECEIVER_MODES = sorted(
    {*BAD_WELCOMES, *BAD_CLAIMS, *RAW_MODES, "silent-after-handshake", "silent-after-claimed"}
)
SERVER_ERROR_EXIT = 3


def assert_one_line_server_error(peer: Peer) -> None:
    code = peer.wait(timeout=60)
    lines = [line for line in peer.stderr.splitlines() if line.strip()]
    assert code == SERVER_ERROR_EXIT, (code, peer.stderr)
    assert len(lines) == 1, peer.stderr
    assert "unexpected error" not in lines[0] and "Traceback" not in peer.stderr
    assert "\x1b" not in peer.stderr and len(lines[0]) < 400


@pytest.mark.parametrize("mode", SENDER_MODES)
def test_sender_against_hostile_server(tmp_path: Path, mode: str) -> None:
    """p2pshare send: every server misbehaviour is a one-line server error, exit 3."""
    source = tmp_path / "hello.txt"
    source.write_text("hello")
    with run_signal_server(mode, module="tests.hostile_signal") as url:
        sender = Peer(["send", str(source), "--server", url], cwd=tmp_path)
        assert_one_line_server_error(sender)
    assert "Code" not in sender.stderr


@pytest.mark.parametrize("mode", RECEIVER_MODES)
def test_receiver_against_hostile_server(tmp_path: Path, mode: str) -> None:
    """p2pshare receive: every server misbehaviour is a one-line server error, exit 3."""
    words = wordlist()
    code = f"7-{words[0]}-{words[1]}"
    with run_signal_server(mode, module="tests.hostile_signal") as url:
        receiver = Peer(
            ["receive", code, "--server", url, "--yes", "-o", str(tmp_path)], cwd=tmp_path
        )
        assert_one_line_server_error(receiver)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mode", sorted({*BAD_RECONNECT_ROOMS, *RAW_MODES, "silent-after-handshake"})
)
def test_reconnect_attempt_against_hostile_server(mode: str) -> None:
    """A reconnect's attempt (the real client code, against the server process): whatever
    the server sends where the peer's hello should come, the attempt fails with an error the
    reconnect retries within its budget, never another exception, never the server's word
    that the code was wrong or that its operator refuses us (which would end the reconnect
    at once), and no generation is spent."""
    keys = ReconnectKeys(Role.RECEIVER, bytes(range(32)))
    with run_signal_server(mode, module="tests.hostile_signal") as url:
        reconnector = Reconnector(url, keys, Settings(connect_timeout_s=1.0), lambda e: None)
        with pytest.raises((P2PShareError, TimeoutError)) as failed:
            asyncio.run(reconnector.attempt(5.0))
    assert not isinstance(failed.value, ServerRefusedError | WrongCodeError), failed.value
    assert "\x1b" not in str(failed.value)
    assert reconnector.generation == 0
