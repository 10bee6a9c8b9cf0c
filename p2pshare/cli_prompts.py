"""What the receiver is asked at the terminal: the code (Tab completes its words; unknown
words are questioned before connecting), and lines read through the event loop so that Ctrl-C
or the sender cancelling ends a prompt at once; and shell completion of the command names,
the hidden aliases included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

import typer

from p2pshare.codes import Code, closest_word, unknown_words
from p2pshare.codes import complete as complete_code
from p2pshare.errors import InterruptedTransferError
from p2pshare.events import ConfirmWords, Verification


def ask_code() -> str:
    """The ``Code:`` prompt: Tab completes the words; Ctrl-C or Ctrl-D gives up (130)."""
    with contextlib.suppress(ImportError):
        import readline

        readline.set_completer_delims(" \t\n")
        readline.set_completer(completer)
        readline.parse_and_bind("tab: complete")
    while True:
        try:
            text = prompt_input("Code: ")
        except (KeyboardInterrupt, EOFError):
            sys.stderr.write("\n")
            raise typer.Exit(InterruptedTransferError.exit_code) from None
        if text.strip():
            return text


def completer(text: str, state: int) -> str | None:
    matches = complete_code(text)
    return matches[state] if state < len(matches) else None


def prompt_input(prompt: str) -> str:
    """input(), with the prompt on stderr when stdout is not the terminal (``-o -``)."""
    if sys.stdout.isatty():
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


def check_words(parsed: Code) -> bool:
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
        answer = prompt_input("Use it anyway? [y/N] ")
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("\n")
        raise typer.Exit(InterruptedTransferError.exit_code) from None
    return answer.strip().lower() in ("y", "yes")


def complete_code_argument(incomplete: str) -> list[str]:
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


VERIFY_NEEDS_A_TERMINAL = (
    "--verify asks whether the security words match, and there is no terminal to ask on "
    "(add --yes to show the words without asking)"
)


async def words_match(question: str) -> bool:
    """``--verify``: the person answers whether the other side shows the same words; only
    an explicit yes goes on (Ctrl-D or anything else is a no)."""
    answer = await ask_line(question)
    return answer is not None and answer.strip().lower() in ("y", "yes")


def words_asker() -> ConfirmWords:
    """The sender's ``--verify`` question, one at a time (``--many`` may ask about several
    receivers at once)."""
    asking = asyncio.Lock()

    async def confirm(words: Verification, who: str) -> bool:
        async with asking:
            return await words_match(f"Does {who} show the words {' '.join(words.words)}? [y/N] ")

    return confirm


class AliasCompletingGroup(typer.core.TyperGroup):
    """Completes the hidden aliases too (``recv``, ``rx``, ``tx``): they are kept out of
    --help, not out of the way of someone who types them."""

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        # click's class, wherever this typer takes click from (vendored since 0.28).
        item = vars(typer.core)["CompletionItem"]
        results = super().shell_complete(ctx, incomplete)
        shown = {getattr(item, "value", None) for item in results}
        for name, command in self.commands.items():
            if command.hidden and name.startswith(incomplete) and name not in shown:
                results.append(item(name, help=command.get_short_help_str()))
        return results
