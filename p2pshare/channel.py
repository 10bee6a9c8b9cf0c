"""What a transfer runs over: one reliable, ordered message channel to the peer.

:class:`Channel` is everything :class:`~p2pshare.sender.Sender`,
:class:`~p2pshare.receiver.Receiver` and :class:`~p2pshare.wire.Wire` ask of a connection.
:class:`~p2pshare.webrtc.PeerLink` (a WebRTC data channel) is the real one;
:func:`memory_channel_pair` gives two connected ends in one event loop, like aiortc's own
``dummy_connection_pair``, so that the sender and receiver can be tested without a network,
optionally losing or reordering messages to see that a broken channel is noticed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from p2pshare.errors import P2PShareError, PeerLostError

MEMORY_MESSAGE_BYTES = 64 * 1024
"""The largest message a memory channel carries by default (what RFC 8841 says to assume)."""
MEMORY_BUFFER_HIGH_BYTES = 1024 * 1024
""":meth:`MemoryChannel.drain` waits while the peer has more than this unread (as PeerLink
waits on aiortc's buffer)."""


async def wait_either(a: asyncio.Event, b: asyncio.Event, timeout_s: float | None = None) -> None:
    """Return once either event is set (or after ``timeout_s``): a channel waits for room or
    for being opened, and for being lost, at once."""
    waiters = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Channel(Protocol):
    """One reliable, ordered message channel to the peer, already open."""

    @property
    def max_message_bytes(self) -> int:
        """The largest message :meth:`send` may be given."""
        ...

    @property
    def lost(self) -> bool:
        """Whether the channel has closed (either side) or failed."""
        ...

    def send(self, frame: bytes) -> None:
        """Queue one message; raises PeerLostError once the channel is lost."""

    async def drain(self) -> None:
        """Wait while too much sent data is still buffered (raises once lost)."""

    async def receive(self) -> bytes:
        """The next message from the peer; ``b""`` once the channel is lost (then
        :meth:`lost_error` says why)."""
        ...

    def lost_error(self) -> P2PShareError:
        """Why the channel ended (a protocol violation of the peer's, or a lost connection)."""
        ...

    async def wait_lost(self) -> None:
        """Return once the channel is lost (the peer closed it, or it failed)."""


@dataclass(eq=False)
class MemoryChannel:
    """One end of :func:`memory_channel_pair`: a :class:`Channel` in memory."""

    max_message_bytes: int = MEMORY_MESSAGE_BYTES
    peer: MemoryChannel | None = field(default=None, repr=False)
    sent: list[bytes] = field(default_factory=list, repr=False)
    """Every message this end sent, in order (for tests to check what went on the wire)."""
    silent: bool = False
    """True: what this end sends never arrives, and it never closes (a peer that froze)."""
    loss: float = 0.0
    reorder: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    on_send: Callable[[bytes], None] | None = field(default=None, repr=False)
    _inbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue, repr=False)
    _unread_bytes: int = 0
    _held: bytes | None = field(default=None, repr=False)
    _lost: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _read: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def send(self, frame: bytes) -> None:
        if self.lost:
            raise PeerLostError("the connection to the other side was lost")
        if len(frame) > self.max_message_bytes:
            raise ValueError(f"message of {len(frame)} bytes over {self.max_message_bytes}")
        self.sent.append(frame)
        if self.on_send is not None:
            self.on_send(frame)
        peer = self.peer
        assert peer is not None
        if self.silent or (self.loss and self.rng.random() < self.loss):
            return
        if self.reorder and self._held is None and self.rng.random() < self.reorder:
            self._held = frame  # goes after the next one
            return
        peer._deliver(frame)
        if self._held is not None:
            held, self._held = self._held, None
            peer._deliver(held)

    def _deliver(self, frame: bytes) -> None:
        if not self.lost:
            self._unread_bytes += len(frame)
            self._inbox.put_nowait(frame)

    async def drain(self) -> None:
        peer = self.peer
        assert peer is not None
        while peer._unread_bytes > MEMORY_BUFFER_HIGH_BYTES:
            if self.lost:
                raise PeerLostError("the connection to the other side was lost")
            peer._read.clear()
            await wait_either(peer._read, self._lost)

    async def receive(self) -> bytes:
        frame = await self._inbox.get()
        self._unread_bytes -= len(frame)
        self._read.set()
        return frame

    @property
    def unread_bytes(self) -> int:
        """Bytes delivered to this end and not read yet."""
        return self._unread_bytes

    def lost_error(self) -> P2PShareError:
        return PeerLostError("the connection to the other side was lost")

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def close(self) -> None:
        """Close both ends, as closing a data channel does (unless this end froze)."""
        if self.silent:
            return
        for end in (self, self.peer):
            if end is not None and not end.lost:
                end._lost.set()
                end._inbox.put_nowait(b"")  # wakes the reader: an empty message means "lost"


def memory_channel_pair(
    *,
    loss: float = 0.0,
    reorder: float = 0.0,
    seed: int = 0,
    max_message_bytes: int = MEMORY_MESSAGE_BYTES,
) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected ends. Reliable and ordered unless ``loss`` (the share of messages
    dropped) or ``reorder`` (the share delivered after the next one) say otherwise, drawn
    from generators seeded with ``seed`` (each end its own; set ``loss`` or ``reorder`` on
    one end for one direction only). Create them inside the running event loop."""
    a = MemoryChannel(max_message_bytes, loss=loss, reorder=reorder, rng=random.Random(seed))
    b = MemoryChannel(
        max_message_bytes, peer=a, loss=loss, reorder=reorder, rng=random.Random(seed + 1)
    )
    a.peer = b
    return a, b
