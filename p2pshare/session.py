"""The library's entry points: :func:`send` and :func:`receive`, one transfer each.

::

    send(path)                                                   receive(code)
      │ allocate ─> server ─> nameplate; print code                 │
      │ PAKE start (held by the server until the receiver comes)    │ claim(nameplate)
      │<══════════════ PAKE, key confirmation (pake.py) ═══════════>│
      │ create offer ── sealed ──> server ──> accept offer          │
      │<── sealed answer ─────────────────────────────────────────  │
      │══════════ ICE, DTLS, SCTP: data channel open ══════════════ │
      │ bye to the server (it is not needed any more)               │ bye
      │══════ transfer.py: offer, accept, data/credit, ends, done ═ │
      │ close after Done                                            │ returns when the sender closed

Pairing is :mod:`p2pshare.pairing`; the two sides of the data channel are
:class:`p2pshare.sender.Sender` and :class:`p2pshare.receiver.Receiver`, which feed the sans-I/O
protocol of :mod:`p2pshare.transfer`; what the caller sees is in :mod:`p2pshare.events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from p2pshare.codes import Code, generate_words, parse_code
from p2pshare.config import Settings
from p2pshare.errors import P2PShareError
from p2pshare.events import (
    CodeReady,
    Confirm,
    Connected,
    EventSink,
    Notice,
    OfferSummary,
    Progress,
    SessionEvent,
    TransferResult,
    ignore,
)
from p2pshare.pairing import pair, rendezvous
from p2pshare.pake import Role
from p2pshare.receiver import Receiver
from p2pshare.sender import Sender
from p2pshare.sources import collect
from p2pshare.wire import telling_peer

__all__ = [
    "CodeReady",
    "Confirm",
    "Connected",
    "EventSink",
    "Notice",
    "OfferSummary",
    "Progress",
    "SessionEvent",
    "TransferResult",
    "receive",
    "send",
]


async def send(
    paths: Path | str | Sequence[Path | str] = (),
    settings: Settings | None = None,
    *,
    text: str | None = None,
    name: str | None = None,
    code: Code | str | None = None,
    on_event: EventSink = ignore,
) -> TransferResult:
    """Send files and directories (``-``: standard input), or ``text``; returns once the
    receiver has verified everything.

    ``name`` renames a single entry (useful for stdin). ``code`` chooses the code (its words
    must be hard to guess); by default the server allocates a nameplate and the words are
    drawn at random. The code, progress and notices are reported through ``on_event``.
    """
    settings = settings or Settings()
    paths = [paths] if isinstance(paths, str | Path) else list(paths)

    def warn(message: str) -> None:
        on_event(Notice(message))

    sources = await asyncio.to_thread(collect, paths, text=text, name=name, warn=warn)
    async with rendezvous(settings) as (rv, embedded_url):
        if code is None:
            chosen = Code(await rv.allocate(), generate_words(settings.code_words))
        else:
            chosen = parse_code(code) if isinstance(code, str) else code
            await rv.claim(chosen.nameplate, create=True)
        on_event(CodeReady(str(chosen), embedded_url))
        async with (
            pair(rv, Role.SENDER, chosen, settings, on_event) as link,
            telling_peer(link),
        ):
            return await Sender(link, sources, settings, on_event).run()


async def receive(
    code: Code | str,
    settings: Settings | None = None,
    *,
    on_event: EventSink = ignore,
    confirm: Confirm | None = None,
) -> TransferResult:
    """Receive what the holder of ``code`` sends; returns once everything is verified and in
    place (a text message is returned in ``TransferResult.text``).

    ``confirm`` is asked before anything is written (None: accept). ``settings.server`` is
    required: only the sender can run an embedded server.
    """
    settings = settings or Settings()
    parsed = parse_code(code) if isinstance(code, str) else code
    if settings.server is None:
        raise P2PShareError("receive needs the rendezvous server's address (--server)")
    async with rendezvous(settings) as (rv, _):
        await rv.claim(parsed.nameplate)
        async with (
            pair(rv, Role.RECEIVER, parsed, settings, on_event) as link,
            telling_peer(link),
        ):
            return await Receiver(link, settings, on_event, confirm).run()
