"""End to end through the CLI: trees, several paths, text, and stdin to stdout."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.cli_helpers import (
    P2PSHARE,
    Peer,
    leftovers,
    measured,
    peak_rss,
    peer_env,
)

MIB = 1024 * 1024


def snapshot(root: Path) -> dict[str, tuple[str, int, int, bytes | None]]:
    """Every entry under ``root``: kind, permission bits, whole-second mtime, content."""
    result: dict[str, tuple[str, int, int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISDIR(st.st_mode):
            result[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime), None)
        else:
            result[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), path.read_bytes())
    return result


def make_tree(base: Path) -> Path:
    tree = base / "Ordner mit Leerzeichen"
    (tree / "sub dir" / "日本語").mkdir(parents=True)
    (tree / "empty dir").mkdir()
    (tree / "sub dir" / "empty.txt").write_bytes(b"")
    (tree / "sub dir" / "日本語" / "café ☕.txt").write_text("unicode inside\n")
    (tree / "big.bin").write_bytes(os.urandom(3 * MIB + 17))
    script = tree / "run me.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (tree / "read-only.txt").write_text("ro")
    (tree / "read-only.txt").chmod(0o444)
    for i, path in enumerate(sorted(tree.rglob("*"), reverse=True)):
        os.utime(path, (1_600_000_000 + i * 1000, 1_600_000_000 + i * 1000))
    os.utime(tree, (1_500_000_000, 1_500_000_000))
    return tree


def test_tree_arrives_identical(server: str, tmp_path: Path) -> None:
    """A nested tree with unicode, spaces, empty files and empty directories arrives file by
    file identical: contents, executable bits and modification times."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    tree = make_tree(src)
    sender = Peer(["send", str(tree), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)], cwd=out
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    offer = receiver.last("offer")
    assert offer["files"] == 5 and offer["dirs"] == 4
    assert offer["names"] == ["Ordner mit Leerzeichen/"]
    assert snapshot(out / tree.name) == snapshot(tree)
    assert receiver.last("done")["files"] == 5


def test_several_paths_at_once_into_a_new_directory(server: str, tmp_path: Path) -> None:
    """Files and a directory in one go; -o names a directory that is created."""
    src = tmp_path / "src"
    (src / "photos").mkdir(parents=True)
    (src / "photos" / "a.jpg").write_bytes(b"jpeg")
    (src / "notes.txt").write_text("notes")
    (src / "todo.md").write_text("- [ ] test")
    sender = Peer(["send", "notes.txt", "photos", "todo.md", "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    dest = tmp_path / "incoming"
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(dest)], cwd=tmp_path
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert sorted(receiver.last("offer")["names"]) == ["notes.txt", "photos/", "todo.md"]
    assert (dest / "notes.txt").read_text() == "notes"
    assert (dest / "photos" / "a.jpg").read_bytes() == b"jpeg"
    assert (dest / "todo.md").read_text() == "- [ ] test"


def test_existing_file_in_tree_declines_everything(server: str, tmp_path: Path) -> None:
    """One existing file is enough to decline before any byte moves; nothing is touched."""
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("new a")
    (src / "d" / "b.txt").write_text("new b")
    (out / "d").mkdir(parents=True)
    (out / "d" / "b.txt").write_text("old b")
    sender = Peer(["send", "d", "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)], cwd=out
    )
    assert receiver.wait() == 9
    assert sender.wait() == 9
    assert "b.txt already exists" in receiver.last("error")["message"]
    assert leftovers(out / "d") == ["b.txt"]
    assert (out / "d" / "b.txt").read_text() == "old b"


def test_symlinks_are_skipped_with_a_warning(server: str, tmp_path: Path) -> None:
    """Symlinks in a sent directory are not followed: skipped, and the sender says so."""
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "d").mkdir(parents=True)
    out.mkdir()
    (src / "d" / "real.txt").write_text("real")
    (src / "d" / "link.txt").symlink_to("/etc/hostname")
    sender = Peer(["send", "d", "--server", server, "--json"], cwd=src)
    warning = sender.event("warning")
    assert "link.txt" in warning["message"] and "symlink" in warning["message"]
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)], cwd=out
    )
    assert receiver.wait() == 0 and sender.wait() == 0
    assert leftovers(out / "d") == ["real.txt"]


def test_text_message_in_json(server: str, tmp_path: Path) -> None:
    """With --json the text arrives in the done event; nothing is written to disk."""
    sender = Peer(
        ["send", "--text", "hello\n\x1b[31mred", "--server", server, "--json"], cwd=tmp_path
    )
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server, "--json", "--yes"], cwd=tmp_path)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert receiver.last("done")["text"] == "hello\n\x1b[31mred"
    assert receiver.last("offer")["files"] == 1
    assert leftovers(tmp_path) == []


