"""Where the two sides of a transfer meet again after its path died (issue 28): on the
rendezvous that paired them, in the room of a nameplate both derive from the session key
(:mod:`p2pshare.reconnect`). One small interface, :class:`Place`, with one kind per route::

    paired through                 sender meets at                  receiver meets at
    p2pshare-signal (--server)     ServerPlace(url)                 ServerPlace(url)
    the sender's embedded server   EmbeddedPlace: its own server,   LanPlace: the URL it used,
                                   advertised on mDNS under the     else the reconnect nameplate
                                   reconnect nameplate              looked up on mDNS
    a mailbox server (public)      MailboxPlace(url)                MailboxPlace(url)

A place yields a :class:`~p2pshare.rendezvous.Relay` in the room; the reconnect exchanges its
sealed hellos, offer and answer through it, and the place closes it (and stops advertising)
when the attempt ends. Nothing here is trusted: whoever answers in the room must still prove
the session key (:meth:`ReconnectKeys.open_hello`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from p2pshare import lan
from p2pshare.config import Settings
from p2pshare.errors import CrowdedError, NoSuchCodeError, P2PShareError, SignallingError
from p2pshare.mailbox import MailboxClient, connect_any, server_label
from p2pshare.rendezvous import Relay, RendezvousClient

logger = logging.getLogger(__name__)

LAST_URL_S = 1.5
"""How long the receiver tries the embedded server's last URL before looking it up again
(the sender's address may have changed: the old one then never answers)."""


class Place(Protocol):
    """Where a reconnect's attempt meets the peer."""

    def meet(
        self, nameplate: str, timeout_s: float
    ) -> contextlib.AbstractAsyncContextManager[Relay]:
        """A relay in the room of ``nameplate`` (opened, or joined if the peer opened it),
        reached within ``timeout_s``; closed when the block ends."""
        ...


async def _join_our_server(url: str, nameplate: str, timeout_s: float) -> RendezvousClient:
    """Open the room of ``nameplate`` on a ``p2pshare-signal`` server, or join it when the
    peer opened it first (the server closes after a refused claim: a new connection)."""
    async with asyncio.timeout(timeout_s):
        rv = await RendezvousClient.connect(url)
    try:
        async with asyncio.timeout(timeout_s):
            await rv.claim(nameplate, create=True)
        return rv
    except P2PShareError as exc:
        await rv.close()
        if isinstance(exc, NoSuchCodeError | CrowdedError):
            raise
    async with asyncio.timeout(timeout_s):
        rv = await RendezvousClient.connect(url)
    try:
        async with asyncio.timeout(timeout_s):
            await rv.claim(nameplate)  # the peer's room
    except BaseException:
        await rv.close()
        raise
    return rv


@contextlib.asynccontextmanager
async def _closing(rv: Relay) -> AsyncIterator[Relay]:
    try:
        yield rv
    finally:
        await rv.close()


class ServerPlace:
    """A ``p2pshare-signal`` server at a known URL (``--server``, or a public one of ours)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def meet(self, nameplate: str, timeout_s: float) -> AsyncIterator[Relay]:
        rv = await _join_our_server(self.url, nameplate, timeout_s)
        async with _closing(rv):
            yield rv


def current_address(settings: Settings) -> str | None:
    """The IPv4 address the embedded server is offered on now (it changes with the network)."""
    from p2pshare.webrtc import lan_addresses

    addresses = settings.ice.local_addresses or tuple(lan_addresses())
    return next((a for a in addresses if ":" not in a), None)


class EmbeddedPlace:
    """The sender's own embedded server, which runs as long as the transfer. It listens on
    every address (:func:`p2pshare.pairing.rendezvous`), so it answers on a new address too;
    while in the room, the sender advertises it on mDNS under the reconnect nameplate at the
    address it has now, for a receiver whose last URL no longer answers."""

    def __init__(self, url: str, settings: Settings) -> None:
        parts = urlsplit(url)
        assert parts.port is not None
        self.port = parts.port
        self.settings = settings

    @contextlib.asynccontextmanager
    async def meet(self, nameplate: str, timeout_s: float) -> AsyncIterator[Relay]:
        rv = await _join_our_server(f"ws://127.0.0.1:{self.port}", nameplate, timeout_s)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(rv.close)
            address = current_address(self.settings)
            if address is not None and self.settings.advertise:
                url = lan.ws_url(address, self.port)
                await stack.enter_async_context(lan.advertise_server(nameplate, url))
            yield rv


class LanPlace:
    """The receiver's way back to the sender's embedded server: the URL it reached it at,
    else (the sender's address changed) the one the sender advertises on mDNS under the
    reconnect nameplate, which is then kept for the next time."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def meet(self, nameplate: str, timeout_s: float) -> AsyncIterator[Relay]:
        try:
            rv = await _join_our_server(self.url, nameplate, min(timeout_s, LAST_URL_S))
        except (P2PShareError, TimeoutError, OSError) as exc:
            logger.info("the sender's last address does not answer (%s): looking it up", exc)
            url = await lan.find_server(nameplate, min(timeout_s, lan.BROWSE_S))
            rv = await _join_our_server(url, nameplate, timeout_s)
            self.url = url
        async with _closing(rv):
            yield rv


class MailboxPlace:
    """A mailbox server (the public one that paired us, or one named with ``--server``). A
    new side each attempt: claim the nameplate (created on demand), open its mailbox; the
    client releases the nameplate once the peer's first message came and closes the mailbox
    with its mood when the attempt ends (docs/protocol.md)."""

    def __init__(self, url: str, ice_servers: list[dict[str, Any]]) -> None:
        self.url = url
        self.ice_servers = ice_servers

    @contextlib.asynccontextmanager
    async def meet(self, nameplate: str, timeout_s: float) -> AsyncIterator[Relay]:
        async with asyncio.timeout(timeout_s):
            client = await connect_any(self.url, self.ice_servers)
        async with _closing(client):
            if not isinstance(client, MailboxClient):
                raise SignallingError(
                    f"{server_label(self.url)} no longer speaks the mailbox protocol"
                )
            async with asyncio.timeout(timeout_s):
                await client.claim(nameplate, create=True)
            yield client


def place_for(
    rv: Relay, settings: Settings, embedded: tuple[Relay, str] | None = None
) -> Place | None:
    """Where to meet again, from the relay that carried the pairing (of
    :class:`~p2pshare.routes.FirstOf`, the route the peer spoke on): the sender's embedded
    server (``embedded``: its client and URL), a mailbox server, or a server of ours. None
    for a relay no reconnect can go back to."""
    chosen = getattr(rv, "chosen", None) or rv
    if embedded is not None and chosen is embedded[0]:
        return EmbeddedPlace(embedded[1], settings)
    if isinstance(chosen, MailboxClient):
        return MailboxPlace(chosen.url, chosen.ice_servers)
    if isinstance(chosen, RendezvousClient):
        return ServerPlace(chosen.url)
    return None
