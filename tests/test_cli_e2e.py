"""End to end through the real CLI: two p2pshare processes and a real p2pshare-signal."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from websockets.sync.client import connect

from p2pshare import __version__
from tests.cli_helpers import (
    P2PSHARE,
    Peer,
    interruptible_env,
    leftovers,
    peer_env,
    run_signal_server,
    start_pair,
)
from tests.page_cache import disk_directory, resident_bytes

MIB = 1024 * 1024


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough that a transfer is still running when the test interrupts it."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(MIB))
    return path


@pytest.mark.parametrize("size", [0, 1, 10 * MIB], ids=["empty", "1-byte", "10MiB"])
def test_file_arrives_intact(server: str, dirs: tuple[Path, Path], size: int) -> None:
    """The received file is byte-identical, both sides report its BLAKE3 (the hash two CLIs
    agree on) and exit 0."""
    src, out = dirs
    data = os.urandom(size)
    (src / "data.bin").write_bytes(data)
    sender, receiver = start_pair(server, src / "data.bin", out, "--yes")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    digest = blake3.blake3(data).hexdigest()
    assert (out / "data.bin").read_bytes() == data
    assert sender.last("done")["hash"] == receiver.last("done")["hash"] == "blake3"
    assert sender.last("done")["blake3"] == receiver.last("done")["blake3"] == digest
    assert receiver.last("done")["bytes"] == size
    assert leftovers(out) == ["data.bin"]


@pytest.mark.parametrize("side", ["sender", "receiver"])
def test_a_peer_without_blake3_gets_sha256(server: str, dirs: tuple[Path, Path], side: str) -> None:
    """With BLAKE3 turned off on one side (as in a p2pshare before it), the two agree on
    SHA-256: the file arrives, verified with it, and both report it."""
    src, out = dirs
    data = os.urandom(3 * MIB + 5)
    (src / "data.bin").write_bytes(data)
    plain = peer_env(P2PSHARE_HASH="sha256")
    sender = Peer(
        ["send", str(src / "data.bin"), "--server", server, "--json"],
        cwd=src,
        env=plain if side == "sender" else None,
    )
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "--yes", "-o", str(out)],
        cwd=out,
        env=plain if side == "receiver" else None,
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "data.bin").read_bytes() == data
    for peer in (sender, receiver):
        assert peer.last("done")["hash"] == "sha256"
        assert peer.last("done")["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_large_received_file_streams_through_the_page_cache(server: str, tmp_path: Path) -> None:
    """The receiver drops what is on the disk from the page cache as it goes: a large file
    does not fill the cache (nor, in a VM whose host reclaims free memory, cost a fresh page
    per 4 KiB); the file is whole all the same."""
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(MIB) * 48
    (src / "large.bin").write_bytes(data)
    with disk_directory() as out:
        sender, receiver = start_pair(server, src / "large.bin", out, "--yes")
        assert receiver.wait() == 0, receiver.stderr
        assert sender.wait() == 0, sender.stderr
        # At most the last two writeback ranges (8 MiB each) and one write are still cached.
        assert resident_bytes(out / "large.bin") <= 20 * MIB
        assert hashlib.sha256((out / "large.bin").read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )


def test_wrong_code_stops_both_sides(server: str, dirs: tuple[Path, Path]) -> None:
    """A mistyped code makes both sides exit with the wrong-code status; nothing is written."""
    src, out = dirs
    (src / "secret.txt").write_text("top secret")
    sender = Peer(["send", str(src / "secret.txt"), "--server", server, "--json"], cwd=src)
    nameplate = sender.event("code")["code"].split("-")[0]
    receiver = Peer(
        [
            "receive",
            f"{nameplate}-wrong-words",
            "--server",
            server,
            "--json",
            "--yes",
            "-o",
            str(out),
        ],
        cwd=out,
    )
    assert receiver.wait() == 6
    assert sender.wait() == 6
    assert receiver.last("error")["error"] == sender.last("error")["error"] == "wrong-code"
    assert "wrong code" in receiver.last("error")["message"]
    assert not any(e["event"] == "connected" for e in receiver.events + sender.events)
    assert leftovers(out) == []


def test_code_from_environment(server: str, dirs: tuple[Path, Path]) -> None:
    """P2PSHARE_CODE keeps the code out of the process list."""
    src, out = dirs
    (src / "a.txt").write_text("hello")
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", "--server", server, "--json", "--yes", "-o", str(out)],
        cwd=out,
        env=peer_env(P2PSHARE_CODE=code),
    )
    assert receiver.wait() == 0, receiver.stderr
    assert code not in receiver.args
    assert sender.wait() == 0
    assert (out / "a.txt").read_text() == "hello"


def test_sender_chosen_code(server: str, dirs: tuple[Path, Path]) -> None:
    """--code lets the sender pick the code; the receiver uses it as is."""
    src, out = dirs
    (src / "a.txt").write_text("chosen")
    sender = Peer(
        ["send", str(src / "a.txt"), "--server", server, "--json"],
        cwd=src,
        env=peer_env(P2PSHARE_CODE="4711-purple-tractor"),
    )
    assert sender.event("code")["code"] == "4711-purple-tractor"
    receiver = Peer(
        ["receive", "4711-Purple-Tractor", "--server", server, "--json", "--yes", "-o", str(out)],
        cwd=out,
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert (out / "a.txt").read_text() == "chosen"


def test_third_party_gets_crowded(server: str, dirs: tuple[Path, Path]) -> None:
    """While a pair holds a code, another receiver is told 'crowded' at once."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    with connect(server, subprotocols=["p2pshare.v1"]) as squatter:  # type: ignore[list-item]
        squatter.recv()
        squatter.send('{{"type":"claim","nameplate":"{}"}}'.format(code.split("-")[0]))
        assert '"claimed"' in str(squatter.recv())
        receiver = Peer(["receive", code, "--server", server, "--json", "--yes"], cwd=out)
        assert receiver.wait() == 5
        assert receiver.last("error")["error"] == "crowded"
    # The squatter left without a word: the sender learns that its peer is gone.
    assert sender.wait() == 7
    assert leftovers(out) == []


