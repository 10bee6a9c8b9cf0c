"""One settings object for a transfer, and every tuning knob the library has, read once.

:class:`Settings` is what a transfer is asked to do (server, ICE, timeouts, where to write);
the CLI fills it from flags. :class:`Tuning` is how it is done: the ``P2PSHARE_*`` variables
that trade speed, memory and compatibility, read from the environment once
(:meth:`Tuning.from_env`, called by the CLI) and carried by ``Settings.tuning`` down to the
modules that use them. No other module of the library reads the environment; every knob, its
default and its bounds are in :data:`KNOBS` (rendered as the table in docs/tuning.md).

Pure data: importing this module loads no aiortc (``webrtc.py`` turns :class:`IceConfig` into
aiortc's objects when a connection is made).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pshare.transfer import (
    DEFAULT_MAX_OFFER_BYTES,
    DEFAULT_MAX_OFFER_ENTRIES,
    DEFAULT_WINDOW_BYTES,
)
from p2pshare.trial import COMPRESS_WHEN_AHEAD

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


# -- tuning ----------------------------------------------------------------------------------

MIN_MESSAGE_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_LARGE_MESSAGE_CHUNKS = 64
MAX_CREDIT_STALL_S = 3600.0
MAX_COMPRESS_WHEN_AHEAD = 999
HASHES = ("blake3", "sha256")


@dataclass(frozen=True)
class Tuning:
    """How a transfer is done: knobs that trade speed, memory and compatibility. The defaults
    are what was measured best (docs/performance.md); each field names its variable in
    :data:`KNOBS`. Frozen: built once, passed down."""

    window_bytes: int = DEFAULT_WINDOW_BYTES
    """The credit a receiver grants; the CLI copies it into ``Settings.window_bytes``."""
    message_bytes: int | None = None
    """Largest data message sent (the peer's limit permitting); None: 64 KiB, or whole large
    chunks once large packets are agreed."""
    large_message_chunks: int = 0
    """With large packets, chunks per data message; 0: as many as the peer's limit allows."""
    large_packets: bool = True
    udp_segments: bool = True
    send_without_gil: bool = True
    stock_sctp: bool = False
    sctp_rto_min_s: float | None = None
    """The minimum retransmission timeout for every association; None: 1 s (RFC 4960), 0.2 s
    between two p2pshare peers that agreed on large packets."""
    credit_stall_s: float = 120.0
    peer_timeout_s: float | None = None
    """The silence deadline; None: ``Settings.peer_timeout_s`` (20 s). The CLI copies it."""
    connect_timeout_s: float | None = None
    """The pairing and connecting deadline; None: ``Settings.connect_timeout_s`` (30 s). The
    CLI copies it."""
    compress_when_ahead: int = COMPRESS_WHEN_AHEAD
    compress_groups: bool = True
    drop_behind: bool = True
    linux_calls: bool = True
    """False: behave as on a system without Linux's calls (sync_file_range, posix_fadvise, UDP
    GSO/GRO, forced socket buffers): the fallbacks macOS and others take."""
    hash: str = "blake3"
    """The file hash offered and preferred (``sha256``: BLAKE3 neither offered nor chosen)."""
    media_stand_in: bool = True
    link_report: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tuning:
        """The knobs set in ``environ`` (the rest at their defaults). A value out of bounds
        raises ValueError naming the variable and what it accepts."""
        values: dict[str, Any] = {}
        for knob in KNOBS:
            raw = environ.get(knob.env)
            if raw is not None:
                values[knob.field] = knob.parse(knob.env, raw)
        return cls(**values)


@dataclass(frozen=True)
class Knob:
    """One row of the tuning table: a variable, the field it sets, and what it trades."""

    env: str
    field: str
    default: str
    accepts: str
    trades: str
    parse: Callable[[str, str], Any]


def _flag(env: str, raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError(f"{env}={raw}: must be 0 or 1")
    return raw == "1"


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    def parse(env: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(f"{env}={raw}: must be a whole number from {low:,} to {high:,}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str, str], float]:
    def parse(env: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low < value <= high:  # NaN fails too
            raise ValueError(
                f"{env}={raw}: must be a number of seconds above {low:g}, up to {high:g}"
            )
        return value

    return parse


def _between(low: float, high: float) -> Callable[[str, str], float]:
    def parse(env: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # NaN fails too
            raise ValueError(f"{env}={raw}: must be a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def _hash(env: str, raw: str) -> str:
    if raw not in HASHES:
        raise ValueError(f"{env}={raw}: must be one of {', '.join(HASHES)}")
    return raw


def _path(env: str, raw: str) -> str | None:
    return raw or None


ENV_CREDIT_STALL_S = "P2PSHARE_CREDIT_STALL_S"
ENV_DROP_BEHIND = "P2PSHARE_DROP_BEHIND"
ENV_LINUX_CALLS = "P2PSHARE_LINUX_CALLS"
ENV_LINK_REPORT = "P2PSHARE_LINK_REPORT"
ENV_MEDIA_STAND_IN = "P2PSHARE_MEDIA_STAND_IN"
ENV_SEND_WITHOUT_GIL = "P2PSHARE_SEND_WITHOUT_GIL"
ENV_STOCK_SCTP = "P2PSHARE_STOCK_SCTP"
ENV_UDP_SEGMENTS = "P2PSHARE_UDP_SEGMENTS"

KNOBS: tuple[Knob, ...] = (
    Knob(
        ENV_WINDOW_BYTES,
        "window_bytes",
        f"{DEFAULT_WINDOW_BYTES:,}",
        f"{MIN_WINDOW_BYTES:,} to {MAX_WINDOW_BYTES:,}",
        "Receiver: credit granted to the sender. More keeps a long or lossy path full; it is "
        "also what the receiver may have to buffer in memory.",
        _whole(MIN_WINDOW_BYTES, MAX_WINDOW_BYTES),
    ),
    Knob(
        "P2PSHARE_MESSAGE_BYTES",
        "message_bytes",
        "65,536 (whole large chunks with large packets)",
        f"{MIN_MESSAGE_BYTES:,} to {MAX_MESSAGE_BYTES:,}",
        "Sender: largest data message (the peer's limit permitting). Setting it also stops "
        "messages growing to whole large chunks. A benchmark sweep's knob.",
        _whole(MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
    ),
    Knob(
        "P2PSHARE_LARGE_MESSAGE_CHUNKS",
        "large_message_chunks",
        "0 (as many as fit)",
        f"0 to {MAX_LARGE_MESSAGE_CHUNKS}",
        "With large packets: chunks per data message. Fewer: smaller messages, more "
        "per-message work.",
        _whole(0, MAX_LARGE_MESSAGE_CHUNKS),
    ),
    Knob(
        ENV_LARGE_PACKETS,
        "large_packets",
        "1",
        "0 or 1",
        "0: keep to 1,200-byte SCTP packets even between two p2pshare peers on one network "
        "(also --no-large-packets). Large packets cut per-packet work; they are probed and "
        "dropped by themselves where the path does not carry them.",
        _flag,
    ),
    Knob(
        ENV_UDP_SEGMENTS,
        "udp_segments",
        "1",
        "0 or 1",
        "0: a large packet's datagram travels as IP fragments instead of UDP segments "
        "(GSO/GRO, Linux). Segments cost the kernels less and survive paths that drop "
        "fragments.",
        _flag,
    ),
    Knob(
        ENV_SEND_WITHOUT_GIL,
        "send_without_gil",
        "1",
        "0 or 1",
        "0: datagrams sent through uvloop (holding the GIL) instead of socket.sendto (which "
        "releases it): the reader and writer threads then wait on every send. Also turns UDP "
        "segments off.",
        _flag,
    ),
    Knob(
        ENV_STOCK_SCTP,
        "stock_sctp",
        "0",
        "0 or 1",
        "1: aiortc's SCTP as shipped (no delayed SACKs, fast paths, large packets): slower, "
        "for comparisons.",
        _flag,
    ),
    Knob(
        "P2PSHARE_SCTP_RTO_MIN_S",
        "sctp_rto_min_s",
        "1 (0.2 with large packets)",
        "above 0, up to 60",
        "Minimum SCTP retransmission timeout for every association. Lower recovers from "
        "loss sooner; too low retransmits what was only late.",
        _seconds(0.0, 60.0),
    ),
    Knob(
        ENV_CREDIT_STALL_S,
        "credit_stall_s",
        "120",
        f"above 0, up to {MAX_CREDIT_STALL_S:g}",
        "Sender: a receiver that answers pings but grants no credit for this long is "
        "stuck; the transfer fails instead of hanging.",
        _seconds(0.0, MAX_CREDIT_STALL_S),
    ),
    Knob(
        "P2PSHARE_PEER_TIMEOUT_S",
        "peer_timeout_s",
        "20",
        "4 to 600",
        "Silence from the peer for this long means the path is dead (then a reconnect "
        "starts, or the transfer fails). Lower notices a dead path sooner; too low mistakes "
        "a slow one for dead. Pings go every 2 s.",
        _between(4.0, 600.0),
    ),
    Knob(
        "P2PSHARE_CONNECT_TIMEOUT_S",
        "connect_timeout_s",
        "30",
        "2 to 600",
        "Each step of pairing (the peer's next message) and the peer connection (ICE, DTLS) "
        "must finish within this long. Higher for very slow paths; lower makes a script "
        "give up sooner where no path can work (two symmetric NATs without TURN).",
        _between(2.0, 600.0),
    ),
    Knob(
        "P2PSHARE_COMPRESS_WHEN_AHEAD",
        "compress_when_ahead",
        str(COMPRESS_WHEN_AHEAD),
        f"0 to {MAX_COMPRESS_WHEN_AHEAD}",
        "Sender: a chunk is compressed (when agreed) only with this many read-ahead pieces "
        "waiting for the channel. 0: every chunk (CPU-bound on fast paths); 999: never.",
        _whole(0, MAX_COMPRESS_WHEN_AHEAD),
    ),
    Knob(
        "P2PSHARE_COMPRESS_GROUPS",
        "compress_groups",
        "1",
        "0 or 1",
        "0: compress read by read instead of up to four reads as one frame (worse ratio, "
        "frames a fraction of a message).",
        _flag,
    ),
    Knob(
        ENV_DROP_BEHIND,
        "drop_behind",
        "1",
        "0 or 1",
        "Receiver: 0 keeps received files in the page cache instead of waiting for each "
        "written range and dropping it (sync_file_range + posix_fadvise, Linux). The final "
        "fsync still makes the data safe.",
        _flag,
    ),
    Knob(
        ENV_LINUX_CALLS,
        "linux_calls",
        "1",
        "0 or 1",
        "0: take every fallback a system without Linux's calls takes (no sync_file_range or "
        "posix_fadvise: the final fsync does the work; no UDP GSO/GRO: IP fragments; no "
        "forced socket buffers). For the portability test.",
        _flag,
    ),
    Knob(
        "P2PSHARE_HASH",
        "hash",
        "blake3",
        " or ".join(HASHES),
        "sha256: BLAKE3 neither offered nor chosen (SHA-256 is five times slower here; the "
        "page and older peers use it anyway).",
        _hash,
    ),
    Knob(
        ENV_MEDIA_STAND_IN,
        "media_stand_in",
        "1",
        "0 or 1",
        "CLI: 0 loads the real PyAV with aiortc (slower start, ~16 MiB more per side).",
        _flag,
    ),
    Knob(
        ENV_LINK_REPORT,
        "link_report",
        "unset",
        "a file path",
        "Each closed connection appends one JSON line about its packets (tests and "
        "benchmarks read it).",
        _path,
    ),
)
"""Every tuning knob, in the order of the table in docs/tuning.md."""


def tuning_table() -> str:
    """:data:`KNOBS` as the Markdown table of docs/tuning.md (a test keeps the two equal)."""
    rows = ["| Variable | Default | Accepts | What it trades |", "|---|---|---|---|"]
    for k in KNOBS:
        rows.append(f"| `{k.env}` | {k.default} | {k.accepts} | {k.trades} |")
    return "\n".join(rows) + "\n"


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
    reconnect_s: float = 120.0
    """When the path dies mid-transfer: how long to try to reach the same peer again (all
    attempts of one outage together; 0: never, fail at once). docs/protocol.md, Reconnecting."""
    server_port: int = 0
    """Sender without ``server``: the TCP port its embedded rendezvous server listens on (a
    firewall can then be opened for it in advance); 0: any free port."""
    tuning: Tuning = field(default_factory=Tuning)
    """The knobs (:class:`Tuning`); the CLI reads them from the environment."""
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
        if not 0 <= self.reconnect_s <= 3600:
            raise ValueError("reconnect_s must be 0 to 3600")
        if not 1 <= self.code_words <= 16:
            raise ValueError("code_words must be 1 to 16")
        if not 0 <= self.server_port <= 65535:
            raise ValueError("server_port must be 0 to 65535")


def tuning_from_env() -> Tuning:
    """:meth:`Tuning.from_env` of this process's environment (for the CLI)."""
    return Tuning.from_env(os.environ)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def window_bytes_from_env() -> int:
    """P2PSHARE_WINDOW_BYTES, checked against the bounds of :class:`Settings` (ValueError
    names the variable and the range), or the default."""
    raw = os.environ.get(ENV_WINDOW_BYTES)
    return DEFAULT_WINDOW_BYTES if raw is None else KNOBS[0].parse(ENV_WINDOW_BYTES, raw)
