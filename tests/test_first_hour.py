"""Issue 16, "the first hour": the CLI surface, output a person can copy, and the checks made
before a code is printed or an offer accepted. Real processes, a real signal server."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import p2pshare
from p2pshare import session
from p2pshare.codes import complete, unknown_words, wordlist, words_from_key
from p2pshare.config import Settings
from p2pshare.json_reporter import JsonReporter
from p2pshare.pake import PakeSession, Role
from p2pshare.progress import browser_link, format_size, summary_line
from tests.cli_helpers import (
    P2PSHARE,
    ROOT,
    Peer,
    leftovers,
    peer_env,
    run_signal_server,
    start_pair,
)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def reachable_by_nobody() -> Iterator[None]:
    """The checkout may sit in a 0700 directory (``mktemp -d``, CI's folder): let user nobody
    traverse to it (search permission on its parents) and import from it (the checkout itself
    readable: Python lists the directories on its path) for these tests, then put every mode
    back."""
    changed = []
    for path in sorted({ROOT, *ROOT.parents}):
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = mode | stat.S_IXOTH | (stat.S_IROTH if path == ROOT else 0)
        if wanted != mode:
            path.chmod(wanted)
            changed.append((path, mode))
    try:
        yield
    finally:
        for path, mode in reversed(changed):
            path.chmod(mode)


@pytest.fixture
def world_dirs(reachable_by_nobody: None) -> Iterator[tuple[Path, Path]]:
    """Source and output directories another user can reach (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="p2pshare-fh-"))
    base.chmod(0o755)
    src, out = base / "src", base / "out"
    src.mkdir(mode=0o755)
    out.mkdir(mode=0o777)
    try:
        yield src, out
    finally:
        shutil.rmtree(base)


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    proc = subprocess.run(
        [P2PSHARE, *args],
        capture_output=True,
        text=True,
        env=env or peer_env(COLUMNS="60"),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


# -- the CLI surface --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["send"], ["receive"]])
def test_help_shows_no_typer_type_names(command: list[str]) -> None:
    """Help names values in words (PATH, CODE, URL), never <bool>, <int> or <list[Path]>."""
    status, out, _ = run(*command, "--help")
    assert status == 0
    assert not re.search(r"<(bool|int|str|list|Path)", out), out
    assert "[paths]" not in out


def test_send_usage_names_the_argument_in_capitals() -> None:
    """Usage shows [PATH]... (not typer's [paths]...) and the receive line stays whole."""
    _, out, _ = run("send", "--help")
    assert out.startswith("Usage: p2pshare send [OPTIONS] [PATH]...")
    assert "\n    p2pshare receive CODE\n" in out


def test_bare_command_prints_help_and_succeeds() -> None:
    """`p2pshare` alone is a request for help: help on stdout, exit 0; the two commands it
    shows are whole lines, even at 60 columns."""
    status, out, err = run()
    assert status == 0, err
    assert "Usage: p2pshare" in out
    assert "\n    p2pshare send FILE " in out and "\n    p2pshare receive CODE " in out


def test_version_short_and_long() -> None:
    """-V and --version both print the version."""
    for flag in ("-V", "--version"):
        status, out, _ = run(flag)
        assert status == 0 and out.strip() == f"p2pshare {p2pshare.__version__}"


@pytest.mark.parametrize(
    ("alias", "command"), [("recv", "receive"), ("rx", "receive"), ("tx", "send")]
)
def test_aliases_are_the_same_commands(alias: str, command: str) -> None:
    """The names people type out of habit run the same command (same options)."""
    _, alias_help, _ = run(alias, "--help")
    _, real_help, _ = run(command, "--help")
    assert alias_help.replace(alias, command, 1) == real_help


def test_shell_completion_is_offered_and_completes_code_words() -> None:
    """--install-completion exists, and the completion script completes code words."""
    _, out, _ = run("--help")
    assert "--install-completion" in out
    env = peer_env(
        _P2PSHARE_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="p2pshare receive 7-guitar-oc"
    )
    status, out, _ = run(env=env)
    assert status == 0 and "7-guitar-ocean" in out


@pytest.mark.parametrize(
    "args",
    [
        ["send", "--code-length", "many"],  # typer's own parsing
        ["send", "--no-such-option", "x"],  # typer's own parsing
        ["send"],  # ours: nothing to send
        ["send", "a", "--text", "b"],  # ours
        ["receive", "not-a-code"],  # ours
    ],
)
def test_every_usage_error_looks_the_same(args: list[str]) -> None:
    """Usage errors, typer's and ours: one `p2pshare: error:` line, exit 2, no box."""
    status, _, err = run(*args)
    assert status == 2
    assert err.startswith("p2pshare: error: ") and err.count("\n") == 1, err
    assert "╭" not in err and "Usage:" not in err


def test_usage_error_with_json_is_an_error_event() -> None:
    """With --json a usage error is also reported as an `error` event named `usage`."""
    status, out, _ = run("send", "--code-length", "many", "--json")
    assert status == 2
    assert '"event": "error"' in out and '"error": "usage"' in out


def test_final_progress_is_reported_once() -> None:
    """The JSON reporter never repeats the same figures (the final one came twice)."""
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    reporter = JsonReporter(out=Out())  # type: ignore[arg-type]
    for done in (0, 5, 10, 10, 10):
        reporter(session.Progress(done, 10))
    assert [line for line in lines if '"done": 10' in line] == [
        '{"event": "progress", "done": 10, "total": 10}\n'
    ]


# -- units and wording ------------------------------------------------------------------------


def test_one_unit_system() -> None:
    """Sizes are IEC everywhere; tiny transfers get no speed instead of 0.0 MB/s."""
    assert format_size(0) == "0 bytes" and format_size(1) == "1 byte"
    assert format_size(3_000_000) == "2.9 MiB"
    assert format_size(5 * 1024**3) == "5.0 GiB"
    tiny = session.TransferResult(5, 0.004, 1, None, None, 5)
    line = summary_line(tiny, "Received")
    assert " s (" not in line and "/s" not in line and "5 bytes" in line
    big = session.TransferResult(3_000_000, 2.0, 1, None, None, 1_000_000)
    line = summary_line(big, "Received")
    assert "2.9 MiB" in line and "976.6 KiB sent" in line and "MB" not in line


def test_browser_link_follows_the_server_scheme() -> None:
    """ws:// gives an http:// link and wss:// an https:// one, the code in the fragment."""
    assert browser_link("7-a-b", "ws://10.0.0.2:4750") == "http://10.0.0.2:4750/#7-a-b"
    assert browser_link("7-a-b", "wss://x.org/") == "https://x.org/#7-a-b"
    assert browser_link("7-a-b", None) is None


def test_code_word_helpers() -> None:
    """Tab completes the last word from the list; unknown words are found before connecting."""
    assert complete("7-guitar-oce") == ["7-guitar-ocean"]
    assert complete("gui") == []  # no nameplate yet
    assert set(complete("7-")) == {f"7-{w}" for w in wordlist()}
    assert unknown_words(p2pshare_code("7-guitar-gutiar")) == ("gutiar",)


def p2pshare_code(text: str) -> p2pshare.codes.Code:
    from p2pshare.codes import parse_code

    return parse_code(text)


def test_verification_words_match_only_with_the_same_key() -> None:
    """Both sides of a PAKE derive the same --verify words; another session differs."""

    def pair(code: bytes) -> tuple[PakeSession, PakeSession]:
        a, b = PakeSession(Role.SENDER, code), PakeSession(Role.RECEIVER, code)
        ma, mb = a.start(), b.start()
        a.finish(mb)
        b.finish(ma)
        return a, b

    a, b = pair(b"7-guitar-ocean")
    c, _ = pair(b"7-guitar-ocean")
    assert a.verification_words() == b.verification_words()
    assert len(a.verification_words()) == 4
    assert a.verification_words() != c.verification_words()
    assert words_from_key(bytes(range(4))) == wordlist()[:4]


def test_python_api_exports_and_types() -> None:
    """Event types are importable from p2pshare; the package ships py.typed."""
    assert p2pshare.CodeReady is session.CodeReady
    assert p2pshare.Progress is session.Progress
    assert p2pshare.TransferResult is session.TransferResult
    assert (Path(p2pshare.__file__).parent / "py.typed").is_file()


# -- output that can be copied ----------------------------------------------------------------


def test_long_code_and_command_are_never_wrapped(server: str, dirs: tuple[Path, Path]) -> None:
    """A 16-word code and the --server command come out on one line, even to a pipe."""
    src, _ = dirs
    (src / "a.txt").write_text("x")
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--code-length", "16"], cwd=src)
    try:
        code_line = sender.stderr_line("Code: ")
        run_line = sender.stderr_line("On the other computer run:")
    finally:
        sender.kill()
    code = code_line.split("Code: ", 1)[1].strip()
    assert len(code.split("-")) == 17
    assert run_line.rstrip("\n").endswith(f"p2pshare receive --server {server} {code}")


def test_text_message_both_sides(server: str, dirs: tuple[Path, Path]) -> None:
    """--text - reads stdin; the JSON offer says it is text; the receiver prints it."""
    src, out = dirs
    sender = Peer(
        ["send", "--text", "-", "--server", server, "--json"], cwd=src, stdin=subprocess.PIPE
    )
    assert sender.proc.stdin is not None
    sender.proc.stdin.write("the wifi password is hunter2\n")
    sender.proc.stdin.close()
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server, "--json", "--yes"], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert receiver.last("offer")["text"] is True
    assert receiver.last("done")["text"] == "the wifi password is hunter2\n"


