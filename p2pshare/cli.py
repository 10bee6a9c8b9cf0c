"""The ``p2pshare`` command: parse arguments into Settings, call the library, report.

Thin on purpose: every decision lives in the library. Errors from the library arrive as
:class:`~p2pshare.errors.P2PShareError`; this module prints them on one line and exits with
their code. Nothing here prints a traceback unless ``--verbose`` asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from p2pshare import __version__, session
from p2pshare.codes import (
    DEFAULT_WORDS,
    Code,
    closest_word,
    parse_chosen_code,
    parse_code,
    unknown_words,
)
from p2pshare.codes import complete as complete_code
from p2pshare.config import (
    ENV_CODE,
    ENV_LOCAL_ADDRESSES,
    ENV_SERVER,
    ENV_STUN,
    ENV_TURN,
    ENV_TURN_PASSWORD,
    ENV_TURN_USER,
    Settings,
    window_bytes_from_env,
)
from p2pshare.errors import (
    ConnectError,
    DeclinedError,
    InterruptedTransferError,
    P2PShareError,
    PeerLostError,
    SignallingError,
    WrongCodeError,
)
from p2pshare.events import ManyResult, ReceiverOutcome
from p2pshare.files import printable
from p2pshare.messages import MAX_ENTRIES, MAX_TEXT_BYTES
from p2pshare.preflight import check_readable, check_writable, output_directory
from p2pshare.progress import (
    HumanReporter,
    JsonReporter,
    ManyHumanReporter,
    Reporter,
    format_size,
)
from p2pshare.rendezvous import parse_server_url
from p2pshare.transfer import DEFAULT_MAX_OFFER_BYTES, DEFAULT_MAX_OFFER_ENTRIES
from p2pshare.webrtc import IceConfig, check_ice_url
from signal_server import eventloop

app = typer.Typer(
    name="p2pshare",
    help="Send files peer to peer over WebRTC, paired by a short code.\n\n"
    "\b\n"
    "  p2pshare send FILE        prints a code; read it to the receiver\n"
    "  p2pshare receive CODE     on the other machine\n\n"
    "Also: recv and rx for receive, tx for send.",
    no_args_is_help=False,
    invoke_without_command=True,
    # Plain help: no boxes (they wrap commands a person copies) and no typer metavars like
    # <bool> or <list[Path]>; usage errors are printed by main(), one style for all.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar=ENV_SERVER,
        metavar="URL",
        show_envvar=True,
        help="Rendezvous server (ws://HOST:PORT or wss://...). On send, without it the sender "
        "runs one in its own process on this machine's network address and advertises it "
        "on the local network (mDNS); on receive, without it the sender is looked for there.",
    ),
]
LocalAddressOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--local-address",
        metavar="ADDR",
        help="Offer only this local IP address to the peer (repeatable; also "
        f"{ENV_LOCAL_ADDRESSES}, comma-separated). 127.0.0.1 connects two programs on one "
        "machine. Without --server, the sender's rendezvous server listens on the first.",
    ),
]
StunOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--stun",
        metavar="URL",
        rich_help_panel="Network",
        help=f"STUN server, e.g. stun:stun.example.org:3478 (repeatable; also {ENV_STUN}, "
        "comma-separated). Used before any the rendezvous server suggests.",
    ),
]
TurnOpt = Annotated[
    str | None,
    typer.Option(
        "--turn",
        envvar=ENV_TURN,
        metavar="URL",
        rich_help_panel="Network",
        help="TURN server, e.g. turn:turn.example.org:3478?transport=udp, with "
        "--turn-user and --turn-password. Used before the rendezvous server's.",
    ),
]
TurnUserOpt = Annotated[
    str | None,
    typer.Option(
        "--turn-user",
        envvar=ENV_TURN_USER,
        metavar="USER",
        rich_help_panel="Network",
        help="TURN username.",
    ),
]
TurnPasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--turn-password",
        envvar=ENV_TURN_PASSWORD,
        metavar="PASSWORD",
        rich_help_panel="Network",
        help=f"TURN password (better in {ENV_TURN_PASSWORD}: argv is public).",
    ),
]
RelayOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--relay-only",
        rich_help_panel="Network",
        help="Only connect through the TURN relay (hides your addresses from the peer).",
    ),
]
DirectOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--direct-only",
        rich_help_panel="Network",
        help="Never relay through TURN: connect directly or fail.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON lines on stdout instead of progress bars.")
]
VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="Log what happens (-vv: and aiortc).")
]

VerifyOpt = Annotated[
    bool,
    typer.Option(
        "--verify",
        help="Show a few words derived from the session key on both sides: read them to "
        "each other; different words mean someone is in the middle (stop with Ctrl-C).",
    ),
]
HideProgressOpt = Annotated[
    bool, typer.Option("--hide-progress", help="Do not show the progress bar.")
]


class UsageProblem(Exception):
    """Bad arguments: printed by :func:`main` like every usage error, exit 2."""


def _version(value: bool) -> None:
    if value:
        print(f"p2pshare {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        # Bare `p2pshare` is a request for help, not a mistake.
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _setup_logging(verbose: int) -> None:
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


def _from_env_list(values: list[str] | None, env: str) -> list[str]:
    if values:
        return list(values)
    return [v.strip() for v in os.environ.get(env, "").split(",") if v.strip()]


def _settings(
    server: str | None,
    local_address: list[str] | None,
    stun: list[str] | None = None,
    turn: str | None = None,
    turn_user: str | None = None,
    turn_password: str | None = None,
    relay_only: bool = False,
    direct_only: bool = False,
    **kw: Any,
) -> Settings:
    """Settings from the command line; bad network options are usage errors."""
    if relay_only and direct_only:
        _usage("--relay-only and --direct-only exclude each other")
    servers: list[dict[str, Any]] = []
    stun_urls = _from_env_list(stun, ENV_STUN)
    for url in [*stun_urls, *([turn] if turn else [])]:
        try:
            check_ice_url(url)
        except ValueError:
            _usage(f"not a STUN/TURN URL: {url} (like stun:host:3478 or turn:host:3478)")
    if stun_urls:
        servers.append({"urls": stun_urls})
    if turn:
        if not (turn_user and turn_password):
            _usage("--turn needs --turn-user and --turn-password")
        servers.append({"urls": [turn], "username": turn_user, "credential": turn_password})
    addresses = _from_env_list(local_address, ENV_LOCAL_ADDRESSES)
    policy = "relay" if relay_only else "direct" if direct_only else "all"
    ice = IceConfig(servers=tuple(servers), local_addresses=tuple(addresses) or None, policy=policy)
    try:
        window = window_bytes_from_env()
    except ValueError as exc:
        _usage(str(exc))
    return Settings(server=server or None, ice=ice, window_bytes=window, **kw)


def _run(
    coro: Coroutine[Any, Any, session.TransferResult],
    reporter: Reporter,
    verb: str,
    verbose: int,
    resumable: bool = False,
) -> NoReturn:
    try:
        result = eventloop.run(coro)
    except P2PShareError as exc:
        _fail(reporter, exc, verbose, resumable)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _fail(reporter, InterruptedTransferError(), verbose, resumable)
    except Exception as exc:
        if verbose:
            logging.getLogger("p2pshare").exception("unexpected error")
        _fail(
            reporter,
            P2PShareError(
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(please report this; -v shows details)"
            ),
            verbose,
        )
    reporter.done(result, verb)
    raise typer.Exit(0)


def _run_many(
    coro: Coroutine[Any, Any, ManyResult],
    reporter: Reporter,
    count: int | None,
    verbose: int,
) -> NoReturn:
    """``send --many``: the summary of every receiver, then an exit code saying how it
    ended (see the send command's help)."""
    try:
        result = eventloop.run(coro)
    except P2PShareError as exc:
        _fail(reporter, exc, verbose)
    except (KeyboardInterrupt, asyncio.CancelledError):
        outcomes = list(getattr(reporter, "outcomes", []))
        _many_summary(reporter, outcomes, "interrupted")
        cut = any(o.result == InterruptedTransferError.name for o in outcomes)
        raise typer.Exit(InterruptedTransferError.exit_code if cut or count else 0) from None
    outcomes = list(result.receivers)
    _many_summary(reporter, outcomes, result.stopped)
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
        reporter.error(error.name, error.message)
        raise typer.Exit(error.exit_code)
    raise typer.Exit(0)


def _many_summary(reporter: Reporter, outcomes: list[ReceiverOutcome], stopped: str) -> None:
    if isinstance(reporter, ManyHumanReporter | JsonReporter):
        reporter.summary(outcomes, stopped)


RESUME_HINT = {
    "Received": "the data received so far was kept (files of 1 MiB or more); when the same "
    "files are sent to this place again, the transfer resumes from there",
    "Sent": "the receiver keeps what it got (files of 1 MiB or more); sending the same files "
    "again to the same place resumes from there",
}


def _fail(
    reporter: Reporter, exc: P2PShareError, verbose: int, resumable: bool = False, verb: str = ""
) -> NoReturn:
    if verbose:
        logging.getLogger("p2pshare").debug("failed", exc_info=exc)
    message = exc.message
    interrupted = isinstance(exc, InterruptedTransferError | PeerLostError | ConnectError)
    if resumable and interrupted and reporter.progressed:
        message += f"; {RESUME_HINT[reporter.verb]}"
    reporter.error(exc.name, message)
    raise typer.Exit(exc.exit_code)


def _usage(message: str) -> NoReturn:
    raise UsageProblem(message)


def _server_url(server: str | None) -> str | None:
    """``--server`` as a ws:// or wss:// URL (``HOST:PORT`` and ``http(s)://`` accepted); a
    malformed one is a usage error."""
    if not server:
        return None
    try:
        return parse_server_url(server)
    except ValueError as exc:
        _usage(str(exc))


def _check_paths(paths: list[str]) -> list[Path]:
    """Refuse what would silently send something else: an empty path (``""``, an unset
    variable) would otherwise mean the current directory."""
    if any(p.strip() == "" for p in paths):
        _usage('an empty path was given (an unset variable?); to send this directory, say "."')
    return [Path(p) for p in paths]


def _read_text(text: str) -> str:
    """``--text -`` reads the message from standard input."""
    if text != "-":
        return text
    data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _usage("--text - needs UTF-8 text on standard input; send binary data as a file: send -")


@app.command()
def send(
    paths: Annotated[
        list[str] | None,
        # Arguments are described in the docstring: typer's argument list would add <str>.
        typer.Argument(metavar="PATH", show_default=False, hidden=True),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            metavar="TEXT",
            help="Send this text instead of files (- reads it from standard input); the "
            "receiver prints it.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="Name the receiver sees for a single file or for standard input "
            "(default: the file's own name; 'stdin' for -).",
        ),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(
            "--code",
            envvar=ENV_CODE,
            show_envvar=True,
            metavar="CODE",
            help="Use this code (like 7-guitar-ocean) instead of a random one. "
            f"Prefer the {ENV_CODE} variable: the command line is visible to "
            "other users of this machine.",
        ),
    ] = None,
    code_length: Annotated[
        int,
        typer.Option(
            "--code-length",
            min=1,
            max=16,
            metavar="WORDS",
            help="Secret words in a generated code (8 bits each).",
        ),
    ] = DEFAULT_WORDS,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Leave out files and directories this user cannot read (with a warning), "
            "instead of refusing to start.",
        ),
    ] = False,
    qr: Annotated[
        bool,
        typer.Option("--qr", help="Also show the browser link as a QR code, for a phone."),
    ] = False,
    many: Annotated[
        int | None,
        typer.Option(
            "--many",
            min=0,
            metavar="[N]",
            help="Serve every receiver that proves the code, each over its own connection, "
            "until N of them have finished (without N: until Ctrl-C or --timeout). The first "
            "wrong code burns it for everyone still to come (exit 6).",
        ),
    ] = None,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            min=1,
            max=64,
            metavar="K",
            help="With --many: transfers at once; later receivers wait their turn.",
        ),
    ] = 2,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=1,
            metavar="SECONDS",
            help="With --many: stop admitting receivers after this long (those being served "
            "finish).",
        ),
    ] = None,
    server: ServerOpt = None,
    local_address: LocalAddressOpt = None,
    stun: StunOpt = None,
    turn: TurnOpt = None,
    turn_user: TurnUserOpt = None,
    turn_password: TurnPasswordOpt = None,
    relay_only: RelayOnlyOpt = False,
    direct_only: DirectOnlyOpt = False,
    json_output: JsonOpt = False,
    hide_progress: HideProgressOpt = False,
    verify: VerifyOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Send files, directories, standard input (-) or --text.

    Prints a code, and the command the receiver runs (kept on one line):

    \b
      p2pshare receive CODE

    Exits 0 once the receiver has verified every file's SHA-256.

    With --many: exits 0 once N receivers finished (or, without N, when stopped by
    Ctrl-C or --timeout with no transfer cut short), 6 when a wrong code burned the code,
    7 when --timeout ended before N finished, 130 when Ctrl-C cut transfers short.

    PATH: files and directories to send; - sends standard input (read as it comes, never
    whole into memory). Directories keep their structure, empty ones, executable bits and
    modification times included. Symlinks are not followed: they are skipped with a warning.
    """
    _setup_logging(verbose)
    server = _server_url(server)
    if bool(paths) == (text is not None):
        _usage("give files or directories to send, or --text, but not both")
    if many is None and (timeout is not None or parallel != 2):
        _usage("--parallel and --timeout go with --many")
    if many is not None and "-" in (paths or []):
        _usage("standard input can be read only once: send it without --many")
    chosen: Code | None = None
    if code:
        try:
            chosen = parse_chosen_code(code)
        except P2PShareError as exc:
            _usage(exc.message)
    files = _check_paths(paths or [])
    if text is not None:
        text = _read_text(text)
    label = "text" if text is not None else (name or ", ".join(p.name or str(p) for p in files))
    reporter: Reporter
    if json_output:
        reporter = JsonReporter(server=server, verify=verify)
    else:
        reporter = (HumanReporter if many is None else ManyHumanReporter)(
            label,
            hide_progress=hide_progress,
            server=server,
            qr=qr,
            sending_text=text is not None,
            verify=verify,
        )
        if isinstance(reporter, ManyHumanReporter):
            reporter.count = many or None
    reporter.verb = "Sent"
    settings = _settings(
        server,
        local_address,
        stun,
        turn,
        turn_user,
        turn_password,
        relay_only,
        direct_only,
        code_words=code_length,
    )
    try:
        files, excluded = check_readable(files, skip=skip_unreadable, warn=reporter.warn)
    except P2PShareError as exc:
        _fail(reporter, exc, verbose)
    if many is not None:
        many_coro = session.send_many(
            files,
            settings,
            count=many or None,
            parallel=parallel,
            timeout_s=timeout,
            text=text,
            name=name,
            code=chosen,
            on_event=reporter,
            exclude=excluded,
        )
        _run_many(many_coro, reporter, many or None, verbose)
    coro = session.send(
        files, settings, text=text, name=name, code=chosen, on_event=reporter, exclude=excluded
    )
    _run(coro, reporter, "Sent", verbose, resumable=text is None)


def _ask_code() -> str:
    """The ``Code:`` prompt: Tab completes the words; Ctrl-C or Ctrl-D gives up (130)."""
    with contextlib.suppress(ImportError):
        import readline

        readline.set_completer_delims(" \t\n")
        readline.set_completer(_completer)
        readline.parse_and_bind("tab: complete")
    while True:
        try:
            text = _input("Code: ")
        except (KeyboardInterrupt, EOFError):
            sys.stderr.write("\n")
            raise typer.Exit(InterruptedTransferError.exit_code) from None
        if text.strip():
            return text


def _completer(text: str, state: int) -> str | None:
    matches = complete_code(text)
    return matches[state] if state < len(matches) else None


def _input(prompt: str) -> str:
    """input(), with the prompt on stderr when stdout is not the terminal (``-o -``)."""
    if sys.stdout.isatty():
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


def _check_words(parsed: Code) -> bool:
    """Before connecting: words outside the list are likely typos, and a wrong code burns
    the sender's. True to go on (they are right, or the code was chosen with --code)."""
    unknown = unknown_words(parsed)
    if not unknown:
        return True
    hints = []
    for word in unknown:
        near = closest_word(word)
        hints.append(f"{word!r}" + (f" (did you mean {near!r}?)" if near else ""))
    sys.stderr.write(
        f"Not in p2pshare's word list: {', '.join(hints)}. A wrong code cancels the "
        "sender's; right only if the sender chose the code.\n"
    )
    try:
        answer = _input("Use it anyway? [y/N] ")
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("\n")
        raise typer.Exit(InterruptedTransferError.exit_code) from None
    return answer.strip().lower() in ("y", "yes")


