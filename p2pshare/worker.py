"""The bridge between the event loop and one worker thread, in typed messages both ways.

Blocking work (reading and hashing what is sent, writing and verifying what is received) runs
in a worker thread so that the event loop keeps serving the data channel. Both the sender's
read-ahead (:func:`p2pshare.sources.read_ahead`) and the receiver's writer
(:func:`p2pshare.sinks.write_worker`) are a *work* function run by a :class:`Worker`::

    event loop                                     worker thread: work(worker)
      submit(job) ─────── jobs, in order ───────>    worker.get()  (None after stop())
      async for result in worker <── results ────    worker.put(result)  (waits while
                                                       ``depth`` results are unread)
      stop()  ─────────────────────────────────>    put() returns False: stop producing
      the work's exception is raised here <──────    work raised

Jobs and results are small frozen dataclasses; the loop never blocks on the thread. Both
cross in batches: the jobs submitted in one turn of the loop go over together, and results
handed over while the loop has not yet taken the earlier ones wait with them, so that a
small file (three jobs, two results) does not cost five thread wake-ups (issue 31).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Generic, TypeVar

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class _Ended:
    """The work function returned: no more results."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class Worker(Generic[JobT, ResultT]):
    """Runs ``work(self)`` in a daemon thread named ``name`` once :meth:`start` is called.

    ``depth`` bounds the results waiting for the loop (0: unbounded, for a worker whose
    results are already bounded by what it is given).
    """

    def __init__(
        self, name: str, work: Callable[[Worker[JobT, ResultT]], None], *, depth: int = 0
    ) -> None:
        self._work = work
        self._jobs: SimpleQueue[list[JobT] | None] = SimpleQueue()
        self._outgoing: list[JobT] = []  # the loop's, until its turn ends
        self._incoming: deque[JobT] = deque()  # the thread's
        self._results: asyncio.Queue[ResultT | _Ended | _Failed] = asyncio.Queue()
        self._handing: list[ResultT | _Ended | _Failed] = []  # under _handing_lock
        self._handing_lock = threading.Lock()
        self._slots = threading.Semaphore(depth) if depth else None
        self._stopped = threading.Event()
        self._handed = 0  # written by the thread only
        self._taken = 0  # written by the loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- the event loop's side

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def submit(self, job: JobT) -> None:
        """Queue ``job``; never blocks. It reaches the thread at the end of this turn of the
        loop, with the others submitted in it."""
        if self._loop is None:
            self._jobs.put([job])
            return
        if not self._outgoing:
            self._loop.call_soon(self._send_jobs)
        self._outgoing.append(job)

    def _send_jobs(self) -> None:
        if self._outgoing:
            batch, self._outgoing = self._outgoing, []
            self._jobs.put(batch)

    def stop(self) -> None:
        """Ask the work to end: :meth:`get` returns None once the jobs already submitted are
        done, and :meth:`put` returns False from now on. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._send_jobs()
        self._jobs.put(None)
        if self._slots is not None:
            self._slots.release()  # wakes a put() waiting for room

    def join(self, timeout_s: float) -> None:
        """Wait (blocking) for the thread to end."""
        self._thread.join(timeout_s)

    def __aiter__(self) -> Worker[JobT, ResultT]:
        return self

    async def __anext__(self) -> ResultT:
        """The next result; the iteration ends when the work returned, and raises what it
        raised."""
        item = await self._results.get()
        if isinstance(item, _Ended):
            raise StopAsyncIteration
        if isinstance(item, _Failed):
            raise item.error
        if self._slots is not None:
            self._slots.release()
        self._taken += 1
        return item

    # -- the worker thread's side

    def get(self) -> JobT | None:
        """The next job, waiting for one; None once stopped and the earlier jobs are done."""
        while not self._incoming:
            batch = self._jobs.get()
            if batch is None:
                return None
            self._incoming.extend(batch)
        return self._incoming.popleft()

    def put(self, result: ResultT) -> bool:
        """Hand ``result`` to the loop, first waiting for room if the depth is bounded. False
        (and ``result`` dropped) once the loop stopped listening: the work should end."""
        if self._slots is not None:
            self._slots.acquire()
        if self._stopped.is_set():
            if self._slots is not None:
                self._slots.release()  # so that no later put() waits
            return False
        self._deliver(result)
        self._handed += 1
        return True

    @property
    def backlog(self) -> int:
        """Results handed over and not yet taken by the loop: how far the work runs ahead of
        its consumer (each counter is written by one thread only, so reading both is safe)."""
        return self._handed - self._taken

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def _deliver(self, item: ResultT | _Ended | _Failed) -> None:
        assert self._loop is not None
        with self._handing_lock:
            self._handing.append(item)
            if len(self._handing) > 1:
                return  # the loop was already woken for the earlier ones
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._take_handed)

    def _take_handed(self) -> None:
        with self._handing_lock:
            items, self._handing = self._handing, []
        for item in items:
            self._results.put_nowait(item)

    def _run(self) -> None:
        try:
            self._work(self)
        except BaseException as exc:  # raised on the loop, from __anext__
            self._deliver(_Failed(exc))
        else:
            self._deliver(_Ended())
