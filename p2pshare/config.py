"""One settings object for a transfer; the CLI fills it from flags and environment variables.

Pure data: importing this module loads no aiortc (``webrtc.py`` turns :class:`IceConfig` into
aiortc's objects when a connection is made).
"""

from __future__ import annotations

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
ENV_TURN_PASSWORD = "P2PSHARE_TURN_PASSWORD"  # noqa: S105 - a variable name


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
    window_bytes: int = int(os.environ.get("P2PSHARE_WINDOW_BYTES", DEFAULT_WINDOW_BYTES))
    """Credit the receiver grants; the environment variable is a benchmarking knob."""
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
