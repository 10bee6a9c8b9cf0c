"""Run a coroutine on uvloop where it is installed, else on the stock asyncio loop.

uvloop roughly halves the per-packet cost of both websockets and aiortc's SCTP on this machine,
so the server, the client and the benchmarks all start their loop through here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


ENV_LOOP = "P2PSHARE_EVENT_LOOP"
"""``asyncio`` forces the stock loop (for comparisons and debugging)."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get(ENV_LOOP) == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