def test_unknown_code_fails_at_once(server: str, dirs: tuple[Path, Path]) -> None:
    """A code nobody is waiting on is reported as such, with its own exit status."""
    receiver = Peer(["receive", "99-no-body", "--server", server, "--json"], cwd=dirs[1])
    assert receiver.wait() == 4
    assert receiver.last("error")["error"] == "no-such-code"


def test_existing_file_is_not_overwritten(server: str, dirs: tuple[Path, Path]) -> None:
    """Without --overwrite the receiver declines before any byte moves; the sender hears why."""
    src, out = dirs
    (src / "report.txt").write_text("new version")
    (out / "report.txt").write_text("precious")
    sender, receiver = start_pair(server, src / "report.txt", out, "--yes")
    assert receiver.wait() == 9
    assert sender.wait() == 9
    assert "--overwrite" in receiver.last("error")["message"]
    told = sender.last("error")["message"]
    # The sender hears which file, not the receiver's path nor the receiver's options.
    assert "'report.txt' already exists" in told
    assert str(out) not in told and "--overwrite" not in told
    assert (out / "report.txt").read_text() == "precious"
    assert leftovers(out) == ["report.txt"]


def test_overwrite_replaces(server: str, dirs: tuple[Path, Path]) -> None:
    """With --overwrite the existing file is replaced once the new one verified."""
    src, out = dirs
    (src / "report.txt").write_text("new version")
    (out / "report.txt").write_text("old")
    sender, receiver = start_pair(server, src / "report.txt", out, "--yes", "--overwrite")
    assert receiver.wait() == 0 and sender.wait() == 0
    assert (out / "report.txt").read_text() == "new version"


