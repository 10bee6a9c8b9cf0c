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
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from p2pshare import lan
from p2pshare.codes import Code, generate_words, parse_code
from p2pshare.config import Settings
from p2pshare.errors import (
    CrowdedError,
    NoSuchCodeError,
    P2PShareError,
    PeerLostError,
    ProtocolError,
    SignallingError,
)
from p2pshare.events import (
    CodeReady,
    Confirm,
    ConfirmWords,
    Connected,
    EventSink,
    ManyResult,
    Notice,
    OfferSummary,
    Progress,
    ResolveExisting,
    SessionEvent,
    TransferResult,
    Verification,
    ignore,
)
from p2pshare.mailbox import MailboxClient, server_label
from p2pshare.pairing import Paired, WordsGate, paired, preload_webrtc, rendezvous
from p2pshare.pake import Role
from p2pshare.places import LanPlace, Place, place_for
from p2pshare.receiver import Receiver
from p2pshare.reconnect import ReconnectKeys, Reconnector, Runs
from p2pshare.rendezvous import ManyRoom, Relay, RendezvousClient
from p2pshare.routes import AnyClient, FirstOf, find_sender, sender_routes, settle
from p2pshare.sender import Sender
from p2pshare.sources import collect
from p2pshare.wire import telling_peer

if TYPE_CHECKING:
    from p2pshare.channel import Channel

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
    "Verification",
    "receive",
    "send",
    "send_many",
]


async def send(
    paths: Path | str | Sequence[Path | str] = (),
    settings: Settings | None = None,
    *,
    text: str | None = None,
    name: str | None = None,
    code: Code | str | None = None,
    on_event: EventSink = ignore,
    exclude: Collection[Path] = (),
    confirm_words: ConfirmWords | None = None,
) -> TransferResult:
    """Send files and directories (``-``: standard input), or ``text``; returns once the
    receiver has verified everything.

    ``name`` renames a single entry (useful for stdin). ``code`` chooses the code (its words
    must be hard to guess); by default the server allocates a nameplate and the words are
    drawn at random. ``exclude`` leaves out paths inside the directories sent (the CLI's
    ``--skip-unreadable``). The code, progress and notices are reported through
    ``on_event``. ``confirm_words`` (``--verify``) is asked once the key is agreed; nothing
    of the transfer leaves until it says yes.

    Without ``settings.server`` a rendezvous server runs in this process, under a random
    nameplate (every embedded server would otherwise use 1), advertised on the local
    network until the receiver has paired.
    """
    preload_webrtc()
    settings = settings or Settings()
    paths = [paths] if isinstance(paths, str | Path) else list(paths)

    def warn(message: str) -> None:
        on_event(Notice(message))

    sources = await asyncio.to_thread(
        collect, paths, text=text, name=name, warn=warn, exclude=exclude
    )
    chosen_code = (parse_code(code) if isinstance(code, str) else code) if code else None
    async with contextlib.AsyncExitStack() as stack:
        public: str | None = None
        ours: tuple[Relay, str] | None = None
        """The embedded server's client and URL (a reconnect meets there)."""
        if settings.server is None:
            embedded = await stack.enter_async_context(rendezvous(settings))
            assert embedded[1] is not None
            ours = (embedded[0], embedded[1])
            route = await stack.enter_async_context(
                sender_routes(settings, chosen_code, (embedded[0], embedded[1]), warn)
            )
            rv, chosen, embedded_url, public = (
                route.relay,
                route.code,
                route.embedded_url,
                route.public,
            )
            where = f"{public}, public, and this network" if public else "this network only"
        else:
            client, embedded_url, _ = await stack.enter_async_context(
                _room(settings, chosen_code, warn)
            )
            rv, where = client, server_label(client.url)
            if chosen_code is not None:
                chosen = chosen_code
            else:
                chosen = Code(await client.allocate(), generate_words(settings.code_words))
        mdns = contextlib.AsyncExitStack()
        stack.push_async_callback(mdns.aclose)
        advertised = False
        if embedded_url is not None and settings.advertise:
            advertised = await mdns.enter_async_context(
                lan.advertise_server(chosen.nameplate, embedded_url)
            )
        on_event(
            CodeReady(
                str(chosen),
                embedded_url,
                advertised,
                public=public,
                rendezvous=where,
                mailbox=isinstance(rv, MailboxClient),
            )
        )
        words = WordsGate(on_event, confirm_words, "the receiver")
        streamed = sources.streamed  # read once: nothing to send again
        can = _can_reconnect(settings, rv) and not streamed
        async with paired(rv, Role.SENDER, chosen, settings, words, can) as done:
            await mdns.aclose()  # the code is used: nobody else should look for it
            link = done.link
            reconnector = _reconnector(place_for(rv, settings, ours), settings, done, on_event)
            if reconnector is None:
                async with telling_peer(link):
                    return await Sender(link, sources, settings, on_event, words.gate()).run()
            runs = Runs()

            async def send_once(channel: Channel, run: int) -> TransferResult:
                gate = words.gate() if run == 0 else None  # the words were confirmed
                sender = Sender(channel, sources, settings, on_event, gate)
                try:
                    return runs.add(await sender.run())
                except BaseException:
                    runs.lost += sender.sent
                    raise

            return await reconnector.run(link, send_once)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the block returns)


