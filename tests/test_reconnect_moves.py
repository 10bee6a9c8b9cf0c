"""A transfer survives the *sender* moving to a new network mid-transfer (issue 28): real
processes in network namespaces, our rendezvous server on the receiver's side of the cable
(the sender's old address, where it would otherwise listen, is gone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2pshare.transfer import DEFAULT_WINDOW_BYTES
from tests.natlab import lossy_link, sh
from tests.test_reconnect import lab_server, peers

MIB = 1 << 20


@pytest.mark.timeout(120)
def test_the_senders_address_changes_and_the_transfer_goes_on(tmp_path: Path) -> None:
    """The sender gets a new address mid-transfer and loses the old one for good: both
    sides find each other again through the server and finish, exit 0, the file verified,
    and no more sent than the file and what was in flight."""
    payload = tmp_path / "src" / "payload.bin"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(24 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    with lossy_link(tmp_path, 0) as (_, host_a, host_b), lab_server(host_b, "10.8.0.2") as url:
        sender, receiver = peers(url, payload, out, host_a, host_b)
        sender.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
        sh("ip", "addr", "del", "10.8.0.1/24", "dev", "eth0", ns=host_a)
        sh("ip", "addr", "add", "10.8.0.4/24", "dev", "eth0", ns=host_a)
        assert sender.wait(90) == 0, sender.stderr
        assert receiver.wait(30) == 0, receiver.stderr
    assert sender.last("reconnected")["path"] == "lan"
    assert any(e["event"] == "reconnected" for e in receiver.events)
    size = payload.stat().st_size
    assert sender.last("done")["sent"] <= size + DEFAULT_WINDOW_BYTES
    assert (out / payload.name).read_bytes() == payload.read_bytes()
