"""Portable by construction: every Linux-only call p2pshare makes has a fallback that keeps the
data safe, and real transfers (two CLI processes and a real p2pshare-signal, on loopback) pass
with each of them switched off, and with all of them off at once (``P2PSHARE_LINUX_CALLS=0``,
what a system without them does). docs/tuning.md lists the calls and their fallbacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from p2pshare.config import (
    ENV_DROP_BEHIND,
    ENV_LINK_REPORT,
    ENV_LINUX_CALLS,
    ENV_SEND_WITHOUT_GIL,
    ENV_STOCK_SCTP,
    ENV_UDP_SEGMENTS,
)
from tests.cli_helpers import leftovers, peer_env, start_pair

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("switch", "segments", "early_writeback", "drop_behind"),
    [
        ({}, True, True, True),  # this machine's calls, for contrast
        ({ENV_LINUX_CALLS: "0"}, False, False, False),
        ({ENV_DROP_BEHIND: "0"}, True, True, False),
        ({ENV_UDP_SEGMENTS: "0"}, False, True, True),
        ({ENV_SEND_WITHOUT_GIL: "0"}, False, True, True),
        ({ENV_STOCK_SCTP: "1"}, False, True, True),
    ],
    ids=["linux", "no-linux-calls", "no-drop-behind", "no-udp-segments", "no-fast-send", "stock"],
)
def test_a_transfer_verifies_with_each_linux_call_switched_off(
    server: str,
    tmp_path: Path,
    switch: dict[str, str],
    segments: bool,
    early_writeback: bool,
    drop_behind: bool,
) -> None:
    """A tree with a file large enough for several writeback ranges arrives whole and
    verified; the link reports say whether UDP segments were used and the receiver's log
    which page-cache calls it made, so each switch is seen to take the fallback."""
    src = tmp_path / "src" / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(20 * MIB))
    (src / "sub" / "small.txt").write_bytes(b"small\n")
    out = tmp_path / "out"
    out.mkdir()
    report = tmp_path / "links.jsonl"
    env = peer_env(**{ENV_LINK_REPORT: str(report)}, **switch)
    sender, receiver = start_pair(server, src, out, "--yes", "-v", env=env)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "tree" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (out / "tree" / "sub" / "small.txt").read_bytes() == b"small\n"
    assert leftovers(out / "tree") == ["big.bin", "sub"]
    links = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(links) == 2
    assert all(link["udp_segments"]["on"] == segments for link in links), links
    log = receiver.stderr
    assert f"early writeback {'on' if early_writeback else 'off'}" in log, log
    assert f"drop-behind {'on' if drop_behind else 'off'}" in log, log
