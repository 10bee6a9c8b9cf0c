"""The command line's rough edges (issue 29 items 6-10): what is printed, in a log and at a
terminal, and how the command ends in the cases a newcomer runs into."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console

from p2pshare import events
from p2pshare.cli_outcome import fail
from p2pshare.errors import InterruptedTransferError
from p2pshare.progress import HumanReporter, ManyHumanReporter
from p2pshare.webrtc import NetworkPath, path_kind
from tests.cli_helpers import (
    P2PSHARE,
    ROOT,
    Peer,
    interruptible_env,
    leftovers,
    peer_env,
    start_pair,
)
from tests.test_first_hour import run


def captured(reporter: HumanReporter, terminal: bool = False) -> io.StringIO:
    """Point ``reporter`` at a buffer (a terminal of 200 columns when ``terminal``)."""
    out = io.StringIO()
    reporter.console = Console(
        file=out, force_terminal=terminal, width=200, highlight=False, markup=False, emoji=False
    )
    return out


def test_interrupted_hint_is_one_sentence() -> None:
    """The resume hint follows "interrupted" without a stray full stop before the ";"."""
    reporter = HumanReporter("x")
    out = captured(reporter)
    reporter.verb = "Sent"
    reporter.progressed = True
    with pytest.raises(typer.Exit) as stopped:
        fail(reporter, InterruptedTransferError(), 0, resumable=True)
    assert stopped.value.exit_code == 130
    line = out.getvalue().strip()
    assert line.startswith("p2pshare: error: interrupted; the receiver keeps"), line
    assert ".;" not in line


def test_many_connected_line_says_the_path_once() -> None:
    """send --many: "receiver 2, ADDRESS: connected, direct, on the local network."."""
    reporter = ManyHumanReporter("a.bin", count=2)
    out = captured(reporter)
    path = NetworkPath("lan", "host", "host")
    reporter(events.ForReceiver(2, events.Connected(path), "receiver 2, 127.0.0.1, direct"))
    assert out.getvalue() == "receiver 2, 127.0.0.1: connected, direct, on the local network.\n"


def test_many_total_knows_its_size_with_n() -> None:
    """send --many N: the total bar's size is N times the offer, never "5.7 MiB/?"."""
    reporter = ManyHumanReporter("a.bin", count=3)
    out = captured(reporter, terminal=True)
    reporter(events.ForReceiver(1, events.Progress(1024 * 1024, 2 * 1024 * 1024), "receiver 1"))
    reporter.close()
    shown = out.getvalue()
    assert "1.0 MiB/6.0 MiB" in shown, shown
    assert "/?" not in shown


def test_many_total_without_n_shows_only_what_was_sent() -> None:
    """send --many (no N): the total bar shows the bytes sent, with no unknown "/?"."""
    reporter = ManyHumanReporter("a.bin", count=None)
    out = captured(reporter, terminal=True)
    reporter(events.ForReceiver(1, events.Progress(1024 * 1024, 2 * 1024 * 1024), "receiver 1"))
    reporter.close()
    assert "total" in out.getvalue() and "/?" not in out.getvalue()


def test_no_bars_in_a_log() -> None:
    """Progress written to something other than a terminal draws no bar (it would be
    rendered as text at the end, wrapped at 80 columns)."""
    reporter = HumanReporter("a.bin")
    out = captured(reporter, terminal=False)
    reporter(events.Progress(0, 1000))
    reporter(events.Progress(1000, 1000))
    reporter.close()
    assert out.getvalue() == "" and reporter.progressed


def test_bars_at_a_terminal() -> None:
    """At a terminal the bar is drawn (the log rule does not hide it there)."""
    reporter = HumanReporter("a.bin")
    out = captured(reporter, terminal=True)
    reporter(events.Progress(500, 1000))
    reporter.close()
    assert "a.bin" in out.getvalue() and "500 bytes/1000 bytes" in out.getvalue()


