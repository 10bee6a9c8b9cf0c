"""The worker-thread bridge, with real threads: order, bounded read-ahead, stopping, failures."""

from __future__ import annotations

import asyncio
import threading

import pytest

from p2pshare.worker import Worker


async def test_jobs_run_in_order_and_results_come_back() -> None:
    """Jobs submitted before stop() are all done, in order; the results end with the work."""

    def double(worker: Worker[int, int]) -> None:
        while (job := worker.get()) is not None:
            worker.put(job * 2)

    worker: Worker[int, int] = Worker("test-double", double)
    worker.start()
    for job in range(5):
        worker.submit(job)
    got = [await anext(worker) for _ in range(5)]
    worker.stop()
    assert got == [0, 2, 4, 6, 8]
    assert [r async for r in worker] == []
    worker.join(5)


async def test_depth_bounds_the_results_waiting_and_stop_releases_the_producer() -> None:
    """A producer stays at most ``depth`` results ahead of the loop; after stop() its waiting
    put() returns False, so the thread ends; what it delivered before can still be read."""
    produced: list[int] = []
    waiting = threading.Event()
    refused = threading.Event()

    def produce(worker: Worker[None, int]) -> None:
        for n in range(100):
            if n == 3:
                waiting.set()  # the fourth put finds no room until the loop reads
            if not worker.put(n):
                refused.set()
                return
            produced.append(n)

    worker: Worker[None, int] = Worker("test-produce", produce, depth=3)
    worker.start()
    assert await asyncio.to_thread(waiting.wait, 5)
    assert produced == [0, 1, 2]  # a put returns True only with room, and none was read
    worker.stop()
    await asyncio.to_thread(worker.join, 5)
    assert refused.is_set() and produced == [0, 1, 2]
    assert [n async for n in worker] == [0, 1, 2]


async def test_the_work_s_exception_is_raised_on_the_loop() -> None:
    """Whatever the work raises reaches the loop, after the results before it."""

    def fail(worker: Worker[None, str]) -> None:
        worker.put("before")
        raise ValueError("broken disk")

    worker: Worker[None, str] = Worker("test-fail", fail)
    worker.start()
    assert await anext(worker) == "before"
    with pytest.raises(ValueError, match="broken disk"):
        await anext(worker)


async def test_backlog_counts_results_handed_over_and_not_yet_taken() -> None:
    """What the read-ahead paces compression by (issue 12): the thread's puts minus the loop's
    takes, as seen from either side."""
    seen: list[int] = []

    def produce(worker: Worker[None, int]) -> None:
        for n in range(6):
            worker.put(n)
            seen.append(worker.backlog)

    worker: Worker[None, int] = Worker("test-backlog", produce)
    worker.start()
    worker.join(5)  # blocks the loop on purpose: nothing is taken while the thread puts
    assert seen == [1, 2, 3, 4, 5, 6]
    assert await anext(worker) == 0 and worker.backlog == 5
    assert [n async for n in worker] == [1, 2, 3, 4, 5]
    assert worker.backlog == 0
