"""Session events as JSON lines on stdout, for a program (``--json``): one object per line,
progress at most every 0.25 s. The person's reporters are in :mod:`p2pshare.progress`; the
events are listed in the README (the ``--json`` option)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from p2pshare import events
from p2pshare.progress import (
    HumanReporter,
    browser_link,
    receive_command,
    unwritable_output,
)

JSON_PROGRESS_INTERVAL_S = 0.25


class JsonReporter:
    """One JSON object per line on stdout; progress at most every 0.25 s, never the same
    figures twice (the final one is emitted exactly once)."""

    def __init__(
        self,
        out: TextIO | None = None,
        server: str | None = None,
        verify: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.server = server
        self.verify = verify
        self.extra = extra or {}
        """Fields added to every object (``send --many``: the receiver's id and label)."""
        self.progressed = False
        self._root = self  # the reporter whose output this is (send --many: the parent's)
        self._failed = False
        self.verb = "Sent"
        self._last_progress = 0.0
        self._last_figures: tuple[int, int | None] | None = None
        self._receivers: dict[int, JsonReporter] = {}
        self.outcomes: list[events.ReceiverOutcome] = []

    def emit(self, obj: dict[str, Any]) -> None:
        """Writes one line. Output that cannot be written ends the command: the first failure
        is told on stderr (unless the reader went away) and raised as a LocalFileError; the
        lines after it, the error's own among them, are dropped (send --many: every
        receiver's lines too)."""
        if self._root._failed:
            return
        try:
            self.out.write(json.dumps({**obj, **self.extra}, ensure_ascii=True) + "\n")
            self.out.flush()
        except OSError as exc:
            self._root._failed = True
            raise unwritable_output(exc) from None

    @property
    def out_failed(self) -> bool:
        """Whether the output could not be written (and nothing more is written)."""
        return self._root._failed

    def say(self, text: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self.emit({"event": "warning", "message": message})

    def searching(self, text: str) -> None:
        pass

    def offer(self, offer: events.OfferSummary) -> None:
        self.emit(
            {
                "event": "offer",
                "files": offer.files,
                "dirs": offer.dirs,
                "bytes": offer.total_bytes,
                "names": list(offer.names),
                "found": offer.found_bytes,
                "text": offer.is_text,
            }
        )

    def already_here(self, existing: tuple[Path, ...]) -> None:
        pass  # a program passes --overwrite or not: it is never asked

    def __call__(self, event: events.SessionEvent) -> None:
        if isinstance(event, events.ForReceiver):
            child = self._receivers.get(event.receiver)
            if child is None:
                child = JsonReporter(self.out, self.server, self.verify)
                child._root = self._root
                self._receivers[event.receiver] = child
            child.extra = {"receiver": event.receiver, "label": event.label}
            child(event.event)
            self.progressed = self.progressed or child.progressed
        elif isinstance(event, events.ReceiverDone):
            self.outcomes.append(event.outcome)
            self._receivers.pop(event.outcome.receiver, None)
            self.emit({"event": "receiver-done", **_outcome_fields(event.outcome)})
        elif isinstance(event, events.CodeBurned):
            self.emit({"event": "code-burned", "served": event.served})
        elif isinstance(event, events.CodeReady):
            self.emit(
                {
                    "event": "code",
                    "code": event.code,
                    "server": event.server,
                    "command": receive_command(event, self.server),
                    "short_command": f"p2pshare receive {event.code}"
                    if event.advertised or event.public
                    else None,
                    "link": None
                    if event.mailbox
                    else browser_link(event.code, event.server or self.server),
                    "public": event.public,
                    "rendezvous": event.rendezvous,
                }
            )
        elif isinstance(event, events.Verification):
            if self.verify:
                self.emit({"event": "verify", "words": list(event.words)})
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
        elif isinstance(event, events.Reconnecting):
            self.emit(
                {
                    "event": "reconnecting",
                    "attempt": event.attempt,
                    "elapsed_s": round(event.elapsed_s, 3),
                    "budget_s": event.budget_s,
                }
            )
        elif isinstance(event, events.Reconnected):
            path = event.path
            self.emit(
                {
                    "event": "reconnected",
                    "attempt": event.attempt,
                    "elapsed_s": round(event.elapsed_s, 3),
                    "path": path.kind if path else None,
                }
            )
        elif isinstance(event, events.Progress):
            self.progressed = self.progressed or event.done > 0
            now = time.monotonic()
            figures = (event.done, event.total)
            if figures == self._last_figures:
                return
            if (
                event.done in (0, event.total)
                or now - self._last_progress >= JSON_PROGRESS_INTERVAL_S
            ):
                self._last_progress = now
                self._last_figures = figures
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
            "hash": result.hash,
            result.hash: result.digest,
            "path": str(result.path) if result.path else None,
        }
        if result.text is not None:
            done["text"] = result.text
        self.emit(done)

    def error(self, name: str, message: str) -> None:
        self.emit({"event": "error", "error": name, "message": message})

    def summary(self, outcomes: list[events.ReceiverOutcome], stopped: str) -> None:
        """``send --many``: every receiver with bytes, time and result."""
        self.emit(
            {
                "event": "summary",
                "stopped": stopped,
                "served": sum(1 for o in outcomes if o.result == "done"),
                "receivers": [_outcome_fields(o) for o in outcomes],
            }
        )


def _outcome_fields(outcome: events.ReceiverOutcome) -> dict[str, Any]:
    return {
        "receiver": outcome.receiver,
        "label": outcome.label,
        "bytes": outcome.bytes,
        "seconds": round(outcome.seconds, 3),
        "result": outcome.result,
        "message": outcome.message,
        "sent": outcome.sent,
    }


Reporter = HumanReporter | JsonReporter
