"""Turning session events into what a person sees (rich, on stderr), and the texts both
reporters share; a program's JSON lines are :mod:`p2pshare.json_reporter`. The library never
prints; the CLI picks a reporter.

Much of what is shown came from the peer (names, text, error messages): rich's markup and
emoji codes are off everywhere here, so ``[red]`` or ``:warning:`` in a name prints as written,
and names arrive already escaped by ``files.printable``.

What a person may copy (the code, the command to run, the link, the summary) is printed with
``soft_wrap``: never cut by a newline, whatever the terminal's width or a pipe's.

Sizes use one system everywhere, IEC (KiB, MiB, GiB; speeds in MiB/s): it is what ``ls -lh``,
``du -h`` and ``df -h`` print, so a size shown here can be compared with the disk at a glance,
and the thresholds the user reads about (partial files of 1 MiB or more) are round in it.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.text import Text

from p2pshare import digests, events
from p2pshare.errors import LocalFileError
from p2pshare.files import MAX_PATH_BYTES, printable, terminal_safe

MIN_RATE_SECONDS = 0.1
"""Below this a transfer is too short for its speed to mean anything: none is shown."""
_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_size(nbytes: int | float | None) -> str:
    """``512 bytes``, ``1.0 KiB``, ``2.9 MiB``: IEC units, one decimal."""
    if nbytes is None:
        return "size unknown"
    if nbytes < 1024:
        return f"{int(nbytes)} byte{'s' if int(nbytes) != 1 else ''}"
    value = float(nbytes)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def describe_offer(offer: events.OfferSummary) -> str:
    """One line for the receiver: what, how much, where. Names are already printable."""
    if offer.is_text:
        return f"a text message ({format_size(offer.total_bytes)})"
    counts = [f"{offer.files} file{'s' if offer.files != 1 else ''}"]
    if offer.dirs:
        counts.append(f"{offer.dirs} director{'ies' if offer.dirs != 1 else 'y'}")
    names = ", ".join(offer.names) + (", ..." if len(offer.names) == 10 else "")
    shown = printable(str(offer.destination), MAX_PATH_BYTES) if offer.destination else None
    where = f" into {shown}" if shown else " to standard output"
    found = (
        f"; {format_size(offer.found_bytes)} already here from an earlier attempt, to be checked"
        if offer.found_bytes
        else ""
    )
    return f"{names} ({', '.join(counts)}, {format_size(offer.total_bytes)}){where}{found}"


def format_rate(nbytes: int, seconds: float) -> str | None:
    """``3.2 MiB/s``, or None when the transfer was too short to say."""
    if seconds < MIN_RATE_SECONDS:
        return None
    return format_size(nbytes / seconds).replace("bytes", "B").replace("byte", "B") + "/s"


class _SizeColumn(ProgressColumn):
    """``1.2/3.0 MiB`` in IEC units (rich's DownloadColumn mixes in SI for speeds); only
    ``1.2 MiB`` when the total is not known (``send --many`` until N)."""

    def render(self, task: Task) -> Text:
        done = format_size(task.completed)
        if task.total is None:
            return Text(done)
        return Text(f"{done}/{format_size(task.total)}")


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else format_size(speed) + "/s")


class HumanReporter:
    """Progress bars and messages on stderr, for a person at a terminal."""

    def __init__(
        self,
        label: str,
        raw_text: bool = False,
        *,
        hide_progress: bool = False,
        server: str | None = None,
        qr: bool = False,
        sending_text: bool = False,
        verify: bool = False,
    ) -> None:
        self.console = Console(stderr=True, highlight=False, markup=False, emoji=False)
        self.label = label
        self.raw_text = raw_text
        """Write a received text message's bytes as they came (``--raw``)."""
        self.hide_progress = hide_progress
        self.server = server
        """The rendezvous server the user chose (--server), for the receive command."""
        self.qr = qr
        self.sending_text = sending_text
        self.verify = verify
        """Show the words derived from the session key (``--verify``)."""
        self.progressed = False
        """Some data moved (then an interruption leaves something to resume)."""
        self.verb = "Sent"
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._status: Status | None = None

    def searching(self, text: str) -> None:
        """A spinner with ``text`` until the next event (a plain line when not a terminal)."""
        if self.console.is_terminal:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self.say(text)

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def say(self, text: str) -> None:
        """Print ``text`` as is, never wrapped: callers pass names through files.printable."""
        self.console.print(text, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}")

    def offer(self, offer: events.OfferSummary) -> None:
        """What the sender offers, before the question; the bar is then labelled with it."""
        self.label = "text message" if offer.is_text else ", ".join(offer.names)
        self.say("Offer: " + describe_offer(offer))

    def already_here(self, existing: tuple[Path, ...]) -> None:
        """Files of the offer that exist where they would go (before asking what to do)."""
        shown = ", ".join(printable(str(p)) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        self.say(f"Already here: {shown}{more}.")

    def __call__(self, event: events.SessionEvent) -> None:
        self._stop_status()
        if isinstance(event, events.CodeReady):
            self.say(f"Code: {event.code}")
            if event.rendezvous:
                self.say(f"Via {event.rendezvous}.")
            if event.public:
                self.say(f"On the other computer run: p2pshare receive {event.code}")
            elif event.advertised:
                self.say(f"On the other computer run: p2pshare receive {event.code}")
                self.say(f"  (where multicast is blocked: {receive_command(event, self.server)})")
            else:
                self.say(f"On the other computer run: {receive_command(event, self.server)}")
            link = None if event.mailbox else browser_link(event.code, event.server or self.server)
            if link is not None:
                self.say(f"Or open in a browser: {link}")
                if self.qr:
                    self.console.file.write(qr_text(link))
                    self.console.file.flush()
        elif isinstance(event, events.Verification):
            if self.verify:
                self.say(
                    f"Verify: {' '.join(event.words)} (the other side must show the same words)"
                )
        elif isinstance(event, events.Connected):
            self.say(f"Connected: {event.path.describe()}." if event.path else "Connected.")
            if self.verb == "Sent" and not self.verify:
                # Until the first progress: the offer is on the receiver's screen. (With
                # --verify the words, and maybe a question about them, come first.)
                self.searching("Waiting for the receiver to accept...")
        elif isinstance(event, events.Notice):
            self.say(f"warning: {event.message}")
        elif isinstance(event, events.Reconnecting):
            self.say(f"connection lost, reconnecting… {event.elapsed_s:.0f} s")
        elif isinstance(event, events.Reconnected):
            how = f": {event.path.describe()}" if event.path else ""
            self.say(f"Reconnected after {event.elapsed_s:.0f} s{how}.")
        elif isinstance(event, events.Progress):
            self.progressed = self.progressed or event.done > 0
            if self.hide_progress or not self.console.is_terminal:
                return  # a log gets the summary line, not a bar redrawn as text
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("{task.description}", markup=False),
                    BarColumn(),
                    _SizeColumn(),
                    _SpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=event.total)
            assert self._task is not None
            self._bar.update(self._task, completed=event.done)

    def close(self) -> None:
        self._stop_status()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def done(self, result: events.TransferResult, verb: str) -> None:
        self.close()
        if result.text is not None:
            # A received message goes to stdout escaped, terminal or not: a capture that is
            # later cat'ed or paged would replay escape sequences just the same.
            out = result.text if self.raw_text else terminal_safe(result.text)
            try:
                sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
                sys.stdout.flush()
            except OSError as exc:
                raise output_error(exc) from None  # told by the caller, on stderr
            return
        self.say(summary_line(result, verb, self.sending_text))

    def error(self, name: str, message: str) -> None:
        self.close()
        self.say(f"p2pshare: error: {message}")


class ManyHumanReporter(HumanReporter):
    """``send --many`` for a person: one progress line per active receiver (its label) and
    a total line; a line as each receiver ends; the summary of all at the end."""

    def __init__(self, label: str, count: int | None = None, **kwargs: Any) -> None:
        super().__init__(label, **kwargs)
        self.count = count
        self.outcomes: list[events.ReceiverOutcome] = []
        self._many_bar: Progress | None = None
        self._tasks: dict[int, TaskID] = {}
        self._done_bytes: dict[int, int] = {}
        self._finished_bytes = 0
        self._total_task: TaskID | None = None

    def _bars(self) -> Progress:
        if self._many_bar is None:
            self._many_bar = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                _SizeColumn(),
                _SpeedColumn(),
                console=self.console,
            )
            self._many_bar.start()
            self._total_task = self._many_bar.add_task("total", total=None)
        return self._many_bar

    def __call__(self, event: events.SessionEvent) -> None:
        if isinstance(event, events.ForReceiver):
            self._for_receiver(event)
        elif isinstance(event, events.ReceiverDone):
            self._receiver_done(event.outcome)
        elif isinstance(event, events.CodeBurned):
            self.say(
                "A receiver typed a wrong code (or someone guessed): this code is burned and "
                f"nobody else will be admitted; {event.served} served so far, transfers "
                "under way finish."
            )
        else:
            super().__call__(event)
            if isinstance(event, events.CodeReady):
                until = f"{self.count} have finished" if self.count else "Ctrl-C"
                self.say(f"Serving everyone who has the code, until {until}.")

    def _for_receiver(self, event: events.ForReceiver) -> None:
        inner, label = event.event, event.label
        if isinstance(inner, events.Progress):
            self.progressed = self.progressed or inner.done > 0
            self._done_bytes[event.receiver] = inner.done
            if self.hide_progress or not self.console.is_terminal:
                return
            bars = self._bars()
            if self.count and inner.total is not None and self._total_task is not None:
                bars.update(self._total_task, total=self.count * inner.total)
            task = self._tasks.get(event.receiver)
            if task is None:
                task = bars.add_task(label, total=inner.total)
                self._tasks[event.receiver] = task
            bars.update(task, completed=inner.done, description=label)
            self._update_total()
        elif isinstance(inner, events.Connected):
            # The label ends with how ("receiver 2, 10.0.0.5, direct"): said once, in full.
            head = label.removesuffix(", direct").removesuffix(", relayed")
            self.say(f"{head}: connected" + (f", {inner.path.describe()}." if inner.path else "."))
        elif isinstance(inner, events.Notice):
            self.say(f"{label}: {inner.message}")
        elif isinstance(inner, events.Verification) and self.verify:
            self.say(f"{label}: verify: {' '.join(inner.words)}")
        elif isinstance(inner, events.Reconnecting):
            self.say(f"{label}: connection lost, reconnecting… {inner.elapsed_s:.0f} s")
        elif isinstance(inner, events.Reconnected):
            self.say(f"{label}: reconnected after {inner.elapsed_s:.0f} s.")

    def _update_total(self) -> None:
        if self._many_bar is not None and self._total_task is not None:
            done = self._finished_bytes + sum(self._done_bytes.values())
            self._many_bar.update(self._total_task, completed=done)

    def _receiver_done(self, outcome: events.ReceiverOutcome) -> None:
        self.outcomes.append(outcome)
        self._done_bytes.pop(outcome.receiver, None)
        self._finished_bytes += outcome.bytes
        task = self._tasks.pop(outcome.receiver, None)
        if task is not None and self._many_bar is not None:
            self._many_bar.remove_task(task)
        self._update_total()
        self.say(outcome_line(outcome))

    def close(self) -> None:
        if self._many_bar is not None:
            self._many_bar.stop()
            self._many_bar = None
        super().close()

    def summary(self, outcomes: list[events.ReceiverOutcome], stopped: str) -> None:
        self.close()
        served = sum(1 for o in outcomes if o.result == "done")
        why = {
            "count": "all done",
            "burned": "stopped: the code was burned by a wrong code",
            "timeout": "stopped: --timeout reached",
            "interrupted": "stopped with Ctrl-C",
            "server": "stopped: the rendezvous server closed the room",
        }.get(stopped, stopped)
        self.say(f"Served {served} receiver{'s' if served != 1 else ''} ({why}):")
        for outcome in outcomes:
            self.say("  " + outcome_line(outcome))