async def send_many(
    paths: Path | str | Sequence[Path | str] = (),
    settings: Settings | None = None,
    *,
    count: int | None = None,
    parallel: int = 2,
    timeout_s: float | None = None,
    text: str | None = None,
    name: str | None = None,
    code: Code | str | None = None,
    on_event: EventSink = ignore,
    exclude: Collection[Path] = (),
    confirm_words: ConfirmWords | None = None,
) -> ManyResult:
    """Like :func:`send`, to every receiver that proves the code, each over its own peer
    connection, until ``count`` of them finished (None: until cancelled or ``timeout_s``).

    At most ``parallel`` transfers run at once; the others are told to wait their turn. The
    first receiver that fails key confirmation burns the code: nobody else is admitted, those
    connected finish, and the result says ``stopped="burned"``. Per-receiver events arrive as
    :class:`~p2pshare.events.ForReceiver`, endings as :class:`~p2pshare.events.ReceiverDone`.
    The rendezvous server must support many mode (the embedded one does; one with Redis
    does not).
    """
    from p2pshare.many import ManySender

    preload_webrtc()
    settings = settings or Settings()
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if any(str(p) == "-" for p in paths):
        raise P2PShareError("standard input can be read only once: send it without --many")

    def warn(message: str) -> None:
        on_event(Notice(message))

    sources = await asyncio.to_thread(
        collect, paths, text=text, name=name, warn=warn, exclude=exclude
    )
    chosen = (parse_code(code) if isinstance(code, str) else code) if code else None
    async with rendezvous(settings) as (rv, embedded_url), contextlib.AsyncExitStack() as stack:
        if chosen is None and embedded_url is not None:
            chosen = Code(lan.random_nameplate(), generate_words(settings.code_words))
        if chosen is not None:
            await rv.claim(chosen.nameplate, create=True, many=True)
        else:
            chosen = Code(await rv.allocate(many=True), generate_words(settings.code_words))
        advertised = False
        if embedded_url is not None and settings.advertise:
            advertised = await stack.enter_async_context(
                lan.advertise_server(chosen.nameplate, embedded_url)
            )
        on_event(CodeReady(str(chosen), embedded_url, advertised))
        assert isinstance(rv, RendezvousClient)  # a mailbox client refused many mode above
        room = ManyRoom(rv)
        stack.push_async_callback(room.close)
        sender = ManySender(
            room,
            chosen,
            sources,
            settings,
            on_event,
            count=count,
            parallel=parallel,
            confirm_words=confirm_words,
        )
        return await sender.run(timeout_s)


async def receive(
    code: Code | str,
    settings: Settings | None = None,
    *,
    on_event: EventSink = ignore,
    confirm: Confirm | None = None,
    resolve_existing: ResolveExisting | None = None,
) -> TransferResult:
    """Receive what the holder of ``code`` sends; returns once everything is verified and in
    place (a text message is returned in ``TransferResult.text``).

    ``confirm`` is asked before anything is written; without it, every offer is accepted
    (whatever its size or names, within the safety rules). Without ``settings.server`` the
    sender is looked for on the local network (mDNS), by the code's nameplate only. With
    ``settings.wait_s`` the receiver may start first: it waits that long for the sender.
    Files that exist already are refused unless ``settings.overwrite``, or unless
    ``resolve_existing`` decides (overwrite, save under another name, or cancel).
    """
    preload_webrtc()
    settings = settings or Settings()
    parsed = parse_code(code) if isinstance(code, str) else code

    def warn(message: str) -> None:
        on_event(Notice(message))

    async with contextlib.AsyncExitStack() as stack:
        rv: Relay
        on_lan: str | None = None
        """The sender's embedded server, found on this network (a reconnect meets there)."""
        if settings.server is None:
            found = await find_sender(parsed, settings, warn)
            stack.push_async_callback(settle, found.closing)
            if found.public is not None:
                rv = found.public
                stack.push_async_callback(found.public.close)
            else:
                assert found.lan_url is not None
                on_lan = found.lan_url
                settings = dataclasses.replace(settings, server=found.lan_url)
        if settings.server is not None:
            client, _, opened = await stack.enter_async_context(
                _room(settings, parsed if settings.wait_s > 0 else None, warn)
            )
            if opened:
                await _wait_for_sender(client, parsed, settings.wait_s)
            elif settings.wait_s == 0:
                await client.claim(parsed.nameplate)
            rv = client
        # A stream (--output -) cannot take the same bytes twice.
        can = not settings.to_stdout and _can_reconnect(settings, rv)
        place = LanPlace(on_lan) if on_lan is not None else place_for(rv, settings)
        async with paired(rv, Role.RECEIVER, parsed, settings, on_event, can) as done:
            link = done.link
            reconnector = _reconnector(place, settings, done, on_event)
            if reconnector is None:
                async with telling_peer(link):
                    return await Receiver(link, settings, on_event, confirm, resolve_existing).run()
            again = _SameOffer(confirm, resolve_existing)
            runs = Runs()

            async def receive_once(channel: Channel, run: int) -> TransferResult:
                ask = again.first if run == 0 else again.same
                existing = again.first_existing if run == 0 else again.same_existing
                resolve = existing if resolve_existing is not None else None
                receiver = Receiver(channel, settings, on_event, ask, resolve)
                try:
                    return runs.add(await receiver.run())
                except BaseException:
                    runs.lost += receiver.written
                    raise

            return await reconnector.run(link, receive_once)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the block returns)


