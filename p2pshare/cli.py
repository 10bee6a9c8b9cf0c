"""The ``p2pshare`` command: parse arguments into Settings, call the library, report.

Thin on purpose: every decision lives in the library. Errors from the library arrive as
:class:`~p2pshare.errors.P2PShareError`; this module prints them on one line and exits with
their code. Nothing here prints a traceback unless ``--verbose`` asks for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from p2pshare import __version__, media_stand_in, session
from p2pshare.cli_options import (
    DirectOnlyOpt,
    HideProgressOpt,
    JsonOpt,
    LocalAddressOpt,
    NoLargePacketsOpt,
    PortOpt,
    ReconnectOpt,
    RelayOnlyOpt,
    SendYesOpt,
    ServerOpt,
    StunOpt,
    TurnOpt,
    TurnPasswordOpt,
    TurnUserOpt,
    UsageProblem,
    VerboseOpt,
    VerifyOpt,
    check_paths,
    many_without_count,
    read_text,
    server_url,
    settings_from_options,
    usage,
    usage_error_class,
)
from p2pshare.cli_outcome import (
    exit_process,
    fail,
    report_usage,
    run_command,
    run_many,
    setup_logging,
)
from p2pshare.cli_prompts import (
    VERIFY_NEEDS_A_TERMINAL,
    AliasCompletingGroup,
    ask_code,
    ask_line,
    check_words,
    complete_code_argument,
    words_asker,
    words_match,
)
from p2pshare.codes import (
    DEFAULT_WORDS,
    Code,
    parse_chosen_code,
    parse_code,
)
from p2pshare.config import (
    ENV_CODE,
    tuning_from_env,
)
from p2pshare.errors import (
    DeclinedError,
    InterruptedTransferError,
    P2PShareError,
)
from p2pshare.files import printable
from p2pshare.json_reporter import JsonReporter, Reporter
from p2pshare.messages import MAX_ENTRIES
from p2pshare.preflight import check_readable, check_writable, output_directory
from p2pshare.progress import HumanReporter, ManyHumanReporter, unwritable_output
from p2pshare.transfer import DEFAULT_MAX_OFFER_BYTES, DEFAULT_MAX_OFFER_ENTRIES

app = typer.Typer(
    name="p2pshare",
    cls=AliasCompletingGroup,
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


@app.command()
def send(
    paths: Annotated[
        list[str] | None,
        # Arguments are described in the docstring: typer's argument list would add <str>.
        typer.Argument(metavar="[PATH]...", show_default=False, hidden=True),
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
    port: PortOpt = 0,
    local_address: LocalAddressOpt = None,
    stun: StunOpt = None,
    turn: TurnOpt = None,
    turn_user: TurnUserOpt = None,
    turn_password: TurnPasswordOpt = None,
    relay_only: RelayOnlyOpt = False,
    direct_only: DirectOnlyOpt = False,
    json_output: JsonOpt = False,
    hide_progress: HideProgressOpt = False,
    no_large_packets: NoLargePacketsOpt = False,
    verify: VerifyOpt = False,
    reconnect_s: ReconnectOpt = 120.0,
    yes: SendYesOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Send files, directories, standard input (-) or --text.

    Prints a code, and the command the receiver runs (kept on one line):

    \b
      p2pshare receive CODE

    Exits 0 once the receiver has verified every file's hash (BLAKE3 between two p2pshare
    CLIs, SHA-256 with a browser or a p2pshare from before BLAKE3).

    With --many: exits 0 once N receivers finished (or, without N, when stopped by
    Ctrl-C or --timeout with no transfer cut short), 6 when a wrong code burned the code,
    7 when --timeout ended before N finished, 130 when Ctrl-C cut transfers short.

    PATH: files and directories to send; - sends standard input (read as it comes, never
    whole into memory). Directories keep their structure, empty ones, executable bits and
    modification times included. Symlinks are not followed: they are skipped with a warning.
    """
    setup_logging(verbose)
    server = server_url(server)
    if bool(paths) == (text is not None):
        usage("give files or directories to send, or --text, but not both")
    if many is None and (timeout is not None or parallel != 2):
        usage("--parallel and --timeout go with --many")
    if port and server:
        usage("--port is for the rendezvous server send runs itself: not with --server")
    if many is not None and "-" in (paths or []):
        usage("standard input can be read only once: send it without --many")
    if verify and not yes and not sys.stdin.isatty():
        usage(VERIFY_NEEDS_A_TERMINAL)
    chosen: Code | None = None
    if code:
        try:
            chosen = parse_chosen_code(code)
        except P2PShareError as exc:
            usage(exc.message)
    files = check_paths(paths or [])
    if text is not None:
        text = read_text(text)
    label = "text" if text is not None else (name or ", ".join(p.name or str(p) for p in files))
    human: dict[str, Any] = dict(
        hide_progress=hide_progress, server=server, qr=qr, sending_text=text is not None
    )
    reporter: Reporter
    if json_output:
        reporter = JsonReporter(server=server, verify=verify)
    elif many is None:
        reporter = HumanReporter(label, verify=verify, **human)
    else:
        reporter = ManyHumanReporter(label, count=many or None, verify=verify, **human)
    reporter.verb = "Sent"
    confirm = words_asker() if verify and not yes else None
    settings = settings_from_options(
        server,
        local_address,
        stun,
        turn,
        turn_user,
        turn_password,
        relay_only,
        direct_only,
        code_words=code_length,
        reconnect_s=reconnect_s,
        server_port=port,
    )
    try:
        files, excluded = check_readable(files, skip=skip_unreadable, warn=reporter.warn)
    except P2PShareError as exc:
        fail(reporter, exc, verbose)
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
            confirm_words=confirm,
        )
        run_many(many_coro, reporter, many or None, verbose)
    coro = session.send(
        files,
        settings,
        text=text,
        name=name,
        code=chosen,
        on_event=reporter,
        exclude=excluded,
        confirm_words=confirm,
    )
    run_command(coro, reporter, "Sent", verbose, resumable=text is None)


