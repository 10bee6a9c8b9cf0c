"""``send --many``: one code, one room in many mode, a pairing and a transfer per receiver.

::

    sender (ManySender)                 rendezvous (many mode)              receivers
      │ allocate/claim mode=many ───────>│                                     │
      │<── joined side=1 ────────────────│<── claim ───────────── receiver 1   │
      │<══ SPAKE2 + confirmation, addressed to side 1 (its own keys) ═══════>│
      │    (its confirmation checked first, through the one CodeGuard)        │
      │── sealed offer to 1 ─> ICE, DTLS ══ data channel ══ Sender.run ═════>│
      │<── joined side=2 ... the same, concurrently, at most --parallel       │
      │    transfers at a time; the others are told (sealed) to wait          │
      │ wrong confirmation from side k: lock the room, say so, let the        │
      │ connected finish, admit nobody else                                   │
      │ receiver k's path dies: k alone meets the sender again on the same    │
      │ server, under k's own session key (reconnect.py); the others go on    │

Each receiver has its own :class:`~p2pshare.pake.PakeSession`, peer connection,
:class:`~p2pshare.sender.Sender` (credits, resume, read-ahead of the files, so the data is read
once per receiver through the page cache, never held whole) and progress, reported as
:class:`~p2pshare.events.ForReceiver` events. When both sides offered it, each receiver's
transfer runs through its own :class:`~p2pshare.reconnect.Reconnector`, keyed by that
receiver's PAKE: a receiver that loses its path keeps its transfer slot, reconnects and
resumes, and nobody else notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from p2pshare import aiortc_patches
from p2pshare.codes import Code
from p2pshare.config import Settings
from p2pshare.errors import (
    InterruptedTransferError,
    P2PShareError,
    PeerLostError,
    WrongCodeError,
)
from p2pshare.events import (
    CodeBurned,
    ConfirmWords,
    Connected,
    EventSink,
    ForReceiver,
    ManyResult,
    Notice,
    Progress,
    ReceiverDone,
    ReceiverOutcome,
    Reconnected,
    Reconnecting,
    SessionEvent,
    TransferResult,
)
from p2pshare.pairing import (
    CodeGuard,
    WordsGate,
    authenticate_receiver,
    connect,
    tell_to_wait,
)
from p2pshare.pake import PakeSession
from p2pshare.places import EmbeddedPlace, Place, ServerPlace
from p2pshare.reconnect import ReconnectKeys, Reconnector, Runs
from p2pshare.rendezvous import ManyRoom, SideRelay
from p2pshare.sender import Sender
from p2pshare.sources import Sources
from p2pshare.webrtc import PeerLink

if TYPE_CHECKING:
    from p2pshare.channel import Channel

logger = logging.getLogger(__name__)

DEFAULT_PARALLEL = 2
"""Transfers at once: each costs a core's worth of SCTP work at full speed."""


class _Receiver:
    """What the sender knows of one receiver while it is served."""

    def __init__(
        self,
        number: int,
        on_event: EventSink,
        on_lost: Callable[[_Receiver, bool], None] = lambda receiver, lost: None,
    ) -> None:
        self.number = number
        self.label = f"receiver {number}"
        self.done_bytes = 0
        self.sent = 0
        self.started = time.monotonic()
        self.labelled = False
        self._on_event = on_event
        self._on_lost = on_lost
        """Told when its path is lost (True: reconnecting) and when it is back (False)."""

    def __call__(self, event: SessionEvent) -> None:
        if isinstance(event, Connected) and not self.labelled:
            return  # pairing's own; ours follows with the address in the label
        if isinstance(event, Progress):
            self.done_bytes = event.done
        elif isinstance(event, Reconnecting | Reconnected):
            self._on_lost(self, isinstance(event, Reconnecting))
        self._on_event(ForReceiver(self.number, event, self.label))

    def connected(self, link: PeerLink) -> None:
        path = link.path()
        how = "relayed" if path is not None and path.kind == "relay" else "direct"
        address = _remote_address(link)
        self.label = ", ".join(x for x in (f"receiver {self.number}", address, how) if x)
        self.labelled = True

    def outcome(self, result: str, message: str | None = None) -> ReceiverOutcome:
        seconds = time.monotonic() - self.started
        return ReceiverOutcome(
            self.number, self.label, self.done_bytes, seconds, result, message, self.sent
        )


def _remote_address(link: PeerLink) -> str | None:
    """The receiver's address on the nominated path (shown to the sender only)."""
    sctp = link.pc.sctp
    pair = aiortc_patches.nominated_pair(sctp.transport.transport) if sctp else None
    return str(pair[1].host) if pair is not None else None