def test_hide_progress_and_qr(server: str, dirs: tuple[Path, Path]) -> None:
    """--hide-progress draws no bar; --qr draws the browser link as a QR code."""
    src, out = dirs
    (src / "a.bin").write_bytes(os.urandom(200_000))
    sender = Peer(["send", str(src / "a.bin"), "--server", server, "--qr"], cwd=src)
    link = sender.stderr_line("Or open in a browser:").split(": ", 1)[1].strip()
    code = link.rsplit("#", 1)[1]
    assert link == f"http://{server.split('://')[1]}/#{code}"
    with urllib.request.urlopen(link.split("#")[0], timeout=10) as page:  # the browser page
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    receiver = Peer(
        ["receive", code, "--server", server, "--yes", "--hide-progress", "-o", str(out)], cwd=out
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert "█" in sender.stderr or "▀" in sender.stderr
    assert "━" not in receiver.stderr and "Received" in receiver.stderr


# -- checks before the code -------------------------------------------------------------------


def test_empty_path_is_refused(tmp_path: Path) -> None:
    """`send ""` (an unset variable) is a usage error, not the current directory."""
    (tmp_path / "secret").write_text("x")
    status, _, err = run("send", "", "--server", "ws://127.0.0.1:9", cwd=tmp_path)
    assert status == 2 and "empty path" in err


def test_window_knob_is_bounded(tmp_path: Path) -> None:
    """A window too small to ever carry a message is refused up front, not a silent stall."""
    env = peer_env(P2PSHARE_WINDOW_BYTES="16384")
    status, _, err = run("send", "--text", "x", "--server", "ws://127.0.0.1:9", env=env)
    assert status == 2 and "P2PSHARE_WINDOW_BYTES" in err
    with pytest.raises(ValueError):
        Settings(window_bytes=16384)


def test_unreadable_file_is_refused_before_the_code(world_dirs: tuple[Path, Path]) -> None:
    """A file the user cannot read (here: the user is nobody) stops the sender with exit 11
    and one line, before any code is printed; --skip-unreadable sends the rest."""
    src, _ = world_dirs
    tree = src / "tree"
    tree.mkdir(mode=0o755)
    (tree / "ok.txt").write_text("ok")
    (tree / "locked.txt").write_text("no")
    (tree / "locked.txt").chmod(0o600)
    proc = subprocess.run(
        [*NOBODY, P2PSHARE, "send", str(tree), "--server", "ws://127.0.0.1:9", "--json"],
        capture_output=True,
        text=True,
        env=peer_env(),
        cwd=src,
        timeout=60,
    )
    assert proc.returncode == 11, proc.stderr
    assert '"event": "code"' not in proc.stdout
    assert "locked.txt" in proc.stdout and "--skip-unreadable" in proc.stdout


def test_read_only_destination_is_refused_before_accepting(
    server: str, world_dirs: tuple[Path, Path]
) -> None:
    """Receiving into a directory the user cannot write stops at the offer: exit 11, and
    the sender hears that the receiver stopped, before any byte moved."""
    src, out = world_dirs
    (src / "a.txt").write_text("x")
    src.chmod(0o755)
    (src / "a.txt").chmod(0o644)
    out.chmod(0o555)
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    proc = subprocess.run(
        [*NOBODY, P2PSHARE, "receive", code, "--server", server, "--json", "--yes"],
        capture_output=True,
        text=True,
        env=peer_env(),
        cwd=out,
        timeout=90,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 11, proc.stderr
    assert "cannot write" in events[-1]["message"]
    assert not any(e["event"] == "progress" for e in events)
    assert sender.wait() == 11
    assert leftovers(out) == []


def test_output_with_trailing_slash_is_a_directory(server: str, dirs: tuple[Path, Path]) -> None:
    """`-o newdir/` saves the file inside a new directory newdir, not as a file newdir."""
    src, out = dirs
    (src / "a.txt").write_text("inside")
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", "newdir/"], cwd=out
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert (out / "newdir" / "a.txt").read_text() == "inside"


# -- after the split: pairing and session ----------------------------------------------------


def test_verify_shows_the_same_words_on_both_sides(server: str, dirs: tuple[Path, Path]) -> None:
    """--verify: both sides report the same four words, derived from the session key."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    sender, receiver = start_pair(server, src / "a.txt", out, "--yes", "--verify")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert not any(e["event"] == "verify" for e in sender.events)  # not asked for
    words = receiver.last("verify")["words"]
    assert len(words) == 4
    sender2, receiver2 = start_pair(
        server,
        src / "a.txt",
        out,
        "--yes",
        "--verify",
        "--overwrite",
        send_args=("--verify", "--yes"),
    )
    assert receiver2.wait() == 0 and sender2.wait() == 0
    assert sender2.last("verify")["words"] == receiver2.last("verify")["words"] != words


def test_receiver_can_start_first(server: str, dirs: tuple[Path, Path]) -> None:
    """With --wait the receiver may start before the sender, on a code agreed in advance."""
    src, out = dirs
    (src / "a.txt").write_text("early bird")
    code = "4242-purple-tractor"
    receiver = Peer(
        ["receive", "--server", server, "--json", "--yes", "--wait", "60", "-o", str(out)],
        cwd=out,
        env=peer_env(P2PSHARE_CODE=code),
    )
    # The receiver holds the room once the server lists it; then the sender joins it.
    sender = Peer(
        ["send", str(src / "a.txt"), "--server", server, "--json"],
        cwd=src,
        env=peer_env(P2PSHARE_CODE=code),
    )
    assert receiver.wait() == 0, receiver.events
    assert sender.wait() == 0, sender.events
    assert (out / "a.txt").read_text() == "early bird"


def test_wait_gives_up_with_no_such_code(server: str, dirs: tuple[Path, Path]) -> None:
    """--wait is bounded: nobody came, so exit 4 with a message saying how long it waited."""
    receiver = Peer(
        ["receive", "31-purple-tractor", "--server", server, "--json", "--wait", "1"],
        cwd=dirs[1],
    )
    assert receiver.wait() == 4, receiver.events
    assert "within 1 s" in receiver.last("error")["message"]


def test_text_sender_reports_what_it_sent(server: str, dirs: tuple[Path, Path]) -> None:
    """The sender of --text counts its bytes (it said `Sent 0 bytes`) and says it was text."""
    src, out = dirs
    sender = Peer(["send", "--text", "hello", "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server, "--json", "--yes"], cwd=out)
    assert receiver.wait() == 0
    assert sender.wait() == 0
    assert sender.last("done")["bytes"] == 5
    progress = [e["done"] for e in sender.events if e["event"] == "progress"]
    assert progress[-1] == 5 and progress.count(5) == 1
    human = summary_line(session.TransferResult(5, 0.01, 1, None, None, 5), "Sent", True)
    assert human == "Sent the text message (5 bytes)."


def test_skip_unreadable_sends_the_rest(server: str, world_dirs: tuple[Path, Path]) -> None:
    """--skip-unreadable leaves out what cannot be read, with a warning, and sends the rest."""
    src, out = world_dirs
    tree = src / "tree"
    tree.mkdir(mode=0o755)
    (tree / "ok.txt").write_text("ok")
    (tree / "locked.txt").write_text("no")
    (tree / "locked.txt").chmod(0o600)
    sender = subprocess.Popen(
        [*NOBODY, P2PSHARE, "send", str(tree), "--server", server, "--json", "--skip-unreadable"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=peer_env(),
        cwd=src,
    )
    assert sender.stdout is not None
    seen = [json.loads(sender.stdout.readline()), json.loads(sender.stdout.readline())]
    assert seen[0]["event"] == "warning" and "locked.txt" in seen[0]["message"]
    receiver = Peer(["receive", seen[1]["code"], "--server", server, "--json", "--yes"], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait(60) == 0
    assert sorted(p.name for p in (out / "tree").iterdir()) == ["ok.txt"]


def test_no_large_packets_keeps_the_small_size(tmp_path: Path) -> None:
    """--no-large-packets on either side keeps the connection at 1,200-byte packets (the
    link report of each side says the attribute was not used)."""
    import json as _json

    from tests.cli_helpers import start_pair

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(256 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    report = tmp_path / "links.jsonl"
    env = peer_env(P2PSHARE_LINK_REPORT=str(report))
    with run_signal_server("--port", "0") as url:
        sender, receiver = start_pair(url, src, out, "--yes", "--no-large-packets", env=env)
        assert receiver.wait() == 0 and sender.wait() == 0, receiver.stderr
    links = [_json.loads(line) for line in report.read_text().splitlines()]
    assert len(links) == 2
    assert all(link.get("large", {}).get("state") != "on" for link in links), links
    assert (out / "f.bin").read_bytes() == src.read_bytes()
