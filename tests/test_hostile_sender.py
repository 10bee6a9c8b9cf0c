"""A malicious sender against the real receiver: every hostile offer is refused, safely."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pshare.errors import ERRORS_BY_NAME, UnsafeNameError
from tests.cli_helpers import Peer, hostile_peer, peer_env, run_signal_server
from tests.hostile_sender import BAD_NAMES, COMPLETING, DEEP_PARTS, cases

EXIT_BY_CASE = {
    "million-entries": 9,  # declined on the declared count, before any entry is collected
    "home-ssh-key": 9,  # declined: hidden files at the top of the receiver's home
    "larger-than-disk": 11,  # disk-full: declined before any byte
    "symlink-file": 9,  # an existing entry (the link) is not replaced without --overwrite
}
RAW_DANGER = ("\x1b", "\x00", "\x07", "\u202e", "\u200b", "\u2028")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # One server for the module; the join rate limit is lifted for this many quick pairs.
    with run_signal_server("--port", "0", "--joins-per-ip-per-minute", "0") as url:
        yield url


def run_case(server: str, tmp_path: Path, case: str, *extra: str) -> tuple[Peer, Path, Path]:
    """The receiver saves into ``out``; for the home-* cases ``out`` is its $HOME."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    if case == "symlink-dir":
        (out / "link").symlink_to(outside, target_is_directory=True)
    if case == "symlink-file":
        (out / "link").symlink_to(outside / "target.txt")
    if case == "existing-dir-mode":
        (out / "private").mkdir(mode=0o700)
        (out / "private" / "secret").write_text("s")
        os.utime(out / "private", (1_600_000_000, 1_600_000_000))
    with hostile_peer("tests.hostile_sender", server, case) as (_, code):
        env = peer_env(HOME=str(out)) if case.startswith("home-") else None
        receiver = Peer(
            ["receive", code, "--server", server, "--yes", "-o", str(out), *extra],
            cwd=tmp_path,
            env=env,
        )
        receiver.wait()
    return receiver, out, outside


@pytest.mark.parametrize("case", sorted(set(cases()) - COMPLETING))
def test_hostile_offer_is_refused(server: str, tmp_path: Path, case: str) -> None:
    """Refused with a clear reason; nothing written anywhere; nothing printed raw."""
    receiver, out, outside = run_case(server, tmp_path, case, "--json")
    error = receiver.last("error")
    assert error["message"] and error["error"] in (
        "unsafe-name",
        "protocol",
        "integrity",
        "disk-full",
        "declined",
    ), (receiver.events, receiver.stderr)
    if case in BAD_NAMES:
        # A path over the wire format's length cap never reaches the name rules.
        assert error["error"] == ("protocol" if case == "long-path" else "unsafe-name")
    expected = EXIT_BY_CASE.get(case, ERRORS_BY_NAME[error["error"]].exit_code)
    assert receiver.proc.returncode == expected, (receiver.events, receiver.stderr)
    assert not any(d in error["message"] for d in RAW_DANGER)
    assert not any(d in receiver.stderr for d in RAW_DANGER)
    assert sorted(p.name for p in out.iterdir()) == (["link"] if "symlink" in case else [])
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/p2pshare-owned").exists()


@pytest.mark.parametrize("case", ["ansi-escape", "osc-title", "bidi-override", "control"])
def test_hostile_names_are_printed_escaped(server: str, tmp_path: Path, case: str) -> None:
    """In a terminal-style (human) run the refused name is shown escaped, never raw."""
    receiver, _, _ = run_case(server, tmp_path, case)
    assert receiver.proc.returncode == UnsafeNameError.exit_code
    assert "refused unsafe" in receiver.stderr
    assert not any(d in receiver.stderr for d in RAW_DANGER)


def test_every_bad_name_is_a_case() -> None:
    """The table covers each hostile-name family the receiver must refuse."""
    assert {
        "absolute",
        "dotdot-inside",
        "backslash",
        "drive-letter",
        "unc",
        "nul",
        "ansi-escape",
        "bidi-override",
        "zero-width",
        "long-name",
        "long-path",
        "device-con",
        "trailing-dot",
        "trailing-space",
    } <= set(BAD_NAMES)


def _read_deep(out: Path) -> bytes:
    """The file at DEEP_PATH under ``out``, opened one component at a time (its full path is
    too long for the system)."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in DEEP_PARTS[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(DEEP_PARTS[-1], os.O_RDONLY, dir_fd=fd)
        with os.fdopen(leaf, "rb") as f:
            return f.read()
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", ["beyond-path-max-one-entry", "beyond-path-max-two-entries"])
def test_a_destination_beyond_path_max_follows_one_rule(
    server: str, tmp_path: Path, case: str
) -> None:
    """A destination longer than PATH_MAX is received the same way whether the offer has one
    entry or two (written through directory descriptors), never exit 1."""
    receiver, out, _ = run_case(server, tmp_path, case, "--json")
    assert receiver.proc.returncode == 0, (receiver.events, receiver.stderr)
    assert _read_deep(out) == b"abc"
    assert "Traceback" not in receiver.stderr


def test_existing_directories_keep_their_mode_and_times(server: str, tmp_path: Path) -> None:
    """A dir entry naming a directory the receiver already has (0700) does not chmod or utime
    it, even when the transfer succeeds; the new file inside is received."""
    receiver, out, _ = run_case(server, tmp_path, "existing-dir-mode", "--json")
    assert receiver.proc.returncode == 0, (receiver.events, receiver.stderr)
    st = (out / "private").stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    # Writing new.txt inside updates the mtime as any write would; the sender's 86400 is
    # never applied.
    assert st.st_mtime > 1_600_000_000
    assert (out / "private" / "new.txt").read_bytes() == b"abc"
    assert (out / "private" / "secret").read_text() == "s"
