"""Descriptor exhaustion (issue 17 item 5): the real p2pshare-signal under a lowered open-file
limit, flooded with half-open HTTP upgrades from 127.0.0.1, still answers /healthz and pairs
a real sender and receiver while the flood is held open."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT, start_pair

NOFILE = 256
FLOOD_CONNECTIONS = 400
"""More than the server's whole descriptor limit."""
FLOOD_MAX_S = 90
"""The flood ends by itself after this, whatever happens to the test."""


def _limit(soft: int, hard: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return preexec


@contextmanager
def limited_server(soft: int, hard: int, *args: str) -> Iterator[tuple[str, int]]:
    """p2pshare-signal on 127.0.0.1, port 0, started under the given RLIMIT_NOFILE."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "signal_server", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_limit(soft, hard),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        yield line.split()[-1], proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def half_open_flood(url: str) -> Iterator[subprocess.Popen[str]]:
    """The load benchmark's flood mode against ``url``; yields once every connection has been
    opened once (the server is under pressure from then on)."""
    flood = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "signal_load.py"),
            *("--mode", "flood", "--url", url, "--connections", str(FLOOD_CONNECTIONS)),
            *("--duration", str(FLOOD_MAX_S), "--reopen-delay", "0.5"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None
        started = json.loads(flood.stdout.readline())
        assert started["event"] == "flooding", started
        yield flood
        assert flood.poll() is None, "the flood ended before the checks did"
    finally:
        flood.terminate()
        flood.wait(10)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz(url: str) -> bytes:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    """Started under systemd's usual soft limit, the server raises it to the hard limit."""
    with limited_server(256, 2048) as (_, pid):
        limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    assert line.split()[3:5] == ["2048", "2048"]


@pytest.mark.parametrize(
    "server_args",
    [(), ("--max-conns-per-ip", "0")],
    ids=["per-address-cap", "no-per-address-cap"],
)
def test_half_open_flood_leaves_healthz_and_a_real_pair_working(
    tmp_path: Path, server_args: tuple[str, ...]
) -> None:
    """400 half-open upgrades against a 256-descriptor server: descriptors stay spare,
    /healthz answers and a real send/receive completes while the flood is held open. With
    the per-address cap the flood is refused at accept; without it, the half-open share is
    recycled oldest first, so the pair's connections (which finish their handshake at once)
    get in."""
    source = tmp_path / "hello.txt"
    source.write_bytes(os.urandom(64 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    with limited_server(NOFILE, NOFILE, *server_args) as (url, pid), half_open_flood(url):
        assert open_files(pid) < NOFILE - 16
        assert healthz(url).startswith(b"HTTP/1.1 200")
        sender, receiver = start_pair(url, source, out, "--yes")
        assert receiver.wait(60) == 0, receiver.stderr
        assert sender.wait(60) == 0, sender.stderr
        assert open_files(pid) < NOFILE - 16
    assert (out / source.name).read_bytes() == source.read_bytes()
