"""Running an open data channel: feeding frames in, keepalives out, noticing a silent peer, and
telling the peer why we stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from p2pshare import transfer
from p2pshare.config import Settings
from p2pshare.errors import InterruptedTransferError, P2PShareError, PeerLostError

if TYPE_CHECKING:  # a Protocol, for type checking only: nothing to load at run time
    from p2pshare.channel import Channel

T = TypeVar("T")
GOODBYE_WAIT_S = 3.0
"""How long the side that stops waits for the peer to read its last message and close.
Closing at once would send an SCTP ABORT that can overtake that message (DESIGN.md)."""


class Wire:
    """Feeds incoming frames to ``handle``, sends keepalives, and notices a silent peer."""

    def __init__(self, link: Channel, settings: Settings, handle: Callable[[bytes], None]):
        self.link = link
        self.settings = settings
        self.handle = handle
        self.changed = asyncio.Event()
        self.closing = False
        """Set once the transfer is complete: the peer closing is then expected."""

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    async def _read(self) -> None:
        timeout = self.settings.peer_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout):
                    frame = await self.link.receive()
            except TimeoutError:
                raise PeerLostError(
                    f"the other side stopped answering (nothing for {timeout:g} s)"
                ) from None
            if not frame:
                if self.closing:
                    return
                raise self.link.lost_error()
            self.handle(frame)
            self.changed.set()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            if self.closing:
                return
            self.link.send(transfer.ping())

    async def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` while reading and pinging; the first failure of any of them wins."""
        main_task = asyncio.ensure_future(main)
        helpers = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._ping())]
        pending: set[asyncio.Future[Any]] = {main_task, *helpers}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # A helper's error is the root cause (the peer aborted, or vanished) even when
                # main failed in the same round because of it; a helper's clean end is not.
                for helper in helpers:
                    if helper in done:
                        helper.result()
                if main_task in done:
                    return main_task.result()
        finally:
            for task in (main_task, *helpers):
                task.cancel()
            await asyncio.gather(main_task, *helpers, return_exceptions=True)


async def stop_with(link: Channel, error: P2PShareError) -> None:
    """Tell the peer why we stop (unless it told us, or is gone) and give it time to read it."""
    if error.remote or isinstance(error, PeerLostError) or link.lost:
        return
    with contextlib.suppress(P2PShareError):
        link.send(transfer.abort(error))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(link.wait_lost(), GOODBYE_WAIT_S)


@contextlib.asynccontextmanager
async def telling_peer(link: Channel) -> AsyncIterator[None]:
    """On an error (or cancellation) inside, tell the peer why we stop before raising."""
    try:
        yield
    except P2PShareError as exc:
        await stop_with(link, exc)
        raise
    except asyncio.CancelledError:
        await stop_with(link, InterruptedTransferError("the other side cancelled the transfer"))
        raise
