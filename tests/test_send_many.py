"""``send --many`` end to end: one sender process, several ``p2pshare receive`` processes and
a real ``p2pshare-signal`` on 127.0.0.1, port 0."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import blake3
import pytest

from tests.cli_helpers import Peer, interruptible_env, peer_env

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough (with small packets) that a transfer is under way when a test acts."""
    path = tmp_path_factory.mktemp("src") / "payload.bin"
    with open(path, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(MIB))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sender(
    server: str, payload: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[Peer, str]:
    sender = Peer(
        ["send", str(payload), "--server", server, "--json", "--many", *args],
        cwd=payload.parent,
        env=env or interruptible_env(),
    )
    return sender, sender.event("code")["code"]


def _receiver(server: str, code: str, out: Path, env: dict[str, str] | None = None) -> Peer:
    out.mkdir(exist_ok=True)
    return Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)],
        cwd=out,
        env=env or interruptible_env(),
    )


def _results(sender: Peer) -> dict[int, str]:
    return {r["receiver"]: r["result"] for r in sender.last("summary")["receivers"]}


def test_three_receivers_get_identical_verified_copies(
    server: str, payload: Path, tmp_path: Path
) -> None:
    """``send --many 3``: three receivers get identical verified copies, each over its own
    connection with its own id, and the sender exits 0 after the third. Nothing is stopped
    mid-transfer here: large packets (the default)."""
    sender, code = _sender(server, payload, "3", env=peer_env())
    receivers = [_receiver(server, code, tmp_path / f"out{i}", peer_env()) for i in range(3)]
    for receiver in receivers:
        assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    want = _digest(payload)
    for i, receiver in enumerate(receivers):
        assert _digest(tmp_path / f"out{i}" / payload.name) == want
        assert receiver.last("done")["blake3"] == blake3.blake3(payload.read_bytes()).hexdigest()
    assert _results(sender) == {1: "done", 2: "done", 3: "done"}
    summary = sender.last("summary")
    assert summary["stopped"] == "count" and summary["served"] == 3
    assert all(r["bytes"] == payload.stat().st_size for r in summary["receivers"])
    progress_ids = {e["receiver"] for e in sender.events if e["event"] == "progress"}
    assert progress_ids == {1, 2, 3}


def test_a_wrong_code_burns_it_for_everyone_still_to_come(
    server: str, payload: Path, tmp_path: Path
) -> None:
    """A wrong code among the receivers: it exits 6, the sender stops admitting and says so
    with the count served, the receiver already transferring completes, a later receiver
    with the right code is refused clearly, and the sender exits 6."""
    sender, code = _sender(server, payload, "3")
    first = _receiver(server, code, tmp_path / "first")
    first.event("progress", lambda e: e["done"] > 0)
    first.send_signal(signal.SIGSTOP)  # still transferring while the guess comes in
    try:
        nameplate = code.split("-")[0]
        guess = _receiver(server, f"{nameplate}-wrong-guess", tmp_path / "guess")
        assert guess.wait() == 6, guess.stderr
        burned = sender.event("code-burned")
        assert burned["served"] == 0
    finally:
        first.send_signal(signal.SIGCONT)
    late = _receiver(server, code, tmp_path / "late")
    assert late.wait() == 4, late.stderr
    assert "no longer admits receivers" in late.last("error")["message"]
    assert first.wait() == 0, first.stderr
    assert _digest(tmp_path / "first" / payload.name) == _digest(payload)
    assert sender.wait() == 6, sender.stderr
    assert _results(sender) == {1: "done", 2: "wrong-code"}
    assert sender.last("summary")["stopped"] == "burned"
    assert "burned, 1 receiver served" in sender.last("error")["message"]
    assert os.listdir(tmp_path / "guess") == [] and os.listdir(tmp_path / "late") == []


