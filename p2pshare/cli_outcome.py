"""How a command ends: run the library's coroutine, then print the result or the one-line
error and exit with its code (the summary and exit code of ``send --many`` included)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer

from p2pshare.errors import (
    ConnectError,
    InterruptedTransferError,
    LocalFileError,
    P2PShareError,
    PeerLostError,
    SignallingError,
    WrongCodeError,
)
from p2pshare.events import ManyResult, ReceiverOutcome, TransferResult
from p2pshare.json_reporter import JsonReporter, Reporter
from p2pshare.progress import ManyHumanReporter, unwritable_output
from signal_server import eventloop

T = TypeVar("T")

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""Stop requests other than Ctrl-C: ``kill``, a service manager, a closed terminal or SSH
session. Each ends the command as Ctrl-C does (see :func:`like_ctrl_c`)."""


async def like_ctrl_c(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``, cancelled by SIGTERM or SIGHUP the way asyncio's runner cancels it on
    Ctrl-C: the peer is told at once that we stopped (instead of waiting out its silence
    deadline), an interrupted receive keeps its partial data, and the command exits 130. A
    second signal cancels the goodbye too, as a second Ctrl-C does."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in STOP_SIGNALS:
        if task is None:
            break
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, task.cancel)
            installed.append(signum)
    try:
        return await coro
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def setup_logging(verbose: int) -> None:
    if not verbose:
        return
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logging.getLogger("p2pshare").setLevel(logging.DEBUG)
    logging.getLogger("signal_server").setLevel(logging.DEBUG)
    if verbose >= 2:
        for name in ("aiortc", "aioice"):
            logging.getLogger(name).setLevel(logging.DEBUG)


def run_command(
    coro: Coroutine[Any, Any, TransferResult],
    reporter: Reporter,
    verb: str,
    verbose: int,
    resumable: bool = False,
) -> NoReturn:
    try:
        result = eventloop.run(like_ctrl_c(coro))
    except P2PShareError as exc:
        fail(reporter, exc, verbose, resumable)
    except (KeyboardInterrupt, asyncio.CancelledError):
        fail(reporter, InterruptedTransferError(), verbose, resumable)
    except Exception as exc:
        if verbose:
            logging.getLogger("p2pshare").exception("unexpected error")
        fail(
            reporter,
            P2PShareError(
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(please report this; -v shows details)"
            ),
            verbose,
        )
    try:
        reporter.done(result, verb)  # a received text goes to stdout here
    except P2PShareError as exc:
        fail(reporter, exc, verbose)
    raise typer.Exit(0)


def run_many(
    coro: Coroutine[Any, Any, ManyResult],
    reporter: Reporter,
    count: int | None,
    verbose: int,
) -> NoReturn:
    """``send --many``: the summary of every receiver, then an exit code saying how it
    ended (see the send command's help)."""
    try:
        result = eventloop.run(like_ctrl_c(coro))
    except P2PShareError as exc:
        fail(reporter, exc, verbose)
    except (KeyboardInterrupt, asyncio.CancelledError):
        outcomes = list(getattr(reporter, "outcomes", []))
        _summary_or_fail(reporter, outcomes, "interrupted", verbose)
        cut = any(o.result == InterruptedTransferError.name for o in outcomes)
        raise typer.Exit(InterruptedTransferError.exit_code if cut or count else 0) from None
    outcomes = list(result.receivers)
    _summary_or_fail(reporter, outcomes, result.stopped, verbose)
    served = result.served
    if result.stopped == "burned":
        error: P2PShareError | None = WrongCodeError(
            f"a receiver typed a wrong code: the code is burned, {served} receiver"
            f"{'s' if served != 1 else ''} served"
        )
    elif result.stopped == "timeout" and count is not None and served < count:
        error = PeerLostError(f"--timeout reached with {served} of {count} receivers served")
    elif result.stopped == "server":
        error = SignallingError("the rendezvous server closed the room")
    else:
        error = None
    if error is not None:
        fail(reporter, error, verbose)
    raise typer.Exit(0)