def test_sender_says_it_waits_for_acceptance(server: str, dirs: tuple[Path, Path]) -> None:
    """Once connected, the sender says it waits for the receiver to accept; the log holds
    no progress bar and the summary line ends it."""
    src, out = dirs
    (src / "a.bin").write_bytes(os.urandom(300_000))
    sender = Peer(["send", str(src / "a.bin"), "--server", server], cwd=src)
    code = sender.stderr_line("Code:").split(": ", 1)[1].strip()
    receiver = Peer(["receive", code, "--server", server, "--yes", "-o", str(out)], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    lines = sender.stderr.splitlines()
    connected = next(i for i, x in enumerate(lines) if x.startswith("Connected:"))
    assert lines[connected + 1] == "Waiting for the receiver to accept..."
    assert lines[-1].startswith("Sent 293.0 KiB")
    assert "━" not in sender.stderr + receiver.stderr


@pytest.mark.parametrize(("typed", "alias"), [("r", "recv"), ("r", "rx"), ("t", "tx")])
def test_completion_offers_the_aliases(typed: str, alias: str) -> None:
    """Tab completes recv, rx and tx too, though --help leaves them out."""
    env = peer_env(_P2PSHARE_COMPLETE="complete_bash", COMP_WORDS=f"p2pshare {typed}")
    env["COMP_CWORD"] = "1"
    status, out, _ = run(env=env)
    assert status == 0 and alias in out.split(), out
    _, help_text, _ = run("--help")
    assert f"  {alias} " not in help_text


PATH_CASES = json.loads((ROOT / "web" / "testlib" / "paths.json").read_text())["cases"]


@pytest.mark.parametrize("case", PATH_CASES, ids=lambda c: f"{c['local']}-{c['remote']}")
def test_path_kind_matches_the_page(case: dict[str, Any]) -> None:
    """A peer-reflexive candidate on a local or loopback address is the local network (a
    browser on this machine), on other addresses it is NAT: the same cases as the page's."""
    (local_type, local_host), (remote_type, remote_host) = case["local"], case["remote"]
    assert path_kind(local_type, local_host, remote_type, remote_host) == case["kind"]


# -- item 9: a machine without network, a port for the firewall --------------------------------


def in_new_netns(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` (sh) in a network namespace of its own holding only ``lo``, with the
    test peer's environment minus its loopback address (the command's own defaults)."""
    assert os.geteuid() == 0, "network namespaces need root (as tests/natlab.py)"
    environ = peer_env(**env)
    del environ["P2PSHARE_LOCAL_ADDRESSES"]
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=environ,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_send_without_network_is_an_expected_failure(tmp_path: Path) -> None:
    """On a machine with only loopback, send says there is no network and exits 8 (could not
    connect), not 1 (a bug), and says how to send on this machine."""
    (tmp_path / "a.txt").write_text("hi")
    done = in_new_netns(f"ip link set lo up; exec {P2PSHARE} send {tmp_path / 'a.txt'}")
    assert done.returncode == 8, done.stderr
    assert done.stderr.startswith("p2pshare: error: no network:"), done.stderr
    assert "--local-address 127.0.0.1" in done.stderr and done.stderr.count("\n") == 1


def test_firewalled_server_port_is_named(tmp_path: Path) -> None:
    """A server whose port drops connections (a firewall) gives an error that says so."""
    drop = "iptables -A INPUT -p tcp --dport 4999 -j DROP"
    done = in_new_netns(
        f"ip link set lo up && {drop} && "
        f"exec {P2PSHARE} receive --yes --server ws://127.0.0.1:4999 7-guitar-ocean"
    )
    assert done.returncode == 3, done.stderr
    assert "no answer in time" in done.stderr and "firewall" in done.stderr, done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_port_option_fixes_the_embedded_server_port(dirs: tuple[Path, Path]) -> None:
    """send --port P: the receiver's command and the transfer use that port."""
    src, out = dirs
    data = os.urandom(100_000)
    (src / "a.bin").write_bytes(data)
    port = free_port()
    sender = Peer(["send", str(src / "a.bin"), "--port", str(port), "--json"], cwd=src)
    code = sender.event("code")
    assert code["server"] == f"ws://127.0.0.1:{port}"
    receiver = Peer(["receive", code["code"], "--server", code["server"], "--yes"], cwd=out)
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "a.bin").read_bytes() == data


def test_port_taken_is_one_line(tmp_path: Path) -> None:
    """--port on a port another program listens on: one line, exit 3."""
    (tmp_path / "a.txt").write_text("hi")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run("send", str(tmp_path / "a.txt"), "--port", str(port))
    assert status == 3, err
    assert err == (
        f"p2pshare: error: cannot run the rendezvous server on 127.0.0.1 port {port}: "
        "address already in use\n"
    )


def test_port_with_server_is_a_usage_error(tmp_path: Path) -> None:
    """--port names the port of send's own server: with --server it is a mistake."""
    (tmp_path / "a.txt").write_text("hi")
    status, _, err = run("send", "a.txt", "--port", "4000", "--server", "ws://127.0.0.1:1")
    assert status == 2 and "--port" in err and err.count("\n") == 1


def test_text_message_needs_no_yes_without_a_terminal(server: str, dirs: tuple[Path, Path]) -> None:
    """A receiver with nobody at a terminal (a script) prints a text message without --yes:
    it only goes to stdout, escaped; the code is not spent on a refusal."""
    src, out = dirs
    sender = Peer(["send", "--text", "hello \x1b[31mthere", "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = subprocess.run(
        [P2PSHARE, "receive", code, "--server", server],
        cwd=out,
        env=peer_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert receiver.returncode == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert receiver.stdout == "hello \\x1b[31mthere\n"
    assert "Offer: a text message" in receiver.stderr


def test_files_still_need_yes_without_a_terminal(server: str, dirs: tuple[Path, Path]) -> None:
    """Files are written to disk: without a terminal and without --yes they are declined."""
    src, out = dirs
    (src / "a.txt").write_text("hi")
    sender = Peer(["send", str(src / "a.txt"), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    receiver = Peer(["receive", code, "--server", server], cwd=out)
    assert receiver.wait() == 9
    assert "--yes" in receiver.stderr
    assert sender.wait() == 9
    assert not (out / "a.txt").exists()


# -- item 7: SIGTERM and SIGHUP end a transfer as Ctrl-C does ----------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough that a transfer is still running when the test stops it."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(1024 * 1024))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
@pytest.mark.parametrize("who", ["receiver", "sender"])
def test_stop_signals_end_like_ctrl_c(
    server: str, dirs: tuple[Path, Path], big_file: Path, who: str, signum: int
) -> None:
    """kill (SIGTERM) or a closed terminal (SIGHUP) on either side: the other side is told at
    once (exit 7, "cancelled", not its 20 s silence deadline), the stopped side exits 130, and
    the partial data is kept for a resend."""
    _, out = dirs
    sender, receiver = start_pair(server, big_file, out, "--yes", env=interruptible_env())
    victim, other = (receiver, sender) if who == "receiver" else (sender, receiver)
    victim.event("progress", where=lambda e: 0 < e["done"] < e["total"])
    victim.send_signal(signum)
    assert victim.wait() == 130, victim.stderr
    assert other.wait() == 7, other.stderr
    assert victim.last("error")["error"] == "interrupted"
    assert "cancelled" in other.last("error")["message"]
    assert "resumes" in receiver.last("error")["message"]
    left = leftovers(out)
    assert [name.rsplit(".", 1)[1] for name in left] == ["json", "part"], left
