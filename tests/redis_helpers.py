"""A real redis-server on a free loopback port, without persistence, for cluster tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Run redis-server in the foreground until the block exits; yield its URL."""
    with redis_server_process(port) as (url, _proc):
        yield url


@contextmanager
def redis_server_process(
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Like :func:`redis_server`, yielding the process too (the benchmark reads its CPU)."""
    assert REDIS_SERVER is not None
    port = port or free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--loglevel", "notice"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server did not start (exit {proc.wait()})")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(10)
