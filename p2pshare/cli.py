"""The ``p2pshare`` command: parse arguments into Settings, call the library, report.

Thin on purpose: every decision lives in the library. Errors from the library arrive as
:class:`~p2pshare.errors.P2PShareError`; this module prints them on one line and exits with
their code. Nothing here prints a traceback unless ``--verbose`` asks for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from p2pshare import __version__, session
from p2pshare.codes import DEFAULT_WORDS, Code, parse_chosen_code, parse_code
from p2pshare.config import (
    ENV_CODE,
    ENV_LOCAL_ADDRESSES,
    ENV_SERVER,
    ENV_STUN,
    ENV_TURN,
    ENV_TURN_PASSWORD,
    ENV_TURN_USER,
    Settings,
)
from p2pshare.errors import DeclinedError, InterruptedTransferError, P2PShareError
from p2pshare.progress import HumanReporter, JsonReporter, Reporter
from p2pshare.webrtc import IceConfig, check_ice_url
from signal_server import eventloop

app = typer.Typer(
    name="p2pshare",
    help="Send files peer to peer over WebRTC, paired by a short code.\n\n"
    "Sender: p2pshare send FILE, then read the code to the receiver. "
    "Receiver: p2pshare receive CODE.",
    add_completion=False,
    no_args_is_help=True,
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
        "runs one in its own process on this machine's network address.",
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


def _version(value: bool) -> None:
    if value:
        print(f"p2pshare {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    pass


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
    return Settings(server=server or None, ice=ice, **kw)


def _run(
    coro: Coroutine[Any, Any, session.TransferResult], reporter: Reporter, verb: str, verbose: int
) -> NoReturn:
    try:
        result = eventloop.run(coro)
    except P2PShareError as exc:
        _fail(reporter, exc, verbose)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _fail(reporter, InterruptedTransferError(), verbose)
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


def _fail(reporter: Reporter, exc: P2PShareError, verbose: int) -> NoReturn:
    if verbose:
        logging.getLogger("p2pshare").debug("failed", exc_info=exc)
    reporter.error(exc.name, exc.message)
    raise typer.Exit(exc.exit_code)


def _usage(message: str) -> NoReturn:
    typer.echo(f"p2pshare: error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def send(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files and directories to send; - sends standard input (read as it comes, "
            "never whole into memory). Directories keep their structure, empty ones, "
            "executable bits and modification times included. Symlinks are not followed: "
            "they are skipped with a warning.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            metavar="TEXT",
            help="Send this text instead of files; the receiver prints it.",
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
    server: ServerOpt = None,
    local_address: LocalAddressOpt = None,
    stun: StunOpt = None,
    turn: TurnOpt = None,
    turn_user: TurnUserOpt = None,
    turn_password: TurnPasswordOpt = None,
    relay_only: RelayOnlyOpt = False,
    direct_only: DirectOnlyOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Send files, directories, standard input (-) or --text. Prints a code; the receiver runs:
    p2pshare receive CODE.

    Exits 0 once the receiver has verified every file's SHA-256.
    """
    _setup_logging(verbose)
    if bool(paths) == (text is not None):
        _usage("give files or directories to send, or --text, but not both")
    chosen: Code | None = None
    if code:
        try:
            chosen = parse_chosen_code(code)
        except P2PShareError as exc:
            _usage(exc.message)
    label = (
        "text" if text is not None else (name or ", ".join(p.name or str(p) for p in paths or []))
    )
    reporter: Reporter = JsonReporter() if json_output else HumanReporter(label)
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
    coro = session.send(paths or [], settings, text=text, name=name, code=chosen, on_event=reporter)
    _run(coro, reporter, "Sent", verbose)


@app.command()
def receive(
    code: Annotated[
        str | None,
        typer.Argument(
            envvar=ENV_CODE,
            show_envvar=True,
            show_default=False,
            help="The code the sender gave you. Omit it to be asked for it.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Directory to save into (created for several entries if it does not "
            "exist), or the file name to save a single file as; - writes a single "
            "file to standard output. Default: the current directory.",
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
    server: ServerOpt = None,
    local_address: LocalAddressOpt = None,
    stun: StunOpt = None,
    turn: TurnOpt = None,
    turn_user: TurnUserOpt = None,
    turn_password: TurnPasswordOpt = None,
    relay_only: RelayOnlyOpt = False,
    direct_only: DirectOnlyOpt = False,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Receive what the sender offers under CODE.

    Shows what is offered (number of files, total size, names) and asks before accepting
    (--yes to skip; without a terminal, --yes is required). Names the sender chose are checked
    and the whole offer is refused if any is unsafe. Each file lands in a temporary file that
    gets its final name only once its SHA-256 matches. A text message is printed on stdout.

    An interrupted receive resumes when the same files are sent again (with a new code) to
    the same place: the sender checks the data already here against its own first, and only
    the rest crosses the network. Files already received whole are checked and skipped.
    """
    _setup_logging(verbose)
    if not code:
        if not sys.stdin.isatty():
            _usage(f"no code given: pass it as an argument or in {ENV_CODE}")
        code = typer.prompt("Code")
    try:
        parsed = parse_code(code)
    except P2PShareError as exc:
        _usage(exc.message)
    if not server:
        _usage(
            f"which rendezvous server? pass --server URL (or set {ENV_SERVER}); the "
            "sender's screen shows the full command"
        )
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and json_output:
        _usage("--output - writes the data to standard output; it cannot be used with --json")
    reporter: Reporter = JsonReporter() if json_output else HumanReporter("receiving", raw_text=raw)
    interactive = sys.stdin.isatty() and not json_output

    async def confirm(offer: session.OfferSummary) -> bool:
        if isinstance(reporter, HumanReporter):
            reporter.label = ", ".join(offer.names)
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
                }
            )
        if yes:
            return True
        if not interactive:
            raise DeclinedError(
                "not accepted: there is no terminal to ask; pass --yes to accept without asking"
            )
        answer = await asyncio.to_thread(input, "Accept? [Y/n] ")
        return answer.strip().lower() in ("", "y", "yes")

    settings = _settings(
        server,
        local_address,
        stun,
        turn,
        turn_user,
        turn_password,
        relay_only,
        direct_only,
        output=None if to_stdout else output,
        to_stdout=to_stdout,
        overwrite=overwrite,
        resume=not no_resume,
    )
    _run(
        session.receive(parsed, settings, on_event=reporter, confirm=confirm),
        reporter,
        "Received",
        verbose,
    )


def describe_offer(offer: session.OfferSummary) -> str:
    """One line for the receiver: what, how much, where. Names are already printable."""
    if offer.is_text:
        return f"a text message ({_size(offer.total_bytes)})"
    counts = [f"{offer.files} file{'s' if offer.files != 1 else ''}"]
    if offer.dirs:
        counts.append(f"{offer.dirs} director{'ies' if offer.dirs != 1 else 'y'}")
    names = ", ".join(offer.names) + (", ..." if len(offer.names) == 10 else "")
    where = f" into {offer.destination}" if offer.destination else " to standard output"
    found = (
        f"; {_size(offer.found_bytes)} already here from an earlier attempt, to be checked"
        if offer.found_bytes
        else ""
    )
    return f"{names} ({', '.join(counts)}, {_size(offer.total_bytes)}){where}{found}"


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "size unknown"
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{nbytes:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def main() -> None:
    app()