def test_text_message_stdout(server: str, tmp_path: Path) -> None:
    """The text itself is what the receiver prints on stdout (not a file)."""
    sender = Peer(["send", "--text", "hello, wörld", "--server", server, "--json"], cwd=tmp_path)
    code = sender.event("code")["code"]
    proc = subprocess.run(
        [P2PSHARE, "receive", code, "--server", server, "--yes"],
        cwd=tmp_path,
        env=peer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello, wörld\n"
    assert sender.wait() == 0
    assert leftovers(tmp_path) == []


def test_stdin_to_stdout_with_bounded_memory(server: str, tmp_path: Path) -> None:
    """cat big | p2pshare send -  and  p2pshare receive -o - > file  stream a file larger than
    either process holds: both peaks stay far below the file size; the bytes are exact."""
    size = 200 * MIB
    source = tmp_path / "big.iso"
    with open(source, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    rss = tmp_path / "rss"
    rss.mkdir()
    sender = Peer(
        ["send", "-", "--name", "big.iso", "--server", server, "--json"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        rss_file=rss / "sender",
    )

    def feed() -> None:
        assert sender.proc.stdin is not None
        with open(source, "rb") as f:
            stdin = sender.proc.stdin
            assert isinstance(stdin, io.TextIOWrapper)
            shutil.copyfileobj(f, stdin.buffer, MIB)
        sender.proc.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code = sender.event("code")["code"]
    receiver = subprocess.Popen(
        measured(
            [P2PSHARE, "receive", code, "--server", server, "--yes", "-o", "-"], rss / "receiver"
        ),
        cwd=tmp_path,
        env=peer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    digest = hashlib.sha256()
    received = 0

    def drain() -> None:
        nonlocal received
        assert receiver.stdout is not None
        while chunk := receiver.stdout.read(MIB):
            digest.update(chunk)
            received += len(chunk)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    receiver_rc = receiver.wait(120)
    drainer.join(30)
    assert receiver_rc == 0, receiver.stderr.read() if receiver.stderr else ""
    assert sender.wait() == 0
    sender_rss, receiver_rss = peak_rss(rss / "sender"), peak_rss(rss / "receiver")
    with open(source, "rb") as src:
        expected = hashlib.file_digest(src, "sha256").hexdigest()
    assert received == size and digest.hexdigest() == expected
    assert sender_rss < 160 * MIB and receiver_rss < 160 * MIB, (sender_rss, receiver_rss)
    assert leftovers(tmp_path) == ["big.iso", "rss"]


HOSTILE_TEXT = "hello \x1b]0;PWNED\x07\x1b[2J \u202eevil\u202c \x7fend"  # argv holds no NUL


@pytest.mark.parametrize("raw", [False, True])
def test_text_message_to_a_pipe_is_escaped_unless_raw(
    server: str, tmp_path: Path, raw: bool
) -> None:
    """Escape sequences, bidi overrides and controls reach a pipe escaped; --raw gives the
    bytes."""
    sender = Peer(["send", "--text", HOSTILE_TEXT, "--server", server, "--json"], cwd=tmp_path)
    code = sender.event("code")["code"]
    proc = subprocess.run(
        [P2PSHARE, "receive", code, "--server", server, "--yes", *(["--raw"] if raw else [])],
        cwd=tmp_path,
        env=peer_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if raw:
        assert proc.stdout == (HOSTILE_TEXT + "\n").encode()
    else:
        assert proc.stdout == (b"hello \\x1b]0;PWNED\\x07\\x1b[2J \\u202eevil\\u202c \\x7fend\n")
        assert not any(c in proc.stdout for c in (b"\x1b", b"\x07", b"\x7f", "\u202e".encode()))


def test_sender_refuses_names_a_receiver_would_refuse(server: str, tmp_path: Path) -> None:
    """A file whose name holds an escape character is refused before any code is printed,
    with exit 12 and the file named (escaped); the same for two names that differ by case."""
    bad = tmp_path / "bad\x1b[31mname"
    bad.write_text("x")
    sender = Peer(["send", str(bad), "--server", server, "--json"], cwd=tmp_path)
    assert sender.wait() == 12
    error = sender.last("error")
    assert error["error"] == "unsafe-name" and "bad\\x1b[31mname" in error["message"]
    assert not any(e["event"] == "code" for e in sender.events)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Readme.txt").write_text("a")
    (tree / "README.TXT").write_text("b")
    sender = Peer(["send", str(tree), "--server", server, "--json"], cwd=tmp_path)
    assert sender.wait() == 12
    assert "same file" in sender.last("error")["message"]


def test_max_entries_declines_a_larger_offer(server: str, tmp_path: Path) -> None:
    """--max-entries bounds what a receiver takes: a larger offer is declined (exit 9 both
    sides) before anything is asked or written, and the message names the flag."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b", "c"):
        (tree / name).write_text(name)
    out = tmp_path / "out"
    out.mkdir()
    sender = Peer(["send", str(tree), "--server", server, "--json"], cwd=tmp_path)
    code = sender.event("code")["code"]
    receiver = Peer(
        [
            "receive",
            code,
            "--server",
            server,
            "--json",
            "--yes",
            "--max-entries",
            "3",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
    )
    assert receiver.wait() == 9 and sender.wait() == 9
    assert "4 entries, more than 3" in receiver.last("error")["message"]
    assert "--max-entries" in receiver.last("error")["message"]
    assert leftovers(out) == []
