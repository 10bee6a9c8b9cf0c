"""``--verify`` protects the transfer: nothing leaves the sender (not even the offer) before
the person at the sending terminal confirms the security words, nor is anything accepted
before the receiving person does when the receiver asked; without a terminal it needs
``--yes``. Driven through real pseudo-terminals (pexpect) against a real server."""

from __future__ import annotations

from pathlib import Path

import pexpect

from tests.cli_helpers import Peer
from tests.test_prompts import exit_status, terminal

USAGE_EXIT = 2
DECLINED_EXIT = 9


def _receiver(server: str, code: str, out: Path, *args: str) -> Peer:
    out.mkdir(exist_ok=True)
    return Peer(["receive", code, "--server", server, "--json", "-o", str(out), *args], cwd=out)


def _sender_at_question(server: str, tmp_path: Path) -> tuple[pexpect.spawn, Peer, list[str]]:
    """A sender with --verify in a terminal, sitting at its question; a receiver (--json,
    --yes, --verify to report its words) connected to it. Returns the words the receiver
    shows, which the question must name."""
    (tmp_path / "a.txt").write_text("secret")
    child = terminal(["send", "a.txt", "--server", server, "--verify"], tmp_path)
    child.expect(r"\b(\d+-[a-z]+-[a-z]+)\b")
    code = child.match.group(1)
    receiver = _receiver(server, code, tmp_path / "out", "--yes", "--verify")
    words = receiver.event("verify")["words"]
    child.expect_exact(f"Does the receiver show the words {' '.join(words)}? [y/N]")
    return child, receiver, words


def test_sender_declining_the_words_sends_nothing(server: str, tmp_path: Path) -> None:
    """A sender with --verify asks before anything leaves: answered no, it stops (9), and
    the receiver never saw an offer and wrote nothing."""
    child, receiver, _ = _sender_at_question(server, tmp_path)
    child.sendline("n")
    assert exit_status(child) == DECLINED_EXIT
    assert receiver.wait() != 0
    assert not any(e["event"] in ("offer", "progress") for e in receiver.events)
    assert list((tmp_path / "out").iterdir()) == []


def test_sender_confirming_the_words_sends(server: str, tmp_path: Path) -> None:
    """Answered yes, the transfer goes ahead and the file arrives."""
    child, receiver, _ = _sender_at_question(server, tmp_path)
    child.sendline("y")
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0, child.before
    assert receiver.wait() == 0, receiver.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == "secret"


def test_receiver_declining_the_words_accepts_nothing(server: str, tmp_path: Path) -> None:
    """A receiver with --verify asks before accepting: answered no, both stop (9) and
    nothing is written."""
    (tmp_path / "a.txt").write_text("secret")
    sender = Peer(["send", "a.txt", "--server", server, "--json"], cwd=tmp_path)
    code = sender.event("code")["code"]
    out = tmp_path / "out"
    out.mkdir()
    child = terminal(["receive", code, "--server", server, "--verify"], out)
    child.expect(r"Verify: (\w+) (\w+) (\w+) (\w+)")
    child.expect_exact("Does the sender show the same words? [y/N]")
    child.sendline("n")
    assert exit_status(child) == DECLINED_EXIT
    assert sender.wait() == DECLINED_EXIT
    assert not any(e["event"] == "progress" and e["done"] > 0 for e in sender.events)
    assert list(out.iterdir()) == []


def test_verify_without_a_terminal_needs_yes(server: str, tmp_path: Path) -> None:
    """Without a terminal --verify cannot ask: a usage error (2) on either side, before
    anything connects, unless --yes says to show the words only."""
    (tmp_path / "a.txt").write_text("secret")
    sender = Peer(["send", "a.txt", "--server", server, "--json", "--verify"], cwd=tmp_path)
    assert sender.wait() == USAGE_EXIT
    assert "--verify" in sender.last("error")["message"]
    receiver = _receiver(server, "7-guitar-ocean", tmp_path / "out", "--verify")
    assert receiver.wait() == USAGE_EXIT
    sender = Peer(
        ["send", "a.txt", "--server", server, "--json", "--verify", "--yes"], cwd=tmp_path
    )
    code = sender.event("code")["code"]
    receiver = _receiver(server, code, tmp_path / "out", "--verify", "--yes")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert sender.last("verify")["words"] == receiver.last("verify")["words"]


def test_many_mode_asks_for_each_receiver(server: str, tmp_path: Path) -> None:
    """With --many, the sender asks about each receiver's own words (its own keys), naming
    the receiver, before anything is sent to it."""
    (tmp_path / "a.txt").write_text("secret")
    child = terminal(["send", "a.txt", "--server", server, "--verify", "--many", "1"], tmp_path)
    child.expect(r"\b(\d+-[a-z]+-[a-z]+)\b")
    receiver = _receiver(server, child.match.group(1), tmp_path / "out", "--yes", "--verify")
    words = " ".join(receiver.event("verify")["words"])
    child.expect(r"Does receiver 1\S* .*show the words (\w+ \w+ \w+ \w+)\? \[y/N\]")
    assert child.match.group(1) == words
    child.sendline("y")
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0, child.before
    assert receiver.wait() == 0, receiver.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == "secret"
