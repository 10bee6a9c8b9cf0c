"""The p2pshare-signal command line: arguments checked before anything listens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT, run_signal_server


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http", "4750.5"])
def test_bad_port_is_a_one_line_usage_error(port: str) -> None:
    """--port outside 0-65535 exits 2 with one line (it used to wrap modulo 65536)."""
    done = subprocess.run(
        [sys.executable, "-m", "signal_server", "--port", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("p2pshare-signal: error: argument --port")


def test_listening_is_printed_once() -> None:
    """The one line a script reads is printed once, and nothing else goes to stdout or the
    log about it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "signal_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert first.startswith("listening on ws://127.0.0.1:")
    assert "listening" not in out + err


def test_the_page_url_follows_the_listening_line() -> None:
    """After the ws:// line a person sees where a browser opens the page (same port, http)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "signal_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    second = proc.stdout.readline()
    proc.terminate()
    proc.communicate(timeout=10)
    port = first.strip().rsplit(":", 1)[1]
    assert second.startswith(f"the page: http://127.0.0.1:{port}/ "), second


def test_page_url_names_no_unspecified_address(tmp_path: Path) -> None:
    """Listening on every address, the page line asks for this machine's address instead of
    printing 0.0.0.0; a server with no page prints none."""
    from signal_server.__main__ import page_url

    (tmp_path / "index.html").write_text("<!doctype html>")
    assert page_url("ws://0.0.0.0:4750", tmp_path) == "http://<this machine's address>:4750/"
    assert page_url("ws://[::]:4750", tmp_path) == "http://<this machine's address>:4750/"
    assert page_url("ws://192.168.1.2:4750", tmp_path) == "http://192.168.1.2:4750/"
    assert page_url("ws://192.168.1.2:4750", tmp_path / "none") is None


def test_port_zero_still_picks_a_free_port() -> None:
    """0 is a valid port: the server picks one and says which."""
    with run_signal_server("--port", "0") as url:
        assert int(url.rsplit(":", 1)[1]) > 0


def test_many_mode_limits_are_flags() -> None:
    """send --many rooms: receivers per room, unproven receivers per address and the room's
    lifetime come from the command line (defaults: the ServerSettings defaults)."""
    from signal_server.__main__ import build_parser, settings_from_args
    from signal_server.server import ServerSettings

    flags = ["--max-receivers-per-room", "3", "--many-room-ttl", "90"]
    flags += ["--max-unproven-per-address", "2"]
    parsed = settings_from_args(build_parser().parse_args(flags))
    assert parsed.max_receivers_per_room == 3 and parsed.many_room_ttl_s == 90
    assert parsed.max_unproven_per_address == 2
    default = settings_from_args(build_parser().parse_args([]))
    assert default.max_receivers_per_room == ServerSettings().max_receivers_per_room
    assert default.many_room_ttl_s == ServerSettings().many_room_ttl_s
    assert default.max_unproven_per_address == ServerSettings().max_unproven_per_address