class ManySender:
    """Serves ``sources`` to each receiver that proves ``code`` in ``room``; :meth:`run`
    once. ``count`` None: until cancelled (or ``timeout_s``)."""

    def __init__(
        self,
        room: ManyRoom,
        code: Code,
        sources: Sources,
        settings: Settings,
        on_event: EventSink,
        *,
        count: int | None = None,
        parallel: int = DEFAULT_PARALLEL,
        confirm_words: ConfirmWords | None = None,
    ) -> None:
        self.room = room
        self.code = code
        self.sources = sources
        self.settings = settings
        self.on_event = on_event
        self.count = count
        self.confirm_words = confirm_words
        """``--verify``: asked for each receiver before anything is sent to it."""
        self.guard = CodeGuard()
        self.slots = asyncio.Semaphore(parallel)
        self.outcomes: list[ReceiverOutcome] = []
        self.admitted = 0
        """Proven receivers whose transfer is under way (or waits for a slot)."""
        self.reconnecting: set[int] = set()
        """Admitted receivers whose path died, looking for the sender again (their place in
        the count is free meanwhile: one that never comes back must not hold it)."""
        self._wakers: set[asyncio.Task[None]] = set()
        self.proven = 0
        """Proven receivers not finished yet, waiting their turn included: they are served
        even when the code burns or the time is up."""
        self._numbers = 0
        self._changed = asyncio.Condition()
        self._pending: dict[asyncio.Task[None], SideRelay] = {}
        """Receivers still in their PAKE: cancelled when the code burns."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        """Admitting nobody else (the code burned, or the time is up)."""

    @property
    def served(self) -> int:
        return sum(1 for o in self.outcomes if o.result == "done")

    async def run(self, timeout_s: float | None = None) -> ManyResult:
        admission = asyncio.create_task(self._admit())
        stopped = "count"
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._until(self._finished)
                if self.guard.burned:
                    stopped = "burned"
                elif admission.done() and admission.exception() is not None:
                    stopped = "server"
            except TimeoutError:
                stopped = "timeout"
                # Stop admitting; whoever is being served finishes.
                await self._stop_admitting()
                await self._until(lambda: self.proven == 0)
        finally:
            admission.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(admission, *self._tasks, return_exceptions=True)
        return ManyResult(tuple(self.outcomes), stopped)

    def _finished(self) -> bool:
        if self.closed or self.room.failed:
            return self.proven == 0
        return self.count is not None and self.served >= self.count

    async def _until(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(condition)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _admit(self) -> None:
        try:
            while True:
                relay = await self.room.next_receiver()
                task = asyncio.create_task(self._serve(relay))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            await self._notify()

    def _may_start(self) -> bool:
        if self.count is None:
            return True
        under_way = self.admitted - len(self.reconnecting)
        return self.served >= self.count or self.served + under_way < self.count

    def _lost(self, receiver: _Receiver, lost: bool) -> None:
        """A receiver's path died (``lost``) or came back: its place in the count is free
        while it reconnects, so those waiting for one look again."""
        before = len(self.reconnecting)
        if lost:
            self.reconnecting.add(receiver.number)
        else:
            self.reconnecting.discard(receiver.number)
        if len(self.reconnecting) != before:
            waker = asyncio.create_task(self._notify())
            self._wakers.add(waker)
            waker.add_done_callback(self._wakers.discard)

    async def _serve(self, relay: SideRelay) -> None:
        if self.closed:
            await relay.kick()
            return
        task = asyncio.current_task()
        assert task is not None
        self._pending[task] = relay
        failure: P2PShareError | None
        try:
            # The whole key exchange, not each message, has the connect deadline: a receiver
            # that trickles its messages cannot hold its place in the room any longer.
            async with asyncio.timeout(self.settings.connect_timeout_s):
                pake = await authenticate_receiver(relay, self.code, self.settings, self.guard)
        except TimeoutError:
            failure = PeerLostError("the receiver did not prove the code in time")
        except P2PShareError as exc:
            failure = exc
        else:
            failure = None
        finally:
            self._pending.pop(task, None)
        # The guard may have burned while the deadline fired (a wrong confirmation, then the
        # time ran out sending ours): the code is burned all the same.
        if isinstance(failure, WrongCodeError) or (
            failure is not None and self.guard.burned and not self.closed
        ):
            self._numbers += 1
            receiver = _Receiver(self._numbers, self.on_event)
            self._end(receiver.outcome("wrong-code", "key confirmation failed"))
            await self._burn()
            await relay.close()
            return
        if failure is not None and self.closed:
            await relay.kick()  # the code burned while this one proved (or not) its own
            return
        if failure is not None:
            # Gone, or silent, before proving anything: nobody to report. Kicked, so that a
            # receiver still connected frees its place in the room for the next.
            logger.info("a receiver did not finish its PAKE: %s", failure.message)
            await relay.kick()
            return
        if self.closed:
            await relay.kick()
            return
        self._numbers += 1
        receiver = _Receiver(self._numbers, self.on_event, self._lost)
        self.proven += 1
        try:
            # Proven, it waits (told so) while the count is covered by transfers under way
            # (one may still fail) or every slot is busy.
            if not self._may_start() or self.slots.locked():
                busy = "the sender is serving other receivers; you are next in line"
                await tell_to_wait(relay, pake, busy)
                receiver(Notice(f"{receiver.label} waits for a free transfer slot"))
            await self._until(self._may_start)
            if self.count is not None and self.served >= self.count:
                return  # served enough: it goes when the room does
            self.admitted += 1
            try:
                await self._transfer(relay, pake, receiver)
            finally:
                self.admitted -= 1
                self.reconnecting.discard(receiver.number)
        finally:
            self.proven -= 1
            await self._notify()
            await relay.close()

    async def _transfer(self, relay: SideRelay, pake: PakeSession, receiver: _Receiver) -> None:
        try:
            async with self.slots:
                receiver.started = time.monotonic()
                words = WordsGate(receiver, self.confirm_words, receiver.label)
                agreed: list[bool] | None = [] if self._offers_reconnect() else None
                async with connect(relay, pake, self.settings, words, agreed) as link:
                    receiver.connected(link)
                    receiver(Connected(link.path()))
                    words.who = receiver.label
                    runs = Runs()

                    async def send_once(channel: Channel, run: int) -> TransferResult:
                        gate = words.gate() if run == 0 else None  # confirmed once
                        if run > 0 and isinstance(channel, PeerLink):
                            receiver.connected(channel)  # its address may be new
                        sender = Sender(channel, self.sources, self.settings, receiver, gate)
                        try:
                            return runs.add(await sender.run())
                        except BaseException:
                            runs.lost += sender.sent
                            receiver.sent = runs.lost
                            raise

                    reconnector = self._reconnector(pake, receiver, agreed)
                    result = await reconnector.run(link, send_once)
            receiver.done_bytes = result.bytes
            receiver.sent = result.sent
            self._end(receiver.outcome("done"))
        except P2PShareError as exc:
            self._end(receiver.outcome(exc.name, exc.message))
        except asyncio.CancelledError:
            self._end(receiver.outcome(InterruptedTransferError.name, "stopped by the sender"))
            raise

    def _offers_reconnect(self) -> bool:
        """Whether the sender offers each receiver to reconnect (docs/protocol.md,
        Reconnecting): always, on the many-mode room's server (ours, given with
        ``--server``, or the one embedded here), unless ``--reconnect-s 0``."""
        return self.settings.reconnect_s > 0

    def _reconnector(
        self, pake: PakeSession, receiver: _Receiver, agreed: list[bool] | None
    ) -> Reconnector:
        """Rides one receiver's transfer through its path dying, on the server of the room,
        under that receiver's own session key. When either side did not offer it, a budget
        of 0 makes the first loss final, as before reconnecting existed."""
        settings = self.settings
        if not agreed or not agreed[0]:
            settings = dataclasses.replace(settings, reconnect_s=0.0)
        keys = ReconnectKeys.from_pake(pake)
        url = self.room.client.url
        # Without --server the room is on the server embedded here (session.send_many).
        place: Place = EmbeddedPlace(url, settings) if settings.server is None else ServerPlace(url)
        return Reconnector(place, keys, settings, receiver)

    def _end(self, outcome: ReceiverOutcome) -> None:
        self.outcomes.append(outcome)
        self.on_event(ReceiverDone(outcome))

    async def _burn(self) -> None:
        """The first wrong confirmation: nobody else gets in, those still proving the code
        are sent away, those already connected finish."""
        self.guard.burned = True  # whichever step failed, the code ends with "burned"
        self.on_event(CodeBurned(self.served))
        await self._stop_admitting()

    async def _stop_admitting(self) -> None:
        self.closed = True
        with contextlib.suppress(P2PShareError):
            await self.room.lock()
        for task, relay in list(self._pending.items()):
            task.cancel()
            await relay.kick()
        await self._notify()
