"""A real redis-server on a free loopback port, without persistence, for cluster tests."""

from __future__ import annotations

import asyncio
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
    port: int | None = None, netns: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Like :func:`redis_server`, yielding the process too (the benchmark reads its CPU);
    ``netns``: on the loopback of that network namespace instead."""
    assert REDIS_SERVER is not None
    port = port or free_port()
    proc = subprocess.Popen(
        [
            *(("ip", "netns", "exec", netns) if netns else ()),
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


class CuttableProxy:
    """A TCP proxy to Redis on a loopback port whose link the test can cut and restore: one
    instance loses Redis while the others keep it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sever()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def sever(self) -> None:
        """Drop every proxied connection and refuse new ones until :meth:`mend`."""
        self.cut = True
        for writer in list(self._writers):
            writer.transport.abort()

    def mend(self) -> None:
        self.cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()
