"""Resuming interrupted receives, end to end: real CLI processes and a real p2pshare-signal.

Each test interrupts a transfer for real (SIGKILL, SIGINT), then sends the same files again
with a new code and checks what crossed the network the second time.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import blake3
import pytest

from p2pshare.progress import format_size
from tests.cli_helpers import (
    Peer,
    interruptible_env,
    leftovers,
    peer_env,
    start_pair,
)

pytestmark = pytest.mark.timeout(180)
MIB = 1 << 20
SIZE = 64 * MIB


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(SIZE // MIB):
            f.write(os.urandom(MIB))
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def start(server: str, path: Path, out: Path, *recv_args: str) -> tuple[Peer, Peer]:
    """A transfer the test interrupts: small packets, so it is still running when it does."""
    return start_pair(server, path, out, "--yes", *recv_args, env=interruptible_env())


def resend(server: str, path: Path, out: Path, *recv_args: str) -> tuple[Peer, Peer]:
    """The send again, left to finish: large packets (the default; with small ones a resend
    of 64 MiB is most of its test's time)."""
    return start_pair(server, path, out, "--yes", *recv_args, env=peer_env())


def partials(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".p2pshare-"))


def interrupt_receiver(server: str, path: Path, out: Path, *recv_args: str) -> int:
    """Start a transfer, SIGKILL the receiver once at least half has reached its disk, stop
    the sender; returns how many bytes the receiver had reported written."""
    sender, receiver = start(server, path, out, *recv_args)
    event = receiver.event("progress", where=lambda e: e["done"] >= e["total"] // 2)
    receiver.kill()
    sender.send_signal(signal.SIGINT)
    assert sender.wait() == 130
    done: int = event["done"]
    assert done < event["total"], "the transfer finished before it could be interrupted"
    return done


def test_receiver_killed_half_way_resumes_with_only_the_rest(
    server: str, source: Path, out: Path
) -> None:
    """SIGKILL at about half way leaves the data under a temporary name with its record;
    a resend sends no more than the remainder, and the file is whole and verified."""
    had = interrupt_receiver(server, source, out)
    assert source.name not in leftovers(out)
    part, record = partials(out)[1], partials(out)[0]
    assert part.endswith(".part") and record.endswith(".json")
    assert (out / part).stat().st_size >= had

    sender, receiver = resend(server, source, out)
    assert receiver.event("offer")["found"] >= had
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    done = receiver.last("done")
    assert done["bytes"] == SIZE
    assert done["sent"] <= SIZE - had
    assert done["sent"] + done["resumed"] == SIZE
    assert sender.last("done")["sent"] == done["sent"]
    assert done["blake3"] == blake3.blake3(source.read_bytes()).hexdigest()
    assert (out / source.name).read_bytes() == source.read_bytes()
    assert leftovers(out) == [source.name]


def test_sender_killed_receiver_reports_it_and_resend_resumes(
    server: str, source: Path, out: Path
) -> None:
    """A sender that dies without a word: the receiver reports the lost peer (after the
    silence deadline), keeps what it got, and a resend continues from there. (Not waiting
    for the sender to come back: tests/test_reconnect.py has that.)"""
    # A 5 s silence deadline (default 20 s): the same path to exit 7, sooner.
    env = interruptible_env() | {"P2PSHARE_PEER_TIMEOUT_S": "5"}
    sender, receiver = start_pair(server, source, out, "--yes", "--reconnect-s", "0", env=env)
    event = receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"])
    sender.kill()
    assert receiver.wait(timeout=60) == 7
    assert receiver.last("error")["error"] == "peer-lost"
    assert source.name not in leftovers(out)
    assert len(partials(out)) == 2

    sender, receiver = resend(server, source, out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert receiver.last("done")["resumed"] > 0
    assert receiver.last("done")["sent"] <= SIZE - event["done"]
    assert (out / source.name).read_bytes() == source.read_bytes()
    assert leftovers(out) == [source.name]


def test_partial_data_that_does_not_match_is_sent_again_in_full(
    server: str, source: Path, out: Path
) -> None:
    """One byte of the partial file changed: the sender's check fails, so the whole file is
    sent again: a mismatch is never spliced."""
    interrupt_receiver(server, source, out)
    part = out / partials(out)[1]
    with open(part, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))

    sender, receiver = resend(server, source, out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert receiver.last("done")["sent"] == SIZE
    assert receiver.last("done")["resumed"] == 0
    assert (out / source.name).read_bytes() == source.read_bytes()
    assert leftovers(out) == [source.name]


def test_a_different_file_of_the_same_name_is_not_resumed(
    server: str, source: Path, out: Path, tmp_path: Path
) -> None:
    """The partial data belongs to one version of the file (path, size and mtime): a changed
    file with the same name starts from zero, and its data is not mixed with the old."""
    interrupt_receiver(server, source, out)
    changed = tmp_path / "v2" / source.name
    changed.parent.mkdir()
    changed.write_bytes(os.urandom(3 * MIB))
    sender, receiver = resend(server, changed, out)
    assert receiver.event("offer")["found"] == 0
    assert receiver.wait() == 0 and sender.wait() == 0
    assert receiver.last("done")["sent"] == 3 * MIB
    assert (out / source.name).read_bytes() == changed.read_bytes()


def test_no_resume_keeps_nothing_and_sends_everything(server: str, source: Path, out: Path) -> None:
    """--no-resume: an interrupted receive leaves no file at all, and a resend with it
    ignores partial data (and removes it once the file is complete)."""
    sender, receiver = start(server, source, out, "--no-resume")
    receiver.event("progress", where=lambda e: 0 < e["done"] < e["total"])
    receiver.send_signal(signal.SIGINT)
    assert receiver.wait() == 130 and sender.wait() == 7
    assert leftovers(out) == []

    interrupt_receiver(server, source, out)
    assert len(partials(out)) == 2
    sender, receiver = resend(server, source, out, "--no-resume")
    assert receiver.event("offer")["found"] == 0
    assert receiver.wait() == 0 and sender.wait() == 0
    assert receiver.last("done")["sent"] == SIZE
    assert leftovers(out) == [source.name]


def test_directory_resume_skips_complete_files_after_checking_them(
    server: str, out: Path, tmp_path: Path
) -> None:
    """A tree interrupted in its last, large file: on resend the files already in place are
    checked and skipped, the large one resumes, and the tree is identical."""
    tree = tmp_path / "src" / "photos"
    (tree / "sub").mkdir(parents=True)
    (tree / "zz").mkdir()
    small = {f"sub/p{i:02}.jpg": os.urandom(64 * 1024 + i) for i in range(20)}
    for name, data in small.items():
        (tree / name).write_bytes(data)
    big = os.urandom(40 * MIB)
    (tree / "zz/video.mp4").write_bytes(big)
    total = len(big) + sum(map(len, small.values()))

    had = interrupt_receiver(server, tree, out)
    assert had > sum(map(len, small.values()))
    assert (out / "photos" / "sub" / "p19.jpg").read_bytes() == small["sub/p19.jpg"]
    assert not (out / "photos" / "zz/video.mp4").exists()

    sender, receiver = resend(server, tree, out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    done = receiver.last("done")
    assert done["bytes"] == total
    assert done["sent"] <= total - had
    for name, data in small.items():
        assert (out / "photos" / name).read_bytes() == data
    assert (out / "photos" / "zz/video.mp4").read_bytes() == big
    assert partials(out / "photos") == []


def test_human_output_says_what_was_already_there(server: str, source: Path, out: Path) -> None:
    """Without --json the offer line and the final summary say how much was resumed."""
    interrupt_receiver(server, source, out)
    sender = Peer(["send", str(source), "--server", server, "--json"], cwd=source.parent)
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server, "--yes", "-o", str(out)], cwd=out)
    assert receiver.wait() == 0 and sender.wait() == 0
    assert "already here from an earlier attempt" in receiver.stderr
    kept = sender.last("done")["resumed"]
    assert kept > 0
    assert f"resumed: {format_size(kept)} already there" in receiver.stderr