def _can_reconnect(settings: Settings, rv: Relay) -> bool:
    """Whether this side offers to reconnect (docs/protocol.md, Reconnecting): on every
    route a pairing takes, it meets the peer again where it paired (places.py): a server of
    ours (named, or the sender's embedded one, found on the LAN or at its URL) or a mailbox
    server (named, or the public one). Not with ``--reconnect-s 0``."""
    return settings.reconnect_s > 0 and isinstance(rv, RendezvousClient | MailboxClient | FirstOf)


def _reconnector(
    place: Place | None, settings: Settings, done: Paired, on_event: EventSink
) -> Reconnector | None:
    """What rides the transfer through a network change, when both sides offered it."""
    if not done.reconnects or place is None:
        return None
    keys = ReconnectKeys.from_pake(done.pake)
    return Reconnector(place, keys, settings, on_event)


class _SameOffer:
    """The receiver's questions across reconnects: asked once; after a reconnect the
    sender's offer must be the one accepted (then nothing is asked again)."""

    def __init__(self, confirm: Confirm | None, resolve: ResolveExisting | None) -> None:
        self.confirm = confirm
        self.resolve = resolve
        self.accepted: OfferSummary | None = None
        self.choice: str | None = None

    @staticmethod
    def _key(summary: OfferSummary) -> OfferSummary:
        return dataclasses.replace(summary, found_bytes=0)

    async def first(self, summary: OfferSummary) -> bool:
        ok = True if self.confirm is None else await self.confirm(summary)
        if ok:
            self.accepted = self._key(summary)
        return ok

    async def same(self, summary: OfferSummary) -> bool:
        if self.accepted is None or self._key(summary) != self.accepted:
            raise ProtocolError("after reconnecting, the other side offered something else")
        return True

    async def first_existing(
        self, existing: tuple[Path, ...], other: Path | None, offer: OfferSummary
    ) -> str:
        assert self.resolve is not None  # passed on only when there is one
        self.choice = await self.resolve(existing, other, offer)
        return self.choice

    async def same_existing(
        self, existing: tuple[Path, ...], other: Path | None, offer: OfferSummary
    ) -> str:
        return self.choice or "cancel"


@contextlib.asynccontextmanager
async def _room(
    settings: Settings, chosen: Code | None, on_notice: Callable[[str], None] = lambda t: None
) -> AsyncIterator[tuple[AnyClient, str | None, bool]]:
    """A rendezvous client; with a code ``chosen`` in advance, in its room: opened by us
    (third value True), or joined when the other side opened it first (a receiver that
    waits, ``receive --wait``, or the sender). The PAKE decides who really gets in.

    The server closes the connection after refusing a claim, so the join uses a new one.
    (A mailbox server's claim joins or creates alike: it is "opened" either way, and
    waiting for the peer's first message works in both orders.)
    """
    async with contextlib.AsyncExitStack() as stack:
        rv, url = await stack.enter_async_context(rendezvous(settings, on_notice))
        if chosen is None:
            yield rv, url, False
            return
        opened = True
        try:
            await rv.claim(chosen.nameplate, create=True)
        except SignallingError as exc:
            # Taken: someone holds it. Not when the server is our own (nobody else's room).
            if isinstance(exc, NoSuchCodeError | CrowdedError) or url is not None:
                raise
            opened = False
        if not opened:
            await stack.aclose()
            rv, url = await stack.enter_async_context(rendezvous(settings, on_notice))
            await rv.claim(chosen.nameplate)
        yield rv, url, opened


async def _wait_for_sender(rv: AnyClient, code: Code, wait_s: float) -> None:
    """In a room we opened, wait for a sender with the same chosen code to join it."""
    try:
        await rv.wait_paired(wait_s)
    except PeerLostError:
        raise NoSuchCodeError(
            f"no sender came with code {code.nameplate}-... within {wait_s:g} s"
        ) from None