def outcome_line(outcome: events.ReceiverOutcome) -> str:
    """``receiver 2, 127.0.0.1, direct: done, 3.0 MiB in 1.2 s (2.5 MiB/s)``."""
    rate = format_rate(outcome.bytes, outcome.seconds)
    timing = f" in {outcome.seconds:.1f} s" + (f" ({rate})" if rate else "")
    result = outcome.result + (f" ({outcome.message})" if outcome.message else "")
    if outcome.result == "done":
        result = "done, verified"
    return f"{outcome.label}: {result}, {format_size(outcome.bytes)}{timing}"


def receive_command(event: events.CodeReady, server: str | None = None) -> str:
    """The command the receiver runs: with ``--server`` when it needs one to find us (the
    sender's embedded server, or the server the sender was told to use)."""
    url = event.server or server
    option = f" --server {url}" if url else ""
    return f"p2pshare receive{option} {event.code}"


def browser_link(code: str, server: str | None) -> str | None:
    """The page a browser opens to receive ``code``: the rendezvous server serves it at ``/``
    (``ws://`` becomes ``http://``, ``wss://`` ``https://``); the code goes in the fragment,
    which a browser never sends to the server."""
    if server is None:
        return None
    scheme, sep, rest = server.partition("://")
    web = {"ws": "http", "wss": "https"}.get(scheme.lower())
    if not sep or web is None:
        return None
    host = rest.split("/", 1)[0]
    return f"{web}://{host}/#{code}"


