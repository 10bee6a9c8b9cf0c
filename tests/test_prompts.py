"""Prompts, driven through a real pseudo-terminal (pexpect): `Accept?` and `Code:` end at once
with their documented exit codes, Tab completes code words, unknown words are questioned."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pexpect
import pytest

from tests.cli_helpers import P2PSHARE, Peer, peer_env

PROMPT_EXIT_S = 5
""""At once": well under the 20-30 s deadlines a stuck prompt would eventually hit."""


def terminal(args: list[str], cwd: Path) -> pexpect.spawn:
    """``p2pshare ARGS`` with a terminal on stdin, stdout and stderr."""
    env = peer_env(COLUMNS="100", TERM="dumb")
    return pexpect.spawn(
        P2PSHARE, args, cwd=str(cwd), env=env, encoding="utf-8", timeout=30, dimensions=(40, 100)
    )


def exit_status(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF, timeout=PROMPT_EXIT_S)
    child.close()
    status = child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus
    assert isinstance(status, int)
    return status


def at_accept(server: str, tmp_path: Path) -> tuple[Peer, pexpect.spawn]:
    """A sender and a receiver in a terminal, the receiver sitting at `Accept? [Y/n]`."""
    (tmp_path / "a.txt").write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    sender = Peer(["send", str(tmp_path / "a.txt"), "--server", server, "--json"], cwd=tmp_path)
    code = sender.event("code")["code"]
    child = terminal(["receive", code, "--server", server], out)
    child.expect_exact("Accept? [Y/n]")
    return sender, child


def test_ctrl_c_at_accept_ends_at_once(server: str, tmp_path: Path) -> None:
    """Ctrl-C at `Accept?` ends the receiver at once with 130; the sender hears it (7)."""
    sender, child = at_accept(server, tmp_path)
    child.sendintr()
    assert exit_status(child) == 130
    assert sender.wait() == 7
    assert "cancelled" in sender.last("error")["message"]


def test_ctrl_d_at_accept_declines(server: str, tmp_path: Path) -> None:
    """Ctrl-D at `Accept?` declines (9) instead of an EOFError; the sender is told (9)."""
    sender, child = at_accept(server, tmp_path)
    child.sendeof()
    assert exit_status(child) == 9
    assert sender.wait() == 9
    assert not (tmp_path / "out" / "a.txt").exists()


def test_sender_cancelling_ends_the_prompt(server: str, tmp_path: Path) -> None:
    """If the sender stops while the receiver sits at `Accept?`, the prompt ends at once (7)."""
    sender, child = at_accept(server, tmp_path)
    sender.send_signal(signal.SIGINT)
    assert exit_status(child) == 7
    assert "cancelled" in child.before
    assert sender.wait() == 130


def test_answering_yes_receives(server: str, tmp_path: Path) -> None:
    """Enter at `Accept? [Y/n]` accepts: the file arrives."""
    sender, child = at_accept(server, tmp_path)
    child.sendline("")
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0, child.before
    assert sender.wait() == 0
    assert (tmp_path / "out" / "a.txt").read_text() == "hello"


@pytest.mark.parametrize("key", ["intr", "eof"])
def test_code_prompt_gives_up_with_130(tmp_path: Path, key: str) -> None:
    """Ctrl-C or Ctrl-D at `Code:` ends with 130, not `Aborted.` and 1."""
    child = terminal(["receive", "--server", "ws://127.0.0.1:9"], tmp_path)
    child.expect_exact("Code: ")
    if key == "intr":
        child.sendintr()
    else:
        child.sendeof()
    assert exit_status(child) == 130
    assert "Aborted" not in (child.before or "")


def test_tab_completes_code_words(server: str, tmp_path: Path) -> None:
    """Tab at `Code:` completes a word from the list; the completed code is the one used."""
    child = terminal(["receive", "--server", server], tmp_path)
    child.expect_exact("Code: ")
    child.send("7-guitar-oce\t")
    child.expect_exact("7-guitar-ocean")
    child.sendline("")
    # Nobody sends on that code: the server says so, which proves the code was submitted.
    child.expect("no such code|nobody is waiting", timeout=30)
    assert exit_status(child) == 4


def test_unknown_words_are_questioned_before_connecting(tmp_path: Path) -> None:
    """A word outside the list gets a "did you mean", and no connection is made unless the
    user insists (a wrong code would cancel the sender's)."""
    child = terminal(["receive", "--server", "ws://127.0.0.1:9"], tmp_path)
    child.expect_exact("Code: ")
    child.sendline("7-gutiar-ocean")
    child.expect_exact("did you mean 'guitar'?")
    child.expect_exact("Use it anyway? [y/N]")
    child.sendline("n")
    child.expect_exact("Code: ")  # asked again, nothing was attempted
    child.sendeof()
    assert exit_status(child) == 130
    assert "cannot reach" not in (child.before or "")


def at_existing(server: str, tmp_path: Path) -> tuple[Peer, pexpect.spawn, Path]:
    """A receiver in a terminal, offered report.txt where a report.txt already exists."""
    (tmp_path / "report.txt").write_text("new version")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.txt").write_text("precious")
    sender = Peer(
        ["send", str(tmp_path / "report.txt"), "--server", server, "--json"], cwd=tmp_path
    )
    code = sender.event("code")["code"]
    child = terminal(["receive", code, "--server", server], out)
    child.expect_exact("Offer: report.txt (1 file, 11 bytes) into ")  # first, then one question
    child.expect_exact("Already here:")
    child.expect_exact("[o]verwrite, [r]ename to report (1).txt, or [c]ancel?")
    return sender, child, out


@pytest.mark.parametrize(
    ("answer", "status", "files"),
    [
        ("o", 0, {"report.txt": "new version"}),
        ("r", 0, {"report.txt": "precious", "report (1).txt": "new version"}),
        ("c", 9, {"report.txt": "precious"}),
    ],
    ids=["overwrite", "rename", "cancel"],
)
def test_existing_file_in_a_terminal_is_a_question(
    server: str, tmp_path: Path, answer: str, status: int, files: dict[str, str]
) -> None:
    """An existing file, at a terminal: the offer is shown, then one question (overwrite,
    rename or cancel), answered as the person says; overwriting or renaming accepts."""
    sender, child, out = at_existing(server, tmp_path)
    child.sendline(answer)
    child.expect(pexpect.EOF, timeout=60 if status == 0 else PROMPT_EXIT_S)
    assert "Accept?" not in (child.before or "")
    renamed = re.search(r"Saving as \S*/out/report \(1\)\.txt\.", child.before or "")
    assert (renamed is not None) is (answer == "r")
    child.close()
    assert child.exitstatus == status, child.before
    assert sender.wait() == status
    assert {p.name: p.read_text() for p in out.iterdir()} == files