def _summary_or_fail(
    reporter: Reporter, outcomes: list[ReceiverOutcome], stopped: str, verbose: int
) -> None:
    """The summary of every receiver; output that could not be written, now or during the
    session (a receiver's line), ends the command with its error."""
    try:
        many_summary(reporter, outcomes, stopped)
        if isinstance(reporter, JsonReporter) and reporter.out_failed:
            raise LocalFileError("the output could not be written")
    except P2PShareError as exc:
        fail(reporter, exc, verbose)


def many_summary(reporter: Reporter, outcomes: list[ReceiverOutcome], stopped: str) -> None:
    if isinstance(reporter, ManyHumanReporter | JsonReporter):
        reporter.summary(outcomes, stopped)


RESUME_HINT = {
    "Received": "the data received so far was kept (files of 1 MiB or more); when the same "
    "files are sent to this place again, the transfer resumes from there",
    "Sent": "the receiver keeps what it got (files of 1 MiB or more); sending the same files "
    "again to the same place resumes from there",
}


def fail(
    reporter: Reporter, exc: P2PShareError, verbose: int, resumable: bool = False, verb: str = ""
) -> NoReturn:
    if verbose:
        logging.getLogger("p2pshare").debug("failed", exc_info=exc)
    message = exc.message
    interrupted = isinstance(exc, InterruptedTransferError | PeerLostError | ConnectError)
    if resumable and interrupted and reporter.progressed:
        message = f"{message.rstrip('.')}; {RESUME_HINT[reporter.verb]}"
    try:
        reporter.error(exc.name, message)
    except P2PShareError:  # stdout could not take the JSON line: stderr still tells
        with contextlib.suppress(OSError):
            sys.stderr.write(f"p2pshare: error: {message}\n")
    except OSError:
        pass  # the terminal is gone (SIGHUP): nobody is left to read it
    raise typer.Exit(exc.exit_code)


def exit_process(status: int) -> NoReturn:
    """Exit with ``status`` without the interpreter's teardown, when nothing needs it.

    The transfer is over and on disk by now, but tearing down the modules that aiortc,
    cryptography and rich bring in takes another 40-80 ms, which the user (and a script
    waiting for us) sits through at every exit. The atexit handlers (logging's among them)
    run first and the output streams are flushed after them. Output to a reader that went
    away (a closed pipe) is dropped quietly, as there is nobody left to tell; any other
    failure to write it is an error of its own. A non-daemon thread still alive takes the
    ordinary way out, which waits for it. Daemon threads do not: the sender's reader may be
    blocked in ``stdin.buffer.read`` holding the buffer's lock, and the ordinary teardown's
    closing of stdin then aborts the interpreter ("could not acquire lock ... at interpreter
    shutdown", exit -6). (So ``main()`` never returns, nor raises SystemExit, when the
    command ran.)"""
    current = threading.current_thread()
    if any(t is not current and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except ValueError:
            pass  # a stream already closed
        except OSError as exc:
            if not status:  # else the command's own failure was told, and is what counts
                status = unwritable_output(exc).exit_code
    os._exit(status)


_COMMANDS = {"send": "send", "tx": "send", "receive": "receive", "recv": "receive", "rx": "receive"}


def report_usage(message: str, args: list[str]) -> NoReturn:
    """Every usage error, typer's or ours, the same way: one line on stderr (and an ``error``
    event with ``--json``), exit 2."""
    command = next((_COMMANDS[a] for a in args if a in _COMMANDS), None)
    hint = f" (see: p2pshare {command} --help)" if command else " (see: p2pshare --help)"
    if "--json" in args:
        JsonReporter().error("usage", message)
    sys.stderr.write(f"p2pshare: error: {message}{hint}\n")
    sys.stderr.flush()
    sys.exit(2)