def qr_text(link: str) -> str:
    """``link`` as a QR code drawn with block characters, for a phone's camera."""
    import io

    import segno

    out = io.StringIO()
    segno.make(link, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def summary_line(result: events.TransferResult, verb: str, sent_text: bool = False) -> str:
    """``Received 3 files, 2.9 MiB to /x in 1.2 s (2.4 MiB/s), BLAKE3 verified.``"""
    if sent_text:
        return f"{verb} the text message ({format_size(result.bytes)})."
    shown = printable(str(result.path), MAX_PATH_BYTES) if result.path else ""
    where = f" to {shown}" if verb == "Received" and shown else ""
    what = f"{result.files} files, " if result.files != 1 else ""
    resumed = (
        f" (resumed: {format_size(result.resumed)} already there, {format_size(result.sent)} sent)"
        if result.resumed
        else ""
    )
    rate = format_rate(result.sent, result.seconds)
    timing = f" in {result.seconds:.1f} s ({rate})" if rate else ""
    verified = f"{digests.label(result.hash)} verified"
    return f"{verb} {what}{format_size(result.bytes)}{where}{resumed}{timing}, {verified}."


def output_error(exc: OSError) -> LocalFileError:
    """The error for stdout that cannot be written (``exc``)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalFileError("disk full while writing standard output")
    return LocalFileError(f"standard output: {(exc.strerror or str(exc)).lower()}")


def unwritable_output(exc: OSError) -> LocalFileError:
    """:func:`output_error`, told on stderr now (the JSON lines that would carry it go to the
    same stdout) unless nobody is reading any more."""
    error = output_error(exc)
    if not isinstance(exc, BrokenPipeError):
        with contextlib.suppress(OSError):
            sys.stderr.write(f"p2pshare: error: {error.message}\n")
            sys.stderr.flush()
    return error