def test_no_terminal_and_no_yes_declines(server: str, dirs: tuple[Path, Path]) -> None:
    """With nobody to ask, the receiver declines and says to pass --yes."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    sender, receiver = start_pair(server, src / "a.txt", out)
    assert receiver.wait() == 9
    assert "--yes" in receiver.last("error")["message"]
    assert sender.wait() == 9
    assert leftovers(out) == []


@pytest.mark.parametrize("who", ["receiver", "sender"])
def test_ctrl_c_mid_transfer_stops_both(
    server: str, dirs: tuple[Path, Path], big_file: Path, who: str
) -> None:
    """SIGINT on either side stops both, non-zero, with nothing under the final name: only
    the partial data and its record, kept for a resend to resume (tests/test_resume.py)."""
    _, out = dirs
    sender, receiver = start_pair(server, big_file, out, "--yes", env=interruptible_env())
    victim, other = (receiver, sender) if who == "receiver" else (sender, receiver)
    victim.event("progress", where=lambda e: 0 < e["done"] < e["total"])
    victim.send_signal(signal.SIGINT)
    assert victim.wait() == 130
    assert other.wait() == 7
    assert victim.last("error")["error"] == "interrupted"
    assert "cancelled" in other.last("error")["message"]
    # Both are told that the partial data was kept and that a resend resumes.
    assert "resumes" in receiver.last("error")["message"]
    assert "again" in sender.last("error")["message"]
    left = leftovers(out)
    assert big_file.name not in left
    assert [name.rsplit(".", 1)[1] for name in left] == ["json", "part"]
    assert all(name.startswith(".p2pshare-") for name in left)


@pytest.mark.parametrize(
    ("victim", "expected"),
    [(1, {6}), (3, {6}), (5, {10, 7})],
    ids=["pake-message", "confirmation", "sealed-offer"],
)
def test_tampering_server_is_detected(
    dirs: tuple[Path, Path], victim: int, expected: set[int]
) -> None:
    """A server that alters any relayed blob cannot get a file through: both sides refuse."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    with run_signal_server(str(victim), module="tests.tampering_signal") as url:
        sender, receiver = start_pair(url, src / "a.txt", out, "--yes")
        codes = {receiver.wait(), sender.wait()}
    assert codes <= expected | {7}, (codes, receiver.stderr, sender.stderr)
    assert codes & expected
    assert not any(e["event"] == "connected" for e in receiver.events)
    assert leftovers(out) == []


