"""Turning session events into what a person (rich, on stderr) or a program (JSON lines, on
stdout) sees. The library never prints; the CLI picks one of these reporters.

Much of what is shown came from the peer (names, text, error messages): rich's markup and
emoji codes are off everywhere here, so ``[red]`` or ``:warning:`` in a name prints as written,
and names arrive already escaped by ``files.printable``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from p2pshare import events
from p2pshare.files import terminal_safe

JSON_PROGRESS_INTERVAL_S = 0.25


class HumanReporter:
    """Progress bars and messages on stderr, for a person at a terminal."""

    def __init__(self, label: str, raw_text: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False, markup=False, emoji=False)
        self.label = label
        self.raw_text = raw_text
        """Write a received text message's bytes as they came (``--raw``)."""
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def say(self, text: str) -> None:
        """Print ``text`` as is: callers pass names through files.printable first."""
        self.console.print(text, markup=False)

    def __call__(self, event: events.SessionEvent) -> None:
        if isinstance(event, events.CodeReady):
            command = receive_command(event)
            self.say(f"Code: {event.code}")
            self.say(f"On the other computer run: {command}")
        elif isinstance(event, events.Connected):
            self.say(f"Connected: {event.path.describe()}." if event.path else "Connected.")
        elif isinstance(event, events.Notice):
            self.say(f"warning: {event.message}")
        elif isinstance(event, events.Progress):
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("{task.description}", markup=False),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=event.total)
            assert self._task is not None
            self._bar.update(self._task, completed=event.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def done(self, result: events.TransferResult, verb: str) -> None:
        self.close()
        if result.text is not None:
            # A received message goes to stdout escaped, terminal or not: a capture that is
            # later cat'ed or paged would replay escape sequences just the same.
            out = result.text if self.raw_text else terminal_safe(result.text)
            sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
            sys.stdout.flush()
            return
        where = f" to {result.path}" if verb == "Received" and result.path else ""
        what = f"{result.files} files, " if result.files != 1 else ""
        sent = result.sent
        rate = sent / result.seconds / 1e6 if result.seconds > 0 else 0.0
        resumed = (
            f" (resumed: {result.resumed:,} bytes were already there, {sent:,} sent)"
            if result.resumed
            else ""
        )
        self.say(
            f"{verb} {what}{result.bytes:,} bytes{where}{resumed} in {result.seconds:.1f} s "
            f"({rate:.1f} MB/s), SHA-256 verified."
        )

    def error(self, name: str, message: str) -> None:
        self.close()
        self.console.print(f"p2pshare: error: {message}", markup=False, soft_wrap=True)


class JsonReporter:
    """One JSON object per line on stdout; progress at most every 0.25 s."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last_progress = 0.0

    def emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=True) + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        pass

    def __call__(self, event: events.SessionEvent) -> None:
        if isinstance(event, events.CodeReady):
            self.emit(
                {
                    "event": "code",
                    "code": event.code,
                    "server": event.server,
                    "command": receive_command(event),
                }
            )
        elif isinstance(event, events.Connected):
            path = event.path
            self.emit(
                {
                    "event": "connected",
                    "path": path.kind if path else None,
                    "local": path.local if path else None,
                    "remote": path.remote if path else None,
                    "relay": path.relay if path else None,
                }
            )
        elif isinstance(event, events.Notice):
            self.emit({"event": "warning", "message": event.message})
        elif isinstance(event, events.Progress):
            now = time.monotonic()
            if (
                event.done in (0, event.total)
                or now - self._last_progress >= JSON_PROGRESS_INTERVAL_S
            ):
                self._last_progress = now
                self.emit({"event": "progress", "done": event.done, "total": event.total})

    def close(self) -> None:
        pass

    def done(self, result: events.TransferResult, verb: str) -> None:
        done: dict[str, Any] = {
            "event": "done",
            "bytes": result.bytes,
            "sent": result.sent,
            "resumed": result.resumed,
            "files": result.files,
            "seconds": round(result.seconds, 3),
            "sha256": result.sha256,
            "path": str(result.path) if result.path else None,
        }
        if result.text is not None:
            done["text"] = result.text
        self.emit(done)

    def error(self, name: str, message: str) -> None:
        self.emit({"event": "error", "error": name, "message": message})


Reporter = HumanReporter | JsonReporter


def receive_command(event: events.CodeReady) -> str:
    server = f" --server {event.server}" if event.server else ""
    return f"p2pshare receive{server} {event.code}"
