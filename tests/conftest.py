"""Shared fixtures: a real p2pshare-signal on 127.0.0.1, port 0 (in this process, or as the
`p2pshare-signal` command for tests that run the CLI), and a source and output directory.

Also how the suite runs on two pytest-xdist workers (``-n 2``, pyproject's addopts): a test
marked ``alone`` (one that loads every core, or whose point is a timing the other worker's
test would disturb) runs with no other test running; every other test runs beside any
non-``alone`` one. With ``-n 0`` (one process, as before) none of this applies."""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
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


_LOCK_DIR = pytest.StashKey[str]()


ONE_WORKER = {
    "test_browser.py": "one Chromium for the module",
    "test_deploy_bundle.py": "the bundle's lab (namespaces, coturn, Caddy) for the module",
    "test_first_hour.py": "changes the checkout's modes for the module, then puts them back",
    "test_lan.py": "two namespaces for the module",
    "test_reconnect_hostile.py": "every case run at once in a module fixture",
    "test_web_build.py": "`npm ci` once for the module",
}
"""Modules whose tests all run on one worker (``--dist loadgroup``), and why: a module
fixture that is costly to build twice, or one that two workers would undo under each other.
The other tests are handed out one by one."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """The xdist controller tells each worker where the workers' shared locks are."""
    stash = node.config.stash
    if _LOCK_DIR not in stash:
        stash[_LOCK_DIR] = tempfile.mkdtemp(prefix="p2pshare-alone-")
    node.workerinput["alone_lock_dir"] = stash[_LOCK_DIR]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _LOCK_DIR in config.stash:
        shutil.rmtree(config.stash[_LOCK_DIR], ignore_errors=True)


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, mode)  # released when the file closes
        yield


@contextmanager
def _turn(folder: Path, alone: bool) -> Iterator[None]:
    """A readers-writer lock between the workers, writers first: every test passes the
    turnstile (so a waiting ``alone`` test holds back new ones), then shares the room, except
    an ``alone`` test, which keeps the turnstile and waits for the room to empty."""
    with _flock(folder / "turnstile", fcntl.LOCK_EX):
        if alone:
            with _flock(folder / "room", fcntl.LOCK_EX):
                yield
            return
        room = open(folder / "room", "a")  # noqa: SIM115 -- held past the turnstile
        fcntl.flock(room, fcntl.LOCK_SH)
    try:
        yield
    finally:
        room.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[Any]:
    """Set-up, call and tear-down (module fixtures included) of one test, under the lock."""
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:
        return (yield)
    alone = item.get_closest_marker("alone") is not None
    with _turn(Path(workerinput["alone_lock_dir"]), alone):
        return (yield)