def _complete_code_argument(incomplete: str) -> list[str]:
    return complete_code(incomplete)


async def ask_line(prompt: str) -> str | None:
    """One line typed at the terminal, or None at end of input (Ctrl-D).

    Read with the event loop's reader, not in a thread, so that Ctrl-C or the sender
    cancelling ends the prompt at once (a thread blocked in input() cannot be stopped).
    """
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    sys.stderr.write(prompt)
    sys.stderr.flush()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    except asyncio.CancelledError:
        sys.stderr.write("\n")
        raise
    finally:
        loop.remove_reader(fd)
    data = os.read(fd, 4096)
    if not data:
        sys.stderr.write("\n")
        return None
    return data.decode("utf-8", errors="replace")


@app.command()
def receive(
    code: Annotated[
        str | None,
        typer.Argument(
            metavar="CODE",
            envvar=ENV_CODE,
            show_default=False,
            autocompletion=_complete_code_argument,
            hidden=True,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Directory to save into (created for several entries, or when PATH ends "
            "with /, if it does not exist), or the file name to save a single file as; - "
            "writes a single file to standard output. Default: the current directory.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept without asking.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files of the same names.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Print a received text message exactly as sent. By default control "
            "characters, escape sequences and bidi overrides in it are shown escaped "
            "(\\x1b...), so the sender cannot drive your terminal.",
        ),
    ] = False,
    no_resume: Annotated[
        bool,
        typer.Option(
            "--no-resume",
            help="Start from zero: ignore data left by an interrupted receive, and delete "
            "the partial data if this one is interrupted. By default an interrupted "
            "receive keeps what it got (files of 1 MiB or more, under hidden .p2pshare-* "
            "names, never the final one) and a resend of the same files continues from "
            "there once the sender has checked that data against its own.",
        ),
    ] = False,
    max_entries: Annotated[
        int,
        typer.Option(
            "--max-entries",
            min=1,
            max=MAX_ENTRIES,
            metavar="N",
            rich_help_panel="Limits",
            help="Decline offers of more files and directories than this (each costs "
            "memory before you are asked).",
        ),
    ] = DEFAULT_MAX_OFFER_ENTRIES,
    max_offer_bytes: Annotated[
        int,
        typer.Option(
            "--max-offer-bytes",
            min=64 * 1024,
            max=1024 * 1024 * 1024,
            metavar="BYTES",
            rich_help_panel="Limits",
            help="Decline offers whose list of names is larger than this.",
        ),
    ] = DEFAULT_MAX_OFFER_BYTES,
    server: ServerOpt = None,
    local_address: LocalAddressOpt = None,
    stun: StunOpt = None,
    turn: TurnOpt = None,
    turn_user: TurnUserOpt = None,
    turn_password: TurnPasswordOpt = None,
    relay_only: RelayOnlyOpt = False,
    direct_only: DirectOnlyOpt = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            max=7 * 24 * 3600,
            help="Start before the sender (on a code agreed in advance, which the sender "
            "passes with --code): wait this long for it. Default: a code nobody is "
            "sending on fails at once.",
        ),
    ] = 0.0,
    json_output: JsonOpt = False,
    hide_progress: HideProgressOpt = False,
    verify: VerifyOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Receive what the sender offers under CODE.

    CODE: the code the sender gave you (or in P2PSHARE_CODE, which keeps it out of the
    process list); omit it to be asked for it, with Tab completing the words.

    Shows what is offered (number of files, total size, names) and asks before accepting
    (--yes to skip; without a terminal, --yes is required). Names the sender chose are checked
    and the whole offer is refused if any is unsafe. Each file lands in a temporary file that
    gets its final name only once its SHA-256 matches. A text message is printed on stdout.

    An interrupted receive resumes when the same files are sent again (with a new code) to
    the same place: the sender checks the data already here against its own first, and only
    the rest crosses the network. Files already received whole are checked and skipped.
    """
    _setup_logging(verbose)
    server = _server_url(server)
    interactive = sys.stdin.isatty() and not json_output
    if not code:
        if not sys.stdin.isatty():
            _usage(f"no code given: pass it as an argument or in {ENV_CODE}")
        while True:
            try:
                parsed = parse_code(_ask_code())
            except P2PShareError as exc:
                sys.stderr.write(f"{exc.message}\n")
                continue
            if _check_words(parsed):
                break
    else:
        try:
            parsed = parse_code(code)
        except P2PShareError as exc:
            _usage(exc.message)
        if interactive and not _check_words(parsed):
            raise typer.Exit(DeclinedError.exit_code)
    to_stdout = output == "-"
    if to_stdout and json_output:
        _usage("--output - writes the data to standard output; it cannot be used with --json")
    reporter: Reporter = (
        JsonReporter(verify=verify)
        if json_output
        else HumanReporter("receiving", raw_text=raw, hide_progress=hide_progress, verify=verify)
    )
    reporter.verb = "Received"
    if not server:
        reporter.searching(
            f"Looking for the sender of code {parsed.nameplate}-... on this network..."
        )
    target: Path | None = None
    if output is not None and not to_stdout:
        try:
            target = output_directory(output)
        except P2PShareError as exc:
            _fail(reporter, exc, verbose)

    async def confirm(offer: session.OfferSummary) -> bool:
        if isinstance(reporter, HumanReporter):
            reporter.label = "text message" if offer.is_text else ", ".join(offer.names)
        reporter.say("Offer: " + describe_offer(offer))
        if isinstance(reporter, JsonReporter):
            reporter.emit(
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
        if offer.destination is not None:
            check_writable(offer.destination)
        if yes:
            return True
        if not interactive:
            raise DeclinedError(
                "not accepted: no terminal to ask on the receiving side (the receiver can pass "
                "--yes to accept without asking)"
            )
        answer = await ask_line("Accept? [Y/n] ")
        if answer is None:
            raise DeclinedError("declined (end of input at the prompt)")
        return answer.strip().lower() in ("", "y", "yes")

    async def resolve_existing(existing: tuple[Path, ...], other: Path | None) -> str:
        shown = ", ".join(printable(str(p)) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        reporter.say(f"Already here: {shown}{more}.")
        if other is not None:
            question = f"[o]verwrite, [r]ename to {printable(other.name)}, or [c]ancel? [o/r/C] "
        else:
            question = "[o]verwrite or [c]ancel? [o/C] "
        answer = await ask_line(question)
        choice = (answer or "").strip().lower()
        if choice in ("o", "overwrite"):
            return "overwrite"
        if choice in ("r", "rename") and other is not None:
            return "rename"
        return "cancel"

    settings = _settings(
        server,
        local_address,
        stun,
        turn,
        turn_user,
        turn_password,
        relay_only,
        direct_only,
        output=target,
        to_stdout=to_stdout,
        overwrite=overwrite,
        resume=not no_resume,
        wait_s=wait,
        max_offer_entries=max_entries,
        max_offer_bytes=max_offer_bytes,
    )
    _run(
        session.receive(
            parsed,
            settings,
            on_event=reporter,
            confirm=confirm,
            # A person at a terminal decides about existing files; --yes and scripts keep
            # the refusal (nothing is replaced without --overwrite).
            resolve_existing=resolve_existing if interactive and not yes else None,
        ),
        reporter,
        "Received",
        verbose,
        resumable=not no_resume and not to_stdout,
    )


# The names people type out of habit (magic-wormhole's `rx`/`tx`, `recv`), kept out of --help.
app.command("recv", hidden=True)(receive)
app.command("rx", hidden=True)(receive)
app.command("tx", hidden=True)(send)


def describe_offer(offer: session.OfferSummary) -> str:
    """One line for the receiver: what, how much, where. Names are already printable."""
    if offer.is_text:
        return f"a text message ({format_size(offer.total_bytes)})"
    counts = [f"{offer.files} file{'s' if offer.files != 1 else ''}"]
    if offer.dirs:
        counts.append(f"{offer.dirs} director{'ies' if offer.dirs != 1 else 'y'}")
    names = ", ".join(offer.names) + (", ..." if len(offer.names) == 10 else "")
    where = f" into {offer.destination}" if offer.destination else " to standard output"
    found = (
        f"; {format_size(offer.found_bytes)} already here from an earlier attempt, to be checked"
        if offer.found_bytes
        else ""
    )
    return f"{names} ({', '.join(counts)}, {format_size(offer.total_bytes)}){where}{found}"


_COMMANDS = {"send": "send", "tx": "send", "receive": "receive", "recv": "receive", "rx": "receive"}


def _usage_error_class() -> type[Exception]:
    """typer's (vendored) click UsageError, reached through a public name."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "UsageError":
            return cls
    raise AssertionError("typer.BadParameter is no longer a UsageError")


