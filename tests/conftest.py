"""Shared fixtures: a real p2pshare-signal on 127.0.0.1, port 0 (in this process, or as the
`p2pshare-signal` command for tests that run the CLI), and a source and output directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from signal_server.server import RunningServer, ServerSettings, start_server
from tests.cli_helpers import run_signal_server
from tests.signal_helpers import FakeClock, assert_server_pairs

StartSignal = Callable[..., AbstractAsyncContextManager[RunningServer]]


@pytest.fixture
def server() -> Iterator[str]:
    """The real p2pshare-signal command on 127.0.0.1, port 0, for tests that run the CLI
    (modules that need other limits define their own)."""
    with run_signal_server("--host", "127.0.0.1", "--port", "0") as url:
        yield url


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A source and an output directory."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    return src, out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def signal(clock: FakeClock) -> AsyncIterator[RunningServer]:
    """A rendezvous server with default limits; after the test it must still pair a couple."""
    async with start_server(ServerSettings(host="127.0.0.1", port=0), clock) as running:
        yield running
        await assert_server_pairs(running.url)


@pytest.fixture
def start_signal(clock: FakeClock) -> Callable[..., Any]:
    """Start a server with some settings changed; it must still pair a couple afterwards."""

    def start(**changes: Any) -> AbstractAsyncContextManager[RunningServer]:
        settings = ServerSettings(**{"host": "127.0.0.1", "port": 0, **changes})
        return _checked(settings, clock)

    return start


@asynccontextmanager
async def _checked(settings: ServerSettings, clock: FakeClock) -> AsyncIterator[RunningServer]:
    async with start_server(settings, clock) as running:
        yield running
        clock.advance(61)  # past any per-minute rate limit the test used up
        await assert_server_pairs(running.url)