@app.command()
def receive(
    code: Annotated[
        str | None,
        typer.Argument(
            metavar="CODE",
            envvar=ENV_CODE,
            show_default=False,
            autocompletion=complete_code_argument,
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
    no_large_packets: NoLargePacketsOpt = False,
    verify: VerifyOpt = False,
    reconnect_s: ReconnectOpt = 120.0,
    verbose: VerboseOpt = 0,
) -> None:
    """Receive what the sender offers under CODE.

    CODE: the code the sender gave you (or in P2PSHARE_CODE, which keeps it out of the
    process list); omit it to be asked for it, with Tab completing the words.

    Shows what is offered (number of files, total size, names) and asks before accepting
    (--yes to skip; without a terminal, --yes is required for files, and a text message is
    printed without asking). Names the sender chose are checked
    and the whole offer is refused if any is unsafe. Each file lands in a temporary file that
    gets its final name only once its hash matches the sender's. A text message is printed on
    stdout.

    An interrupted receive resumes when the same files are sent again (with a new code) to
    the same place: the sender checks the data already here against its own first, and only
    the rest crosses the network. Files already received whole are checked and skipped.
    """
    setup_logging(verbose)
    server = server_url(server)
    interactive = sys.stdin.isatty() and not json_output
    if verify and not yes and not interactive:
        usage(VERIFY_NEEDS_A_TERMINAL)
    if not code:
        if not sys.stdin.isatty():
            usage(f"no code given: pass it as an argument or in {ENV_CODE}")
        while True:
            try:
                parsed = parse_code(ask_code())
            except P2PShareError as exc:
                sys.stderr.write(f"{exc.message}\n")
                continue
            if check_words(parsed):
                break
    else:
        try:
            parsed = parse_code(code)
        except P2PShareError as exc:
            usage(exc.message)
        if interactive and not check_words(parsed):
            raise typer.Exit(DeclinedError.exit_code)
    to_stdout = output == "-"
    if to_stdout and json_output:
        usage("--output - writes the data to standard output; it cannot be used with --json")
    reporter: Reporter = (
        JsonReporter(verify=verify)
        if json_output
        else HumanReporter("receiving", raw_text=raw, hide_progress=hide_progress, verify=verify)
    )
    reporter.verb = "Received"
    if not server:
        reporter.searching(f"Looking for the sender of code {parsed.nameplate}-...")
    target: Path | None = None
    if output is not None and not to_stdout:
        try:
            target = output_directory(output)
        except P2PShareError as exc:
            fail(reporter, exc, verbose)

    answered: list[session.OfferSummary] = []
    """The offer as shown with the existing-files question, whose answer accepted it."""

    async def confirm(offer: session.OfferSummary) -> bool:
        if not answered:
            reporter.offer(offer)
        elif offer.destination is not None and offer.destination != answered[0].destination:
            reporter.say(f"Saving as {printable(str(offer.destination))}.")
        if offer.destination is not None:
            check_writable(offer.destination)
        if (
            verify
            and not yes
            and not await words_match("Does the sender show the same words? [y/N] ")
        ):
            raise DeclinedError("the security words were not confirmed: nothing was accepted")
        if yes or answered or (offer.is_text and not interactive):
            # With nobody to ask, a text message is printed all the same: it only goes to
            # stdout, escaped and bounded, and refusing it would spend the code for nothing.
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

    async def resolve_existing(
        existing: tuple[Path, ...], other: Path | None, offer: session.OfferSummary
    ) -> str:
        # The offer first, then one question: overwriting or renaming accepts it.
        reporter.offer(offer)
        reporter.already_here(existing)
        if other is not None:
            question = f"[o]verwrite, [r]ename to {printable(other.name)}, or [c]ancel? [o/r/C] "
        else:
            question = "[o]verwrite or [c]ancel? [o/C] "
        answer = await ask_line(question)
        choice = (answer or "").strip().lower()
        if choice in ("o", "overwrite"):
            answered.append(offer)
            return "overwrite"
        if choice in ("r", "rename") and other is not None:
            answered.append(offer)
            return "rename"
        return "cancel"

    settings = settings_from_options(
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
        reconnect_s=reconnect_s,
    )
    run_command(
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


def main(argv: list[str] | None = None) -> None:
    # Before anything imports aiortc. A bad knob is reported as a usage error once the
    # command's options are read (settings_from_options); until then the default holds.
    try:
        stand_in = tuning_from_env().media_stand_in
    except ValueError:
        stand_in = True
    media_stand_in.install(stand_in)
    args = many_without_count(sys.argv[1:] if argv is None else list(argv))
    command = typer.main.get_command(app)
    usage_error = usage_error_class()
    try:
        status = command.main(args=args, prog_name="p2pshare", standalone_mode=False)
    except UsageProblem as exc:
        report_usage(str(exc), args)
    except usage_error as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        report_usage(message, args)
    except typer.Abort:
        status = InterruptedTransferError.exit_code
    except OSError as exc:  # only output is done outside run_command: help, version
        status = unwritable_output(exc).exit_code
    exit_process(status if isinstance(status, int) else 0)