def test_receivers_beyond_parallel_wait_their_turn(
    server: str, payload: Path, tmp_path: Path
) -> None:
    """With ``--parallel 1`` a second receiver is told to wait while the first transfers,
    then completes; both copies verify."""
    sender, code = _sender(server, payload, "2", "--parallel", "1")
    first = _receiver(server, code, tmp_path / "first")
    first.event("progress", lambda e: e["done"] > 0)
    first.send_signal(signal.SIGSTOP)  # holds the only slot until the second has queued
    try:
        second = _receiver(server, code, tmp_path / "second")
        waiting = second.event("warning")
        assert "next in line" in waiting["message"]
        queued = sender.event("warning", lambda e: e.get("receiver") == 2)
        assert "waits for a free transfer slot" in queued["message"]
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait() == 0, first.stderr
    assert second.wait() == 0, second.stderr
    assert sender.wait() == 0, sender.stderr
    assert _digest(tmp_path / "second" / payload.name) == _digest(payload)
    first_done = next(i for i, e in enumerate(sender.events) if e["event"] == "receiver-done")
    second_started = next(
        i
        for i, e in enumerate(sender.events)
        if e["event"] == "progress" and e["receiver"] == 2 and e["done"] > 0
    )
    assert first_done < second_started


def test_a_receiver_killed_mid_transfer_does_not_disturb_the_others(
    server: str, payload: Path, tmp_path: Path
) -> None:
    """One receiver killed mid-transfer: the other finishes, the sender goes on admitting
    until two have finished, and lists the killed one as failed. The sender notices the
    killed one by its silence: the shortest silence deadline (4 s, not 20) keeps it short."""
    sender, code = _sender(server, payload, "2", env=interruptible_env(P2PSHARE_PEER_TIMEOUT_S="4"))
    doomed = _receiver(server, code, tmp_path / "doomed")
    doomed.event("progress", lambda e: e["done"] > 0)
    doomed.send_signal(signal.SIGSTOP)
    other = _receiver(server, code, tmp_path / "other")
    other.event("progress", lambda e: e["done"] > 0)
    doomed.kill()
    assert other.wait() == 0, other.stderr
    third = _receiver(server, code, tmp_path / "third")
    assert third.wait() == 0, third.stderr
    assert sender.wait() == 0, sender.stderr
    for name in ("other", "third"):
        assert _digest(tmp_path / name / payload.name) == _digest(payload)
    results = _results(sender)
    assert results[2] == results[3] == "done"
    assert results[1] not in ("done", "wrong-code")


def test_a_receiver_that_comes_back_under_the_same_code_resumes(
    server: str, payload: Path, tmp_path: Path
) -> None:
    """A receiver stopped with Ctrl-C mid-transfer runs again with the same code: the
    sender admits it as a new receiver and it continues where it stopped."""
    sender, code = _sender(server, payload, "1")
    first = _receiver(server, code, tmp_path / "out")
    first.event("progress", lambda e: e["done"] > 4 * MIB)
    first.send_signal(signal.SIGINT)
    assert first.wait() == 130, first.stderr
    again = _receiver(server, code, tmp_path / "out")
    assert again.wait() == 0, again.stderr
    assert sender.wait() == 0, sender.stderr
    assert again.last("done")["resumed"] > 0
    assert _digest(tmp_path / "out" / payload.name) == _digest(payload)
    results = _results(sender)
    assert results[1] != "done" and results[2] == "done"


@pytest.mark.parametrize(("count", "status"), [((), 0), (("2",), 7)], ids=["no-count", "count"])
def test_timeout_ends_the_session_with_a_status_saying_how(
    server: str, payload: Path, count: tuple[str, ...], status: int
) -> None:
    """``--timeout`` with nobody coming: exit 0 when no N was asked, 7 when N receivers were
    asked for and fewer came; the summary says why it stopped."""
    sender, _code = _sender(server, payload, *count, "--timeout", "1")
    assert sender.wait() == status, sender.stderr
    summary = sender.last("summary")
    assert summary["stopped"] == "timeout" and summary["receivers"] == []
