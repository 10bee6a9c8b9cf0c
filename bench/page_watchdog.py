"""Deadlines for bench/page_speed.py: every step of a leg is bounded, and a step that does not
end in time names its leg and step and stops the run (a bench that hangs is a bug)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Watchdog:
    """One deadline at a time; when it passes, say which leg and step hung and stop."""

    def __init__(self) -> None:
        self.what = ""
        self.deadline = 0.0
        self.children: list[subprocess.Popen[Any]] = []
        threading.Thread(target=self._watch, daemon=True).start()

    @contextmanager
    def step(self, leg: str, step: str, seconds: float) -> Iterator[None]:
        self.what = f"{leg}: {step} (deadline {seconds:.0f} s)"
        self.deadline = time.time() + seconds
        try:
            yield
        finally:
            self.deadline = 0.0

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            if self.deadline and time.time() > self.deadline:
                print(f"\nHUNG: {self.what}", file=sys.stderr, flush=True)
                for child in self.children:
                    if child.poll() is None:
                        child.kill()
                os._exit(3)  # the Playwright driver sees its pipe close and ends Chromium


class LegFailed(Exception):
    """A leg's transfer did not complete (its peer failed, or the page showed an error)."""


def check_exit(peer: Any, timeout_s: float) -> None:
    """The CLI peer exits 0; otherwise its exit code, last events and stderr are the error."""
    code = peer.wait(timeout_s)
    if code != 0:
        raise LegFailed(f"{peer.args[0]} exited {code}: {peer.events[-2:]} {peer.stderr[-300:]}")


def read_line(proc: subprocess.Popen[str], timeout_s: float, what: str) -> dict[str, Any]:
    """The Python peer's next JSON line; its death or silence is an error naming ``what``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise LegFailed(f"the Python peer said nothing in {timeout_s:.0f} s: {what}")
    line = proc.stdout.readline()
    if not line:
        raise LegFailed(f"the Python peer exited ({proc.wait()}) before {what}")
    answer: dict[str, Any] = json.loads(line)
    if "error" in answer:
        raise LegFailed(f"the Python peer failed before {what}: {answer['error']}")
    return answer


# -- the Python side of the ceiling: p2pshare's PeerLink in its own process ---------------------