@pytest.mark.parametrize("victim", [5, 6], ids=["offer-replayed", "answer-replayed"])
def test_a_replayed_sealed_message_stops_both_sides(dirs: tuple[Path, Path], victim: int) -> None:
    """A server that relays a sealed offer or answer twice: the side that finds the copy
    refuses it (10) and tells the other with the sealed abort, which stops with the same
    reason (10) instead of "could not connect" (8) at its connect deadline."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    with run_signal_server(f"dup:{victim}", module="tests.tampering_signal") as url:
        sender, receiver = start_pair(url, src / "a.txt", out, "--yes")
        codes = (sender.wait(), receiver.wait())
    assert codes == (10, 10), (codes, sender.stderr, receiver.stderr)
    detected, told = (receiver, sender) if victim == 5 else (sender, receiver)
    assert "tampering" in detected.last("error")["message"]
    assert told.last("error")["message"].startswith("the other side: ")
    assert leftovers(out) == []


def test_embedded_server(dirs: tuple[Path, Path]) -> None:
    """Without --server the sender serves the rendezvous itself and prints the full command."""
    src, out = dirs
    (src / "a.txt").write_text("no server needed")
    sender = Peer(["send", str(src / "a.txt"), "--json"], cwd=src)
    event = sender.event("code")
    assert event["server"].startswith("ws://127.0.0.1:")
    assert event["command"] == f"p2pshare receive --server {event['server']} {event['code']}"
    receiver = Peer(
        ["receive", event["code"], "--server", event["server"], "--json", "--yes", "-o", str(out)],
        cwd=out,
    )
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert (out / "a.txt").read_text() == "no server needed"


def test_human_output(server: str, dirs: tuple[Path, Path]) -> None:
    """Without --json the sender tells the user exactly what to run on the other computer."""
    src, out = dirs
    (src / "a.txt").write_text("hi")
    sender = Peer(["send", str(src / "a.txt"), "--server", server], cwd=src)
    line = sender.stderr_line("On the other computer run:")
    command = line.split("run:", 1)[1].split()
    assert command[:2] == ["p2pshare", "receive"]
    receiver = Peer(["receive", command[-1], "--server", server, "--yes", "-o", str(out)], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert "BLAKE3 verified" in receiver.stderr
    assert sender.wait() == 0
    assert (out / "a.txt").read_text() == "hi"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["receive", "not-a-code", "--server", "ws://127.0.0.1:9"], 2, "codes look like"),
        (["receive", "7-a-b"], 4, "--server"),  # no sender found on this network
        (["receive", "7-a-b", "--server", "ws://127.0.0.1:9"], 3, "cannot reach"),
        (["receive", "7-a-b", "--server", "http://[::1"], 2, "rendezvous server"),
        (["receive", "7-a-b", "--server", "127.0.0.1:99999"], 2, "port"),
        (["receive", "7-a-b", "--server", "127.0.0.1:9"], 3, "ws://127.0.0.1:9"),
        (["send", "/nonexistent/file", "--server", "ws://127.0.0.1:9"], 11, "no such file"),
        (["send", "/", "--server", "ws://127.0.0.1:9"], 11, "/"),
        (["send", "x", "--code", "7-ab"], 2, "secret"),
    ],
)
def test_bad_input_gets_one_line_and_a_status(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    """Bad input: one clear line on stderr, a specific exit status, never a traceback."""
    peer = Peer(args, cwd=tmp_path)
    assert peer.wait() == code
    lines = peer.stderr.strip().splitlines()
    # One error line, last; a status line before it is allowed ("Looking for the sender").
    errors = [line for line in lines if line.startswith("p2pshare: error:")]
    assert errors == lines[-1:] and len(lines) <= 2, peer.stderr
    assert needle in lines[-1]
    assert "Traceback" not in peer.stderr


def test_verbose_logs_never_contain_the_code_or_sdp(server: str, dirs: tuple[Path, Path]) -> None:
    """-v logs what happens but never the secret words, keys or SDP."""
    src, out = dirs
    (src / "a.txt").write_text("x")
    sender, receiver = start_pair(server, src / "a.txt", out, "--yes", "-v", send_args=("-v",))
    assert receiver.wait() == 0 and sender.wait() == 0
    code = sender.last("code")["code"]
    secret = "-".join(code.split("-")[1:])
    for log in (sender.stderr, receiver.stderr):
        assert "peer connection state" in log  # logging is on
        assert code not in log and secret not in log
        assert "a=fingerprint" not in log and "a=candidate" not in log


def test_compressible_file_goes_compressed_and_arrives_exact(
    server: str, dirs: tuple[Path, Path]
) -> None:
    """Text is sent zstd-compressed (negotiated) and arrives byte-identical."""
    src, out = dirs
    data = b"".join(f"{i},item-{i % 97},{i * 0.37:.2f}\n".encode() for i in range(400_000))
    (src / "table.csv").write_bytes(data)
    sender, receiver = start_pair(server, src / "table.csv", out, "--yes", "-v")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert "compression: zstd" in receiver.stderr
    assert (out / "table.csv").read_bytes() == data


def test_the_cli_exits_with_its_output_and_exit_handlers_but_no_teardown(tmp_path: Path) -> None:
    # main() ends with os._exit (cli_outcome.exit_process: the interpreter's teardown costs
    # 40-80 ms a run): the buffered output to a pipe must still arrive and atexit handlers run.
    marker = tmp_path / "atexit-ran"
    program = (
        "import atexit, pathlib, sys\n"
        "from p2pshare.cli import main\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "sys.stdout.write('x' * 100_000)\n"  # more than a pipe's buffer holds
        "main(['--version'])\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x" * 100_000)
    assert done.stdout.endswith(f"p2pshare {__version__}\n")
    assert marker.read_text() == "yes"


def test_a_reader_blocked_on_stdin_does_not_abort_the_exit() -> None:
    # The sender's reader thread (a daemon) can be inside stdin.buffer.read, holding the
    # buffer's lock, when a failed transfer ends the command; the interpreter's teardown then
    # aborted on that lock (exit -6, "could not acquire lock for <_io.BufferedReader
    # name='<stdin>'>") instead of exiting with the command's code.
    program = (
        "import fcntl, array, termios, threading, sys\n"
        "from p2pshare import cli_outcome\n"
        "threading.Thread(target=sys.stdin.buffer.read, args=(8,), daemon=True).start()\n"
        "waiting = array.array('i', [1])\n"
        "while waiting[0]:  # until the reader took the 4 bytes and waits for 4 more\n"
        "    fcntl.ioctl(0, termios.FIONREAD, waiting)\n"
        "cli_outcome.exit_process(11)\n"
    )
    read, write = os.pipe()
    os.write(write, b"1234")  # written before the child starts, and the pipe left
    try:  # open: the reader takes the 4 bytes and stays blocked for 4 more
        done = subprocess.run([sys.executable, "-c", program], stdin=read, capture_output=True)
    finally:
        os.close(read)
        os.close(write)
    assert done.returncode == 11, done.stderr.decode()


def test_output_that_cannot_be_written_is_a_one_line_error(server: str, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    told = "p2pshare: error: disk full while writing standard output\n"
    # What the last lines of a command left in stdout's buffer, flushed by the fast exit.
    program = (
        "import sys\nfrom p2pshare import cli_outcome\n"
        "sys.stdout.write('done')\ncli_outcome.exit_process(0)\n"
    )
    cli = [sys.executable, "-c", program]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    with open("/dev/full", "w") as full:
        done = subprocess.run(cli, stdout=full, stderr=subprocess.PIPE, text=True, env=env)
        assert (done.returncode, done.stderr) == (11, told)  # LocalFileError's code
        for args in (["--version"], ["send", "--help"]):
            done = subprocess.run([P2PSHARE, *args], stdout=full, stderr=subprocess.PIPE, text=True)
            assert (done.returncode, done.stderr) == (11, told), args
        # --json: the first line (the code) cannot be written, so the code is never used.
        sending = ["send", "--text", "hi", "--json", "--server", server]
        done = subprocess.run([P2PSHARE, *sending], stdout=full, stderr=subprocess.PIPE, text=True)
        assert (done.returncode, done.stderr) == (11, told)
        many = ["send", str(tmp_path / "f.txt"), "--many", "--json", "--server", server]
        (tmp_path / "f.txt").write_text("hi")
        done = subprocess.run([P2PSHARE, *many], stdout=full, stderr=subprocess.PIPE, text=True)
        assert (done.returncode, done.stderr) == (11, told)
        # A received message goes to stdout at the end: its loss is not a success.
        sender = Peer(["send", "--text", "hello", "--server", server, "--json"], cwd=tmp_path)
        code = sender.event("code")["code"]
        receiving = [P2PSHARE, "receive", code, "--server", server, "--yes"]
        done = subprocess.run(receiving, stdout=full, stderr=subprocess.PIPE, text=True)
        assert done.returncode == 11, done.stderr
        assert done.stderr.splitlines()[-1] == told.strip()
        assert sender.wait() == 0
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run(cli, stdout=write, stderr=subprocess.PIPE, text=True, env=env)
    os.close(write)
    assert (done.returncode, done.stderr) == (11, "")  # output lost; nobody is left to tell


def test_text_from_a_standard_input_that_is_not_there_is_a_usage_error(server: str) -> None:
    sending = [P2PSHARE, "send", "--text", "-", "--server", server]
    done = subprocess.run(sending, capture_output=True, text=True, preexec_fn=lambda: os.close(0))
    assert done.returncode == 2
    assert done.stderr == (
        "p2pshare: error: --text - reads standard input, and there is none "
        "(see: p2pshare send --help)\n"
    )


@pytest.mark.parametrize("blank", ["\u00a0", "\u3000", "\u2007", "\u202f"])
def test_blanks_in_the_destination_are_shown_escaped(
    server: str, dirs: tuple[Path, Path], blank: str
) -> None:
    """A name with a no-break, ideographic or other non-space blank inside is shown escaped
    in the "into <destination>" and "Received … to <path>" lines too, as in the names."""
    src, out = dirs
    name = f"a{blank}b.txt"
    (src / name).write_text("x")
    escaped = f"\\x{ord(blank):02x}" if ord(blank) < 0x100 else f"\\u{ord(blank):04x}"
    sender = Peer(["send", str(src / name), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server, "--yes", "-o", str(out)], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert (out / name).read_text() == "x"
    into = [line for line in receiver.stderr.splitlines() if " into " in line]
    received = [line for line in receiver.stderr.splitlines() if line.startswith("Received")]
    assert into and received, receiver.stderr
    for line in (*into, *received):
        assert blank not in line and f"a{escaped}b.txt" in line, line
