"""Which rendezvous carries a pairing when the user names no server: this network (the
sender's embedded server, found by mDNS) and the public mailbox, under one code.

::

    sender                                                  receiver (no --server)
      │ public mailbox: allocate ──> nameplate 7            │ browse mDNS for 7  ┐ at once,
      │   (waits at most PUBLIC_WAIT_S; else a LAN one)     │ mailbox: claim 7   ┘ side by side
      │ embedded server: claim 7, advertise 7 on mDNS       │ found on the LAN: that route;
      │ PAKE message on both ──────────────────────────────>│ else, after LAN_FIRST_S, the
      │ the first route a receiver speaks on wins; the      │ mailbox if the sender is there
      │ other is closed: one code pairs once                │

The sender runs one :class:`~p2pshare.pake.PakeSession` whichever route wins, so a wrong
guess on either burns the code on both. It waits on both as long as its embedded room lives
(the room TTL), never longer; the losing route is closed in the background. A chosen code
whose nameplate holds a stranger's messages at the public mailbox stays on this network.
Nothing here waits on a public server longer than its bound: on a network without internet
the LAN route is as fast as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2pshare import lan
from p2pshare.codes import Code, generate_words
from p2pshare.config import Settings
from p2pshare.errors import (
    NoSuchCodeError,
    P2PShareError,
    ServerRefusedError,
    SignallingError,
)
from p2pshare.mailbox import MailboxClient, connect_any, server_label
from p2pshare.rendezvous import Relay, RendezvousClient

logger = logging.getLogger(__name__)

PUBLIC_WAIT_S = 4.0
"""How long the sender waits for the public mailbox's nameplate before printing a code that
works on this network only (a network without internet fails at once, or hangs in DNS)."""
LAN_FIRST_S = 1.5
"""A receiver that found its sender at the public mailbox still listens this long on the
local network (an mDNS answer between two machines often comes with the second query)."""
RECEIVER_PUBLIC_WAIT_S = 8.0
"""How long a receiver tries to reach the public mailbox at most (a resolver that never
answers would otherwise hold a "no such code" for every URL's connect timeout)."""
RETRY_DELAYS_S = (1.0,)
"""Between rounds over the public mailbox URLs: bounded, growing (a good guest)."""
SETTLE_S = 5.0
"""At exit, how long losing routes' closes may still take (a mailbox close is bounded at
about 4 s: its ``closed`` reply, then the websocket's closing handshake)."""

AnyClient = RendezvousClient | MailboxClient


class _NameplateInUse(Exception):
    """A chosen code's nameplate holds another side's messages at the public mailbox: the
    public route is dropped with a notice (never shown as an error: the LAN route goes on)."""


async def connect_public(settings: Settings, on_motd: Callable[[str], None]) -> AnyClient:
    """A client of the first public mailbox that answers, in the table's order; each URL
    once per round, a bounded number of rounds with a pause between them."""
    failure: P2PShareError = SignallingError("no public rendezvous server is configured")
    for delay in (0.0, *RETRY_DELAYS_S):
        if delay:
            await asyncio.sleep(delay)
        for url in settings.public.mailboxes:
            try:
                return await connect_any(url, settings.public.ice_servers(), on_motd)
            except ServerRefusedError:
                raise  # the operator said no: asking again, or elsewhere at once, is rude
            except SignallingError as exc:
                logger.info("public rendezvous %s: %s", server_label(url), exc.message)
                failure = exc
    raise failure


class FirstOf:
    """Several relays whose rooms hold the same code, as one :class:`Relay`: what is sent
    goes to all of them until a peer speaks on one; that one is kept, the others closed.

    ``required`` is the route whose failure ends the wait on every route: the sender's
    embedded room, which expires at its server's room TTL (10 min). That is the sender's one
    deadline: the public mailbox has none of ours, and a code left open there would be open
    to guesses for as long as the process runs.
    """

    def __init__(self, relays: Sequence[Relay], required: Relay | None = None) -> None:
        self._relays = list(relays)
        self._required = required
        self.chosen: Relay | None = None
        self.ice_servers: list[dict[str, Any]] = []
        """The chosen relay's, once a peer spoke."""
        self._closing: set[asyncio.Task[None]] = set()
        """Losing routes being closed in the background (a slow server must not delay the
        winner); awaited, bounded, by :meth:`settle`."""

    def _close_later(self, relay: Relay) -> None:
        task = asyncio.ensure_future(relay.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def send(self, body: bytes) -> None:
        if self.chosen is not None:
            await self.chosen.send(body)
            return
        for relay in list(self._relays):
            try:
                await relay.send(body)
            except P2PShareError:
                if len(self._relays) == 1 or relay is self._required:
                    raise
                self._relays.remove(relay)
                self._close_later(relay)

    async def wait_paired(self, timeout_s: float | None = None) -> None:
        if self.chosen is not None:
            return
        waits = {asyncio.ensure_future(r.wait_paired(None)): r for r in self._relays}
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(timeout_s):
                while waits and self.chosen is None and failure is None:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        relay = waits.pop(task)
                        error = task.exception()
                        if error is None and self.chosen is None:
                            self.chosen = relay
                        elif error is not None:
                            logger.info("a rendezvous route failed: %s", error)
                            if relay is self._required or not waits:
                                failure = error
                            else:
                                self._relays.remove(relay)
                                self._close_later(relay)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if self.chosen is None:
            assert failure is not None
            raise failure
        self.ice_servers = self.chosen.ice_servers
        for relay in self._relays:
            if relay is not self.chosen:
                self._close_later(relay)
        self._relays = [self.chosen]

    async def receive(self, timeout_s: float | None) -> bytes:
        await self.wait_paired(timeout_s)
        assert self.chosen is not None
        return await self.chosen.receive(timeout_s)

    async def close(self) -> None:
        for relay in self._relays:
            await relay.close()
        await self.settle()

    async def settle(self, bound_s: float = SETTLE_S) -> None:
        """Wait for the losing routes' closes, at most ``bound_s``; cancel what is left."""
        await settle(self._closing, bound_s)


async def settle(tasks: set[asyncio.Task[None]], bound_s: float = SETTLE_S) -> None:
    """Let background closes finish within ``bound_s``, then cancel the rest."""
    pending = set(tasks)
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=bound_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class SenderRoute:
    relay: Relay
    code: Code
    embedded_url: str | None
    public: str | None
    """The public mailbox's host, when the code is open there too."""


@contextlib.asynccontextmanager
async def sender_routes(
    settings: Settings,
    chosen: Code | None,
    embedded: tuple[AnyClient, str],
    on_notice: Callable[[str], None],
) -> AsyncIterator[SenderRoute]:
    """The sender's embedded server (``embedded``: its client and URL) and, when allowed,
    the public mailbox, both holding one code."""
    async with contextlib.AsyncExitStack() as stack:
        local, url = embedded
        opened = (
            await _public_room(settings, chosen, on_notice) if settings.public_route() else None
        )
        public = opened[0] if opened is not None else None
        if public is not None:
            stack.push_async_callback(public.close)
        if chosen is not None:
            code = chosen
        elif opened is not None:
            code = Code(opened[1], generate_words(settings.code_words))
        else:
            code = Code(lan.random_nameplate(), generate_words(settings.code_words))
        await local.claim(code.nameplate, create=True)
        if public is None:
            yield SenderRoute(local, code, url, None)
            return
        both = FirstOf([local, public], required=local)
        stack.push_async_callback(both.settle)
        yield SenderRoute(both, code, url, server_label(public.url))


async def _public_room(
    settings: Settings, chosen: Code | None, on_notice: Callable[[str], None]
) -> tuple[AnyClient, str] | None:
    """A public mailbox client in a room of our code (allocated, or ``chosen``), or None
    (said in a notice) when none answered within :data:`PUBLIC_WAIT_S`."""

    async def open_room() -> tuple[AnyClient, str]:
        client = await connect_public(settings, on_notice)
        try:
            if chosen is None:
                return client, await client.allocate()
            await client.claim(chosen.nameplate, create=True)
            if isinstance(client, MailboxClient) and await client.others_posted():
                client.mood = "lonely"  # we leave without a word: their pairing goes on
                raise _NameplateInUse(
                    "this code works on this network only: the nameplate is in use on the "
                    f"public server {server_label(client.url)}"
                )
            return client, chosen.nameplate
        except BaseException:
            await client.close()
            raise

    task = asyncio.ensure_future(open_room())
    try:
        async with asyncio.timeout(PUBLIC_WAIT_S):
            return await asyncio.shield(task)
    except (TimeoutError, P2PShareError, _NameplateInUse) as exc:
        # A refusal too (the operator's text is in the notice): the LAN route still works.
        task.cancel()
        with contextlib.suppress(BaseException):
            client, _ = await task
            await client.close()
        if isinstance(exc, _NameplateInUse):
            on_notice(str(exc))
            return None
        reason = exc.message if isinstance(exc, P2PShareError) else "no answer in time"
        on_notice(
            f"the public rendezvous is out of reach ({reason}): this code works on this "
            "network only"
        )
        return None
    except BaseException:
        task.cancel()  # Ctrl-C while waiting: the shielded task must not outlive us
        raise


@dataclass
class ReceiverRoute:
    lan_url: str | None = None
    public: AnyClient | None = None
    """In the sender's room already (claimed, the sender heard)."""
    closing: set[asyncio.Task[None]] = field(default_factory=set)
    """The losing route's close, in the background: the caller :func:`settle`-s it at exit."""


async def find_sender(
    code: Code, settings: Settings, on_notice: Callable[[str], None]
) -> ReceiverRoute:
    """Look for the sender of ``code`` on this network and, when allowed, at the public
    mailbox, side by side; prefer the local network (see the module's diagram)."""
    browse_s = max(settings.lan_browse_s, settings.wait_s)
    lan_task = asyncio.ensure_future(lan.find_server(code.nameplate, browse_s))
    if not settings.public_route():
        return ReceiverRoute(lan_url=await lan_task)
    public_task = asyncio.ensure_future(_public_claim(code, settings, on_notice))
    loop = asyncio.get_running_loop()
    lan_first_until = loop.time() + LAN_FIRST_S
    pending: set[asyncio.Future[Any]] = {lan_task, public_task}
    closing: set[asyncio.Task[None]] = set()
    try:
        while True:
            if lan_task.done() and lan_task.exception() is None:
                return ReceiverRoute(lan_url=lan_task.result(), closing=closing)
            public_ok = public_task.done() and public_task.exception() is None
            lan_over = lan_task.done() or loop.time() >= lan_first_until
            if public_ok and lan_over:
                return ReceiverRoute(public=public_task.result())
            if lan_task.done() and public_task.done():
                raise _both_failed(code, lan_task, public_task)
            pending = {t for t in pending if not t.done()}
            wait_s = max(0.0, lan_first_until - loop.time()) if public_ok else None
            await asyncio.wait(pending, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lan_task.cancel()
        await asyncio.gather(lan_task, return_exceptions=True)
        if not (public_task.done() and public_task.exception() is None):
            public_task.cancel()
            await asyncio.gather(public_task, return_exceptions=True)
        elif lan_task.done() and not lan_task.cancelled() and lan_task.exception() is None:
            # The LAN route won: a slow public server must not delay it (it did, ~4 s).
            task = asyncio.ensure_future(public_task.result().close())
            closing.add(task)
            task.add_done_callback(closing.discard)


async def _public_claim(
    code: Code, settings: Settings, on_notice: Callable[[str], None]
) -> AnyClient:
    try:
        async with asyncio.timeout(RECEIVER_PUBLIC_WAIT_S):
            client = await connect_public(settings, on_notice)
    except TimeoutError:
        raise SignallingError("the public rendezvous did not answer in time") from None
    try:
        if settings.wait_s > 0:
            await client.claim(code.nameplate, create=True)
            await client.wait_paired(settings.wait_s)
        else:
            await client.claim(code.nameplate)
    except BaseException:
        await client.close()
        raise
    return client


def _both_failed(
    code: Code, lan_task: asyncio.Future[Any], public_task: asyncio.Future[Any]
) -> P2PShareError:
    lan_error, public_error = lan_task.exception(), public_task.exception()
    if isinstance(public_error, ServerRefusedError):
        return public_error
    if isinstance(lan_error, NoSuchCodeError) and isinstance(public_error, NoSuchCodeError):
        return NoSuchCodeError(
            f"no sender with code {code.nameplate}-... on this network nor at the public "
            "rendezvous (check the code; codes are single use)"
        )
    if isinstance(lan_error, P2PShareError):
        reason = public_error.message if isinstance(public_error, P2PShareError) else "failed"
        return type(lan_error)(f"{lan_error.message}; the public rendezvous: {reason}")
    assert isinstance(lan_error, BaseException)
    return SignallingError(f"could not look for the sender: {lan_error}")
