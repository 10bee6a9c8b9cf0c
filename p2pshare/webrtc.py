"""One peer connection with one reliable data channel, over aiortc's public API.

This module and ``aiortc_patches.py`` (every private touch of aiortc and aioice) are the only
ones that import aiortc. It hides aiortc's camelCase and its quirks (measured here, see
docs/performance.md):

- aiortc gathers every candidate inside ``setLocalDescription``: one offer, one answer.
- Without an explicit ``iceServers`` it asks a public STUN server: we always pass our list.
- aioice never offers 127.0.0.1; :class:`IceConfig.local_addresses` can offer exactly the
  addresses the user names, loopback included (two peers on one machine, tests).
- ``send()`` raises above the peer's max-message-size; we read it from the peer's SDP.
- aiortc waits in "checking" for a long time: :meth:`PeerLink.wait_open` has its own deadline
  and says which step failed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

from p2pshare import aiortc_patches
from p2pshare.config import IceConfig, ice_urls
from p2pshare.errors import ConnectError, P2PShareError, PeerLostError, ProtocolError

__all__ = ["IceConfig", "NetworkPath", "PeerLink", "check_ice_url", "lan_addresses"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
"""What RFC 8841 says to assume when the peer's SDP advertises no max-message-size."""
MIN_PEER_MESSAGE_BYTES = 64 * 1024
"""A peer must accept messages this large: offer batches and Have lists are sized for it."""
_SDP_REQUIRED = ("m=application ", "a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:")
PREFERRED_MESSAGE_BYTES = int(os.environ.get("P2PSHARE_MESSAGE_BYTES", 64 * 1024))
"""Largest data-channel message we send (the peer's limit permitting). The environment
variable exists for the benchmark's message-size sweep (docs/performance.md)."""
BUFFER_HIGH_BYTES = 1024 * 1024
BUFFER_LOW_BYTES = 256 * 1024
CHANNEL_LABEL = "p2pshare"

_MAX_MESSAGE_RE = re.compile(r"^a=max-message-size:(\d+)\s*$", re.MULTILINE)


def check_ice_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a STUN or TURN URL aiortc can use."""
    parse_stun_turn_uri(url)


@dataclass(frozen=True)
class NetworkPath:
    """The candidate pair ICE chose, in the user's terms."""

    kind: str
    """``lan`` (host to host), ``nat`` (through NAT: server or peer reflexive), ``relay``."""
    local: str
    remote: str
    relay: str | None = None

    def describe(self) -> str:
        if self.kind == "relay":
            return f"relayed through TURN ({self.relay})"
        if self.kind == "nat":
            return "direct, through NAT"
        return "direct, on the local network"


def _turn_rank(url: str) -> int:
    # aiortc uses only the first TURN URL it is given. TCP first: it works wherever UDP
    # does and also where UDP is blocked; the relay only carries data when no direct path
    # exists at all.
    if not url.startswith("turn"):
        return 0
    return 1 if "transport=tcp" in url else 2


def lan_addresses() -> list[str]:
    """This machine's non-loopback addresses, private IPv4 ranges first."""
    addresses = aiortc_patches.host_addresses()
    return sorted(addresses, key=lambda a: (":" in a, not _is_private_v4(a)))


def _is_private_v4(address: str) -> bool:
    return ipaddress.ip_address(address).is_private if ":" not in address else False


def check_remote_sdp(sdp: str, kind: str) -> int:
    """Check a peer's description before aiortc parses it; returns the largest message we may
    send it. Raises ProtocolError at once for what could only fail later (the connect
    deadline): no data channel section, no DTLS fingerprint or ICE credentials, or a
    max-message-size too small for our messages."""
    missing = [field for field in _SDP_REQUIRED if field not in sdp]
    if missing:
        raise ProtocolError(
            f"the other side sent an unusable {kind}: no {missing[0].strip(' :')} line"
        )
    match = _MAX_MESSAGE_RE.search(sdp)
    if not match:
        return DEFAULT_MAX_MESSAGE_BYTES
    advertised = int(match.group(1)[:12])
    if advertised == 0:  # "any size": we still keep to our preferred size
        return PREFERRED_MESSAGE_BYTES
    if advertised < MIN_PEER_MESSAGE_BYTES:
        raise ProtocolError(
            f"the other side's {kind} allows messages of only {advertised} bytes "
            f"(p2pshare needs {MIN_PEER_MESSAGE_BYTES})"
        )
    return min(advertised, PREFERRED_MESSAGE_BYTES)


def _ice_servers(config: IceConfig) -> list[RTCIceServer]:
    servers = []
    for server in config.servers:
        urls = sorted(ice_urls(server), key=_turn_rank)
        if config.policy == "direct":
            urls = [u for u in urls if not u.startswith("turn")]
        if urls:
            servers.append(
                RTCIceServer(
                    urls=urls, username=server.get("username"), credential=server.get("credential")
                )
            )
    return servers


