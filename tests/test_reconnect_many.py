"""``send --many`` rides out one receiver's path dying (issue 28): that receiver alone meets
the sender again under its own session key and resumes; the others never notice. Real
processes in network namespaces (tests/natlab.py), through our rendezvous server named with
``--server`` or the one the sender embeds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2pshare import events
from p2pshare.progress import ManyHumanReporter
from p2pshare.transfer import DEFAULT_WINDOW_BYTES
from tests.cli_helpers import Peer, lab_env
from tests.natlab import lossy_link, sh
from tests.test_cli_edges import captured
from tests.test_reconnect import lab_server

MIB = 1 << 20
STEADY, MOVING = "10.8.0.2", "10.8.0.3"
"""Host B's two addresses: the undisturbed receivers use the first, the one whose path dies
the second (each offers only its own: ``P2PSHARE_LOCAL_ADDRESSES``)."""


def cut_one(host_a: str, host_b: str, address: str, action: str = "-I") -> None:
    """Drop (``-I``) or restore (``-D``) every UDP packet to and from ``address`` in host B:
    that receiver's data path dies, the others' and the rendezvous (TCP) stay up."""
    sh("iptables", action, "INPUT", "-p", "udp", "-s", address, "-j", "DROP", ns=host_a)
    sh("iptables", action, "INPUT", "-p", "udp", "-d", address, "-j", "DROP", ns=host_b)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_person_sees_which_receiver_reconnects() -> None:
    """send --many at a terminal or in a log: a receiver's lost path and its return are
    said with its label, like its other lines."""
    reporter = ManyHumanReporter("a.bin", count=3)
    out = captured(reporter)
    label = "receiver 2, 10.8.0.3, direct"
    reporter(events.ForReceiver(2, events.Reconnecting(3.2, 2, 120.0), label))
    reporter(events.ForReceiver(2, events.Reconnected(None, 7.6, 3), label))
    assert out.getvalue().splitlines() == [
        f"{label}: connection lost, reconnecting… 3 s",
        f"{label}: reconnected after 8 s.",
    ]


@pytest.mark.timeout(120)
def test_one_of_three_receivers_loses_its_path_and_only_it_reconnects(tmp_path: Path) -> None:
    """Three receivers of ``send --many 3``; one loses its path past the silence deadline,
    then gets it back: it reconnects and resumes, the other two never lose their connection
    and get the file sent once; all four exit 0 with verified copies."""
    payload = tmp_path / "src" / "payload.bin"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(16 * MIB))
    size = payload.stat().st_size
    env = {"P2PSHARE_LARGE_PACKETS": "0", "P2PSHARE_PEER_TIMEOUT_S": "6"}
    with lossy_link(tmp_path, 0) as (_, host_a, host_b), lab_server(host_a, "10.8.0.1") as url:
        sh("ip", "addr", "add", f"{MOVING}/24", "dev", "eth0", ns=host_b)
        sender = Peer(
            ["send", str(payload), "--server", url, "--json", "--many", "3", "--parallel", "3"],
            cwd=payload.parent,
            env=lab_env(**env),
            netns=host_a,
        )
        code = sender.event("code")["code"]
        receivers: dict[str, Peer] = {}
        for name, address in (("moving", MOVING), ("steady1", STEADY), ("steady2", STEADY)):
            out = tmp_path / name
            out.mkdir()
            receivers[name] = Peer(
                ["receive", code, "--server", url, "--json", "--yes", "-o", str(out)],
                cwd=tmp_path,
                env={**lab_env(**env), "P2PSHARE_LOCAL_ADDRESSES": address},
                netns=host_b,
            )
        moving = receivers["moving"]
        moving.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
        cut_one(host_a, host_b, MOVING)
        moving.event("reconnecting")
        cut_one(host_a, host_b, MOVING, "-D")
        for name, receiver in receivers.items():
            assert receiver.wait(90) == 0, f"{name}: {receiver.stderr}"
        assert sender.wait(30) == 0, sender.stderr
    for name, receiver in receivers.items():
        assert _digest(tmp_path / name / payload.name) == _digest(payload), name
        reconnects = [e for e in receiver.events if e["event"].startswith("reconnect")]
        if name == "moving":
            assert receiver.last("reconnected")["path"] == "lan"
        else:
            assert reconnects == [], f"{name} was disturbed: {reconnects}"
            assert receiver.last("done")["sent"] == size
    # The sender's view: one receiver (the one at MOVING) reconnected, nobody else.
    outcomes = {r["label"]: r for r in sender.last("summary")["receivers"]}
    assert [r["result"] for r in outcomes.values()] == ["done"] * 3
    again = {e["receiver"] for e in sender.events if e["event"] == "reconnected"}
    moved = [r for label, r in outcomes.items() if MOVING in label]
    assert len(moved) == 1 and again == {moved[0]["receiver"]}
    assert moved[0]["sent"] <= size + DEFAULT_WINDOW_BYTES
    assert all(r["sent"] == size for label, r in outcomes.items() if MOVING not in label)


@pytest.mark.timeout(120)
def test_a_receiver_of_the_senders_own_server_reconnects_after_moving(tmp_path: Path) -> None:
    """``send --many`` with the rendezvous server embedded in the sender (no ``--server``):
    the receiver, run with the printed command, moves to a new address mid-transfer; it
    finds the sender again on that server and finishes, both exit 0."""
    payload = tmp_path / "src" / "payload.bin"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(16 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    env = lab_env(P2PSHARE_LARGE_PACKETS="0", P2PSHARE_PEER_TIMEOUT_S="6")
    with lossy_link(tmp_path, 0) as (_, host_a, host_b):
        sender = Peer(
            ["send", str(payload), "--json", "--many", "1"],
            cwd=payload.parent,
            env=env,
            netns=host_a,
        )
        ready = sender.event("code")
        assert ready["server"].startswith("ws://10.8.0.1:")
        command = ["receive", ready["code"], "--server", ready["server"], "--json", "--yes"]
        receiver = Peer(
            [*command, "-o", str(out)],
            cwd=tmp_path,
            env=env,
            netns=host_b,
        )
        receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"] // 2)
        sh("ip", "addr", "del", f"{STEADY}/24", "dev", "eth0", ns=host_b)
        sh("ip", "addr", "add", f"{MOVING}/24", "dev", "eth0", ns=host_b)
        assert receiver.wait(90) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
    assert receiver.last("reconnected")["path"] == "lan"
    assert sender.last("reconnected")["receiver"] == 1
    (outcome,) = sender.last("summary")["receivers"]
    assert outcome["result"] == "done" and MOVING in outcome["label"]
    assert outcome["sent"] <= payload.stat().st_size + DEFAULT_WINDOW_BYTES
    assert _digest(out / payload.name) == _digest(payload)
