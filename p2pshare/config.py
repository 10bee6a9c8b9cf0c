"""One settings object for a transfer; the CLI fills it from flags and environment variables.

Pure data: importing this module loads no aiortc (``webrtc.py`` turns :class:`IceConfig` into
aiortc's objects when a connection is made).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pshare.transfer import (
    DEFAULT_MAX_OFFER_BYTES,
    DEFAULT_MAX_OFFER_ENTRIES,
    DEFAULT_WINDOW_BYTES,
)

ENV_CODE = "P2PSHARE_CODE"
ENV_SERVER = "P2PSHARE_SERVER"
ENV_LOCAL_ADDRESSES = "P2PSHARE_LOCAL_ADDRESSES"
ENV_STUN = "P2PSHARE_STUN"
ENV_TURN = "P2PSHARE_TURN"
ENV_TURN_USER = "P2PSHARE_TURN_USER"
ENV_LARGE_PACKETS = "P2PSHARE_LARGE_PACKETS"
"""0: keep to 1,200-byte packets (read by webrtc.py for every connection)."""
ENV_TURN_PASSWORD = "P2PSHARE_TURN_PASSWORD"  # noqa: S105 - a variable name
ENV_WINDOW_BYTES = "P2PSHARE_WINDOW_BYTES"

MIN_WINDOW_BYTES = 1024 * 1024
"""At least four of the largest data messages (256 KiB): a smaller credit than one message
would make the sender wait for credit that can never come."""
MAX_WINDOW_BYTES = 1024 * 1024 * 1024
"""The credit is what the receiver may have to buffer in memory."""


@dataclass(frozen=True)
class IceConfig:
    """ICE servers (RTCIceServer-shaped dicts), which local addresses to offer, and policy."""

    servers: tuple[dict[str, Any], ...] = ()
    local_addresses: tuple[str, ...] | None = None
    """None: every non-loopback address of the machine (aioice's choice)."""
    policy: str = "all"
    """``all``; ``relay``: only through TURN; ``direct``: never through TURN."""

    def has_turn(self) -> bool:
        return any(u.startswith("turn") for s in self.servers for u in ice_urls(s))


def ice_urls(server: dict[str, Any]) -> list[str]:
    """The URLs of one RTCIceServer-shaped dict (``urls`` is a string or a list of them)."""
    urls = server.get("urls", [])
    if isinstance(urls, str):
        return [urls]
    return [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []


# -- Public defaults: the servers we lean on when the user names none --------------------------
# One small table (docs/protocol.md, "Reaching beyond one network"; README, security). We run
# no public server: these belong to others, and --server, --stun or P2PSHARE_PUBLIC=0 avoid them.

PUBLIC_MAILBOXES: tuple[str, ...] = (
    "wss://relay.magic-wormhole.io/v1",
    "ws://relay.magic-wormhole.io:4000/v1",
)
"""magic-wormhole's public mailbox server (run by its author, Brian Warner), in preference
order: behind TLS since 2026-05 (magic-wormhole's ``public_relay.py``); releases up to 0.24
name the plain port 4000, still answered, tried when the first fails."""
PUBLIC_STUN: tuple[str, ...] = ("stun:stun.cloudflare.com:3478",)
"""Cloudflare documents it as free and unlimited. aiortc uses one STUN server (the first);
Google's ``stun:stun.l.google.com:19302``, aiortc's own default, works as well (--stun)."""
ENV_PUBLIC = "P2PSHARE_PUBLIC"
"""``0``: never contact a public server (the local network only, or your own --server)."""


@dataclass(frozen=True)
class PublicServers:
    """The public rendezvous and STUN servers used when the user names none."""

    mailboxes: tuple[str, ...] = PUBLIC_MAILBOXES
    stun: tuple[str, ...] = PUBLIC_STUN

    @property
    def enabled(self) -> bool:
        return bool(self.mailboxes or self.stun)

    def ice_servers(self) -> list[dict[str, Any]]:
        return [{"urls": list(self.stun)}] if self.stun else []


NO_PUBLIC_SERVERS = PublicServers(mailboxes=(), stun=())


def public_servers_from_env() -> PublicServers:
    """The defaults, or none when ``P2PSHARE_PUBLIC`` is ``0``/``no``/``off``/``false``
    (ValueError for anything else but ``1``/``yes``/``on``/``true``)."""
    raw = os.environ.get(ENV_PUBLIC, "1").strip().lower()
    if raw in ("0", "no", "off", "false"):
        return NO_PUBLIC_SERVERS
    if raw in ("1", "yes", "on", "true", ""):
        return PublicServers()
    raise ValueError(f"{ENV_PUBLIC}={raw}: must be 0 (no public servers) or 1")


@dataclass(frozen=True)
class Settings:
    server: str | None = None
    """Rendezvous server URL; None: the sender runs one in its own process."""
    ice: IceConfig = field(default_factory=IceConfig)
    code_words: int = 2
    connect_timeout_s: float = 30.0
    """Deadline for the peer's PAKE reply, the answer, and ICE + DTLS."""
    peer_timeout_s: float = 20.0
    """During the transfer, silence from the peer for this long means it is gone."""
    ping_interval_s: float = 2.0
    window_bytes: int = DEFAULT_WINDOW_BYTES
    """Credit the receiver grants (the CLI reads P2PSHARE_WINDOW_BYTES, a benchmarking knob)."""
    output: Path | None = None
    to_stdout: bool = False
    """Write the single received file to standard output (``--output -``)."""
    overwrite: bool = False
    resume: bool = True
    """Keep the partial data of an interrupted receive, and resume from data found on disk."""
    max_offer_entries: int = DEFAULT_MAX_OFFER_ENTRIES
    """Receiving: decline offers of more entries (each costs memory before the prompt)."""
    max_offer_bytes: int = DEFAULT_MAX_OFFER_BYTES
    """Receiving: decline offers whose messages add up to more bytes."""
    wait_s: float = 0.0
    """Receiver: how long to wait for a sender that has not started yet (a code agreed in
    advance); 0: a code nobody holds fails at once. Without a server, also how long to look
    for the sender on the local network (at least ``lan_browse_s``)."""
    lan_browse_s: float = 3.0
    """Receiver without a server: how long to look for the sender on the local network."""
    advertise: bool = True
    """Sender with its embedded server: advertise it on the local network (mDNS)."""
    public: PublicServers = field(default_factory=PublicServers)
    """Without ``server``: the public mailbox beside the local network; with a mailbox
    ``server``, the STUN server it lacks. :data:`NO_PUBLIC_SERVERS` keeps off them all."""

    def public_route(self) -> bool:
        """Try the public mailbox: no server named, public servers allowed, and not confined
        to loopback addresses (nobody beyond this machine could reach us then)."""
        local = self.ice.local_addresses
        confined = local is not None and all(_is_loopback(a) for a in local)
        return self.server is None and bool(self.public.mailboxes) and not confined

    def __post_init__(self) -> None:
        # Every knob is bounded: no setting may stall a transfer without a deadline firing.
        if not MIN_WINDOW_BYTES <= self.window_bytes <= MAX_WINDOW_BYTES:
            raise ValueError(
                f"window_bytes must be {MIN_WINDOW_BYTES:,} to {MAX_WINDOW_BYTES:,}, "
                f"not {self.window_bytes:,}"
            )
        if not 0 < self.ping_interval_s <= 60:
            raise ValueError("ping_interval_s must be more than 0 and at most 60")
        if not self.peer_timeout_s >= 2 * self.ping_interval_s:
            raise ValueError("peer_timeout_s must be at least twice ping_interval_s")
        if not 0 < self.connect_timeout_s <= 3600:
            raise ValueError("connect_timeout_s must be more than 0 and at most 3600")
        if not 0 <= self.wait_s <= 7 * 24 * 3600:
            raise ValueError("wait_s must be 0 to a week")
        if not 0 < self.lan_browse_s <= 60:
            raise ValueError("lan_browse_s must be more than 0 and at most 60")
        if not 1 <= self.code_words <= 16:
            raise ValueError("code_words must be 1 to 16")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def window_bytes_from_env() -> int:
    """P2PSHARE_WINDOW_BYTES, checked against the bounds of :class:`Settings` (ValueError
    names the variable and the range), or the default."""
    raw = os.environ.get(ENV_WINDOW_BYTES)
    if raw is None:
        return DEFAULT_WINDOW_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not MIN_WINDOW_BYTES <= value <= MAX_WINDOW_BYTES:
        raise ValueError(
            f"{ENV_WINDOW_BYTES}={raw}: must be a number of bytes from "
            f"{MIN_WINDOW_BYTES:,} to {MAX_WINDOW_BYTES:,}"
        )
    return value