@dataclass
class PeerLink:
    """One RTCPeerConnection and its data channel, with incoming frames on a queue."""

    config: IceConfig
    pc: RTCPeerConnection = field(init=False)
    channel: RTCDataChannel | None = field(init=False, default=None)
    incoming: asyncio.Queue[bytes] = field(init=False, default_factory=asyncio.Queue)
    max_message_bytes: int = field(init=False, default=DEFAULT_MAX_MESSAGE_BYTES)
    _opened: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _lost: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _drained: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _closing: bool = field(init=False, default=False)
    _violation: ProtocolError | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        aiortc_patches.apply()
        policy = (
            RTCIceTransportPolicy.RELAY
            if self.config.policy == "relay"
            else RTCIceTransportPolicy.ALL
        )
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=_ice_servers(self.config), iceTransportPolicy=policy)
        )
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("datachannel", self._adopt)

    # -- negotiation -----------------------------------------------------------------------

    async def create_offer(self) -> str:
        self._adopt(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        with aiortc_patches.offering(self.config.local_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_offer(self, sdp: str) -> str:
        await self._set_remote(sdp, "offer")
        with aiortc_patches.offering(self.config.local_addresses):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self._set_remote(sdp, "answer")

    async def _set_remote(self, sdp: str, kind: str) -> None:
        self.max_message_bytes = check_remote_sdp(sdp, kind)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:
            # aiortc's parser raises whatever the malformed text triggers; all of it is the
            # peer's fault, and all of it is known at once (not after the connect deadline).
            raise ProtocolError(f"the other side sent an unusable {kind}: {exc!r:.80}") from exc

    def _adopt(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            logger.warning("ignoring an extra data channel from the peer")
            channel.close()
            return
        self.channel = channel
        channel.bufferedAmountLowThreshold = BUFFER_LOW_BYTES
        channel.on("open", self._opened.set)
        channel.on("close", self._mark_lost)
        channel.on("bufferedamountlow", self._drained.set)
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._opened.set()

    def _on_message(self, frame: bytes | str) -> None:
        if isinstance(frame, str):
            frame = frame.encode("utf-8", "surrogateescape")
        if not frame:
            # Every frame of ours has a type byte; an empty one can only be a broken peer
            # (and the empty frame is the reader's "lost" signal, so it cannot be queued).
            self._violation = ProtocolError("the other side sent an empty message")
            self._mark_lost()
            return
        self.incoming.put_nowait(frame)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.debug("peer connection state: %s", state)
        if state in ("failed", "closed"):
            self._mark_lost()

    def _mark_lost(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            self.incoming.put_nowait(b"")  # wakes the reader: an empty frame means "lost"

    # -- running ---------------------------------------------------------------------------

    async def wait_open(self, timeout_s: float) -> None:
        """Wait for the data channel; on failure say whether ICE or DTLS was the problem."""
        opened = asyncio.ensure_future(self._opened.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait(
                {opened, lost}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            lost.cancel()
        if self._opened.is_set():
            return
        ice = self.pc.iceConnectionState
        if ice in ("new", "checking", "failed"):
            gathered = sorted({c.type for c in self._local_candidates()})
            turn = "a TURN server" if self.config.has_turn() else "no TURN server"
            if self.config.policy == "direct":
                turn += " (not used: --direct-only)"
            advice = (
                "the networks may block it; a TURN server would relay the data"
                if not self.config.has_turn() or self.config.policy == "direct"
                else "the TURN server may be unreachable or refused us"
            )
            raise ConnectError(
                "could not connect: no network path to the other side was found (tried "
                f"{', '.join(gathered) or 'no'} candidates, with {turn}); {advice}"
            )
        raise ConnectError(
            "could not connect: the encrypted (DTLS) handshake with the other "
            f"side did not complete (ICE state {ice})"
        )

    def path(self) -> NetworkPath | None:
        """Which path ICE nominated (None when it cannot be known)."""
        sctp = self.pc.sctp
        pair = aiortc_patches.nominated_pair(sctp.transport.transport) if sctp else None
        if pair is None:
            return None
        local, remote = pair
        types = {local.type, remote.type}
        if "relay" in types:
            relayed = local if local.type == "relay" else remote
            return NetworkPath("relay", local.type, remote.type, f"{relayed.host}:{relayed.port}")
        kind = "nat" if types & {"srflx", "prflx"} else "lan"
        return NetworkPath(kind, local.type, remote.type)

    def _local_candidates(self) -> list[Any]:
        try:
            transceiver = self.pc.sctp
            if transceiver is None:
                return []
            gatherer = transceiver.transport.transport.iceGatherer
            return list(gatherer.getLocalCandidates())
        except AttributeError:
            return []

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def lost_error(self) -> P2PShareError:
        """Why the connection ended: the peer's protocol violation, or a lost connection."""
        return self._violation or PeerLostError("the connection to the other side was lost")

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def send(self, frame: bytes) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise PeerLostError("the connection to the other side was lost")
        self.channel.send(frame)

    async def drain(self) -> None:
        """Wait while aiortc holds more than the high-water mark of unsent data."""
        channel = self.channel
        while channel is not None and channel.bufferedAmount > BUFFER_HIGH_BYTES:
            if self._lost.is_set():
                raise PeerLostError("the connection to the other side was lost")
            self._drained.clear()
            waiter = asyncio.ensure_future(self._drained.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({waiter, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                lost.cancel()

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            await self.pc.close()