def _report_usage(message: str, args: list[str]) -> NoReturn:
    """Every usage error, typer's or ours, the same way: one line on stderr (and an ``error``
    event with ``--json``), exit 2."""
    command = next((_COMMANDS[a] for a in args if a in _COMMANDS), None)
    hint = f" (see: p2pshare {command} --help)" if command else " (see: p2pshare --help)"
    if "--json" in args:
        JsonReporter().error("usage", message)
    sys.stderr.write(f"p2pshare: error: {message}{hint}\n")
    sys.stderr.flush()
    sys.exit(2)


def _many_without_count(args: list[str]) -> list[str]:
    """``--many`` takes an optional N: a bare ``--many`` (not followed by a number) means
    ``--many=0``, until Ctrl-C. click has no optional option values, so it is spelled out
    here, before parsing."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        if arg == "--many" and not (i + 1 < len(args) and args[i + 1].isdecimal()):
            out.append("--many=0")
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    args = _many_without_count(sys.argv[1:] if argv is None else list(argv))
    command = typer.main.get_command(app)
    usage_error = _usage_error_class()
    try:
        status = command.main(args=args, prog_name="p2pshare", standalone_mode=False)
    except UsageProblem as exc:
        _report_usage(str(exc), args)
    except usage_error as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _report_usage(message, args)
    except typer.Abort:
        sys.exit(InterruptedTransferError.exit_code)
    sys.exit(status if isinstance(status, int) else 0)
