"""Transfers across a lossy link (namespaces; iptables random drop, or a user-space delaying
link): the patched SCTP path recovers from loss and delay, and the data arrives exact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from p2pshare import aiortc_patches
from tests.cli_helpers import embedded_pair
from tests.natlab import delayed_link, lossy_link

pytestmark = pytest.mark.timeout(240)


def test_sctp_patches_are_active_on_the_pinned_aiortc() -> None:
    """The loss test below exercises the patched path, not silently the stock one."""
    import aiortc

    assert aiortc.__version__ in aiortc_patches.TESTED_VERSIONS
    assert aiortc_patches.apply() and aiortc_patches.enabled()


@pytest.mark.parametrize(("loss_pct", "mib"), [(1, 12), (5, 4)], ids=["1", "5"])
def test_transfer_survives_packet_loss(tmp_path: Path, loss_pct: int, mib: int) -> None:
    """With 1% of packets dropped each way 12 MiB, with 5% 4 MiB, arrive with their hash
    verified. The 5% case still loses more packets than the 1% one (5/3 as many), and the
    same recovery is at work; 12 MiB at 5% took up to 38 s of the suite."""
    data = os.urandom(mib * 1024 * 1024)
    src = tmp_path / "lossy.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with lossy_link(tmp_path, loss_pct) as (_, host_a, host_b):
        sender, receiver, _ = embedded_pair(src, out, host_a, host_b)
        assert receiver.wait(200) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
    assert (
        hashlib.sha256((out / "lossy.bin").read_bytes()).hexdigest()
        == hashlib.sha256(data).hexdigest()
    )


@pytest.mark.timeout(200)
def test_transfer_survives_5_percent_loss_and_100_ms_round_trips(tmp_path: Path) -> None:
    """The issue's netem case, built without netem (tests/tun_link.py): every packet is
    delayed 50 ms and 5% are lost, each way. 1 MiB, not 64: at this loss and round trip any
    loss-based congestion control is held to roughly MSS/RTT * 1.22/sqrt(p), about 65 KB/s;
    64 MiB took 1,127 and 1,132 s by hand (~59 KB/s, verified: docs/resume.md), more than the
    suite's whole budget, and 2 MiB took 33-38 s of it. This run checks that recovery works
    (a megabyte at 5% loss is still many losses each way) and the data verifies."""
    src = tmp_path / "far.bin"
    data = os.urandom(1 << 20)
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with delayed_link(tmp_path, 0.05, 5) as (_, host_a, host_b):
        sender, receiver, _ = embedded_pair(src, out, host_a, host_b)
        assert receiver.wait(180) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
    assert receiver.last("done")["blake3"] == blake3.blake3(data).hexdigest()
    assert (out / "far.bin").read_bytes() == data
