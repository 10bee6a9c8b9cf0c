"""A sender that knows the code but seals a hostile offer: the real receiver stops at once
with the documented error (never exit 1, never a 30 s wait), and tells the sender why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import Peer, hostile_peer, run_signal_server
from tests.hostile_signalling import CASES

EXIT_BY_CASE = {"abort-wrong-code": 7}  # not believed: "the other side stopped", not 6


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_signal_server("--port", "0", "--joins-per-ip-per-minute", "0") as url:
        yield url


@pytest.mark.parametrize("case", CASES)
def test_hostile_sealed_offer(server: str, tmp_path: Path, case: str) -> None:
    """Exit 10 (protocol) or the case's code; one line; the sender gets a sealed abort."""
    with hostile_peer("tests.hostile_signalling", server, case) as (hostile, code):
        assert hostile.stdout is not None
        receiver = Peer(["receive", code, "--server", server, "--yes", "--json"], cwd=tmp_path)
        expected = EXIT_BY_CASE.get(case, 10)
        assert receiver.wait() == expected, (receiver.events, receiver.stderr)
        assert receiver.last("error")["message"]
        assert "Traceback" not in receiver.stderr
        if case != "abort-wrong-code":
            reply = json.loads(hostile.stdout.readline())["reply"]
            assert reply["type"] == "abort" and reply["error"] == "protocol"
    assert list(tmp_path.iterdir()) == []
