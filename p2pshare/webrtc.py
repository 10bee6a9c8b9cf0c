"""One peer connection with one reliable data channel, over aiortc's public API.

This module and ``aiortc_patches/`` (every private touch of aiortc and aioice) are the only
ones that import aiortc. It hides aiortc's camelCase and its quirks (measured here, see
docs/performance.md):

- aiortc gathers every candidate inside ``setLocalDescription``: one offer, one answer.
- Without an explicit ``iceServers`` it asks a public STUN server: we always pass our list.
- aioice never offers 127.0.0.1; :class:`IceConfig.local_addresses` can offer exactly the
  addresses the user names, loopback included (two peers on one machine, tests).
- ``send()`` raises above the peer's max-message-size; we read it from the peer's SDP.
- aiortc waits in "checking" for a long time: :meth:`PeerLink.wait_open` has its own deadline
  and says which step failed.

Large SCTP packets (docs/performance.md, "Large packets"): the offer carries the session-level
attribute ``a=x-p2pshare-sctp-mtu:<bytes>`` (other stacks ignore unknown attributes); the
answerer turns large packets on only when the offer has it and it wants them too, and then
echoes it; the offerer turns them on only when the answer has it. The SDP travels sealed, so
neither the server nor anyone else can switch them on. Then the path decides: only a direct
path between private host addresses is probed, and large packets are used once a probe came
back (``aiortc_patches.probe_large_packets``).

Segments: when both sides can (Linux), the offer and answer also carry
``a=x-p2pshare-udp-segments``, and a large packet's datagram then travels as UDP segments (GSO
and GRO) instead of IP fragments (``aiortc_patches/sockets.py``). Both attributes are needed:
segments only ever carry large packets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
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
from p2pshare.channel import wait_either
from p2pshare.config import IceConfig, Tuning, ice_urls
from p2pshare.errors import ConnectError, P2PShareError, PeerLostError, ProtocolError

__all__ = ["IceConfig", "NetworkPath", "PeerLink", "check_ice_url", "lan_addresses"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
"""What RFC 8841 says to assume when the peer's SDP advertises no max-message-size."""
MIN_PEER_MESSAGE_BYTES = 64 * 1024
"""A peer must accept messages this large: offer batches and Have lists are sized for it."""
_SDP_REQUIRED = ("m=application ", "a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:")
PREFERRED_MESSAGE_BYTES = 64 * 1024
"""Largest data-channel message we send (the peer's limit permitting), unless large packets
make it whole large chunks or ``Tuning.message_bytes`` says otherwise (the benchmark's
message-size sweep, docs/performance.md)."""
BUFFER_HIGH_BYTES = 1024 * 1024
BUFFER_LOW_BYTES = 256 * 1024
CHANNEL_LABEL = "p2pshare"
LARGE_PACKET_ATTRIBUTE = "x-p2pshare-sctp-mtu"
SEGMENTS_ATTRIBUTE = "x-p2pshare-udp-segments"
MIN_LARGE_PACKET_BYTES = 4096
"""A peer offering less than this gains nothing over the base size: we stay small."""

_MEDIA_RE = re.compile(r"^m=(\S+) ", re.MULTILINE)
_MAX_MESSAGE_RE = re.compile(r"^a=max-message-size:(\d+)\s*$", re.MULTILINE)
_LARGE_RE = re.compile(rf"^a={LARGE_PACKET_ATTRIBUTE}:(\d{{1,9}})\s*$", re.MULTILINE)
_SEGMENTS_RE = re.compile(rf"^a={SEGMENTS_ATTRIBUTE}\s*$", re.MULTILINE)


def large_packets_wanted(tuning: Tuning) -> bool:
    """Whether this side offers large packets: not switched off, and possible on this aiortc."""
    return tuning.large_packets and aiortc_patches.large_packets_possible()


def segments_wanted(tuning: Tuning) -> bool:
    """Whether this side offers large packets' datagrams in UDP segments."""
    return large_packets_wanted(tuning) and aiortc_patches.datagram_segments_possible()


def with_segments(sdp: str) -> str:
    """``sdp`` with our segments attribute added at session level."""
    return _with_session_line(sdp, f"a={SEGMENTS_ATTRIBUTE}\r\n")


def segments_offered(sdp: str) -> bool:
    """Whether the peer's description has the segments attribute at session level."""
    return _SEGMENTS_RE.search(sdp.split("\nm=", 1)[0]) is not None


def with_large_packets(sdp: str, packet_bytes: int) -> str:
    """``sdp`` with our large-packet attribute added at session level (before the first
    media section), saying the largest SCTP packet we accept."""
    return _with_session_line(sdp, f"a={LARGE_PACKET_ATTRIBUTE}:{packet_bytes}\r\n")


def _with_session_line(sdp: str, line: str) -> str:
    at = sdp.find("\r\nm=")
    if at < 0:
        return sdp + line
    return sdp[: at + 2] + line + sdp[at + 2 :]


def large_packet_bytes(sdp: str) -> int | None:
    """The largest SCTP packet the peer's description says it accepts, or None (no attribute,
    or too small to be worth it). Only session-level lines count."""
    session = sdp.split("\nm=", 1)[0]
    match = _LARGE_RE.search(session)
    if not match:
        return None
    size = int(match.group(1))
    return size if size >= MIN_LARGE_PACKET_BYTES else None


def large_packets_refused_on(
    local_type: str, local_host: str, remote_type: str, remote_host: str
) -> str | None:
    """Why large packets are never tried on this candidate pair, or None: they are tried
    only between two host candidates on private, link-local or loopback addresses (one LAN,
    a VPN, one machine). Never over TURN (a relay's UDP channel caps datagrams), not through
    NAT (fragments are what NATs and the internet handle worst, and we cannot measure those
    paths here), and not between public addresses (the path crosses the internet)."""
    if "relay" in (local_type, remote_type):
        return "relayed path"
    if local_type != "host" or remote_type != "host":
        return f"{local_type}-{remote_type} path (NAT)"
    if not (_is_local_network(local_host) and _is_local_network(remote_host)):
        return "public host addresses"
    return None


def negotiate_large_packets(ours: int | None, remote_sdp: str) -> int | None:
    """The large packet size both sides accept, or None: ``ours`` is what we offer (None:
    we do not want them)."""
    theirs = large_packet_bytes(remote_sdp)
    if ours is None or theirs is None:
        return None
    return min(ours, theirs)


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


_NEAR = tuple(
    ipaddress.ip_network(n)
    for n in (
        *("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"),
        *("fc00::/7", "fe80::/10", "::1/128"),
    )
)
"""Addresses that never leave a site: RFC 1918, link-local, loopback, ULA (not Python's
wider ``is_private``, which counts documentation and carrier-grade ranges a NAT may use)."""


def _near(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False  # e.g. an mDNS name
    return any(ip in net for net in _NEAR if net.version == ip.version)


def path_kind(local_type: str, local_host: str, remote_type: str, remote_host: str) -> str:
    """``relay``, ``nat`` or ``lan`` for a candidate pair. A peer-reflexive candidate is an
    address learned from a connectivity check, not necessarily a NAT's: a browser hides its
    host addresses behind mDNS names, so a browser on this machine or this LAN shows up as
    peer-reflexive with its real private (or loopback) address. Such a pair is the local
    network; a server-reflexive candidate (a STUN answer) or a peer-reflexive one on any other
    address is through NAT."""
    types = {local_type, remote_type}
    if "relay" in types:
        return "relay"
    for kind, host in ((local_type, local_host), (remote_type, remote_host)):
        if kind == "srflx" or (kind == "prflx" and not _near(host)):
            return "nat"
    return "lan"


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


def _is_local_network(address: str) -> bool:
    """Private, link-local or loopback: an address that does not cross the internet."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False  # e.g. an mDNS name
    return ip.is_private or ip.is_link_local or ip.is_loopback


def check_remote_sdp(sdp: str, kind: str, preferred: int = PREFERRED_MESSAGE_BYTES) -> int:
    """Check a peer's description before aiortc parses it; returns the largest message we may
    send it. Raises ProtocolError at once for what could only fail later (the connect
    deadline): no data channel section, no DTLS fingerprint or ICE credentials, or a
    max-message-size too small for our messages; and for audio or video sections, which a
    data channel never needs. ``preferred``: the largest message we want to send."""
    missing = [field for field in _SDP_REQUIRED if field not in sdp]
    if missing:
        raise ProtocolError(
            f"the other side sent an unusable {kind}: no {missing[0].strip(' :')} line"
        )
    media = sorted({m for m in _MEDIA_RE.findall(sdp) if m != "application"})
    if media:
        # aiortc would set up decoders for them, on threads of their own; and the CLI runs
        # without PyAV (media_stand_in.py).
        raise ProtocolError(f"the other side's {kind} asks for media ({', '.join(media)})")
    match = _MAX_MESSAGE_RE.search(sdp)
    if not match:
        return DEFAULT_MAX_MESSAGE_BYTES
    advertised = int(match.group(1)[:12])
    if advertised == 0:  # "any size": we still keep to our preferred size
        return preferred
    if advertised < MIN_PEER_MESSAGE_BYTES:
        raise ProtocolError(
            f"the other side's {kind} allows messages of only {advertised} bytes "
            f"(p2pshare needs {MIN_PEER_MESSAGE_BYTES})"
        )
    return min(advertised, preferred)


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
    """One RTCPeerConnection and its data channel, with incoming frames on a queue: the
    :class:`~p2pshare.channel.Channel` a transfer runs over."""

    config: IceConfig
    tuning: Tuning = field(default_factory=Tuning)
    pc: RTCPeerConnection = field(init=False)
    channel: RTCDataChannel | None = field(init=False, default=None)
    incoming: asyncio.Queue[bytes] = field(init=False, default_factory=asyncio.Queue)
    max_message_bytes: int = field(init=False, default=DEFAULT_MAX_MESSAGE_BYTES)
    _opened: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _lost: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _drained: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _closing: bool = field(init=False, default=False)
    _violation: ProtocolError | None = field(init=False, default=None)
    large_packet_bytes: int | None = field(init=False, default=None)
    """The large SCTP packet size both sides agreed on (None: the 1,200-byte base only)."""
    _segmenting: list[Any] = field(init=False, default_factory=list)
    """Each of our sockets that sends large datagrams in UDP segments (both sides agreed)."""
    receive_buffer_bytes: int | None = field(init=False, default=None)
    _peer_message_limit: int = field(init=False, default=DEFAULT_MAX_MESSAGE_BYTES)

    def __post_init__(self) -> None:
        aiortc_patches.apply(self.tuning)
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
        self._enlarge_buffers()
        sdp = str(self.pc.localDescription.sdp)
        if large_packets_wanted(self.tuning):
            sdp = with_large_packets(sdp, aiortc_patches.LARGE_PACKET_BYTES)
        if segments_wanted(self.tuning):
            sdp = with_segments(sdp)
        return sdp

    async def accept_offer(self, sdp: str) -> str:
        await self._set_remote(sdp, "offer")
        ours = aiortc_patches.LARGE_PACKET_BYTES if large_packets_wanted(self.tuning) else None
        self._agree_large_packets(negotiate_large_packets(ours, sdp))
        with aiortc_patches.offering(self.config.local_addresses):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._enlarge_buffers()
        answer = str(self.pc.localDescription.sdp)
        if self.large_packet_bytes is not None:
            answer = with_large_packets(answer, self.large_packet_bytes)
            if segments_wanted(self.tuning) and segments_offered(sdp) and self._use_segments():
                answer = with_segments(answer)
        return answer

    async def accept_answer(self, sdp: str) -> None:
        await self._set_remote(sdp, "answer")
        ours = aiortc_patches.LARGE_PACKET_BYTES if large_packets_wanted(self.tuning) else None
        self._agree_large_packets(negotiate_large_packets(ours, sdp))
        if (
            self.large_packet_bytes is not None
            and segments_wanted(self.tuning)
            and segments_offered(sdp)
        ):
            self._use_segments()

    def _use_segments(self) -> bool:
        sctp = self.pc.sctp
        if sctp is not None:
            gatherer = sctp.transport.transport.iceGatherer
            self._segmenting = aiortc_patches.use_datagram_segments(gatherer)
            marked: Any = sctp
            marked._p2p_segmenting = self._segmenting  # the probe's answer may turn them off
        return bool(self._segmenting)

    def _agree_large_packets(self, packet_bytes: int | None) -> None:
        sctp = self.pc.sctp
        if packet_bytes is None or sctp is None:
            return
        self.large_packet_bytes = packet_bytes
        large = aiortc_patches.allow_large_packets(sctp, packet_bytes)
        user_bytes = (large.packet_bytes - aiortc_patches.SCTP_OVERHEAD_BYTES) // 4 * 4
        # Data messages are whole chunks, as many as the peer's limit allows (4 x 64,816 =
        # 259,264 bytes, or 16 x 16,204 with a peer of the previous version, within the 256 KiB
        # aiortc and browsers advertise: whole packets, no sliver at the end).
        if self.tuning.message_bytes is None:
            chunks = self.tuning.large_message_chunks or self._peer_message_limit // user_bytes
            self.max_message_bytes = min(self._peer_message_limit, max(1, chunks) * user_bytes)

    def _enlarge_buffers(self) -> None:
        sctp = self.pc.sctp
        if sctp is not None:
            gatherer = sctp.transport.transport.iceGatherer
            self.receive_buffer_bytes = aiortc_patches.enlarge_socket_buffers(gatherer)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        preferred = self.tuning.message_bytes or PREFERRED_MESSAGE_BYTES
        self.max_message_bytes = check_remote_sdp(sdp, kind, preferred)
        match = _MAX_MESSAGE_RE.search(sdp)
        advertised = int(match.group(1)[:12]) if match else DEFAULT_MAX_MESSAGE_BYTES
        self._peer_message_limit = advertised or aiortc_patches.LARGE_MESSAGE_LIMIT_BYTES
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
        await wait_either(self._opened, self._lost, timeout_s)
        if self._opened.is_set():
            self._start_large_packets()
            return
        ice = self.pc.iceConnectionState
        if ice in ("new", "checking", "failed"):
            gathered = sorted({c.type for c in self._local_candidates()})
            turn = "a TURN server" if self.config.has_turn() else "no TURN server"
            if self.config.policy == "direct":
                turn += " (not used: --direct-only)"
            advice = (
                "the networks may block it (strict NATs on both sides, or UDP blocked): a "
                "TURN server would relay the data; run p2pshare-signal with coturn and use "
                "it with --server (docs/self-hosting.md)"
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

    def _start_large_packets(self) -> None:
        """Probe for large packets where :func:`large_packets_refused_on` allows them."""
        sctp = self.pc.sctp
        if sctp is None or self.large_packet_bytes is None:
            return
        pair = aiortc_patches.nominated_pair(sctp.transport.transport)
        if pair is None:
            aiortc_patches.skip_large_packets(sctp, "the network path is unknown")
            return
        local, remote = pair
        reason = large_packets_refused_on(local.type, local.host, remote.type, remote.host)
        if reason is None:
            aiortc_patches.probe_large_packets(sctp)
        else:
            aiortc_patches.skip_large_packets(sctp, reason)

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
        kind = path_kind(local.type, local.host, remote.type, remote.host)
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

    async def receive(self) -> bytes:
        """The next message from the peer; ``b""`` once the connection is lost."""
        return await self.incoming.get()

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
            await wait_either(self._drained, self._lost)

    def packet_report(self) -> dict[str, Any]:
        """What this connection did about packet sizes (for tests and benchmarks)."""
        sctp = self.pc.sctp
        large = aiortc_patches.large_packets(sctp) if sctp is not None else None
        return {
            "offered": large_packets_wanted(self.tuning),
            "agreed_bytes": self.large_packet_bytes,
            "receive_buffer_bytes": self.receive_buffer_bytes,
            **({"large": large.report()} if large is not None else {}),
            "udp_segments": {
                "on": any(state.on for state in self._segmenting),
                "sent": sum(state.sent for state in self._segmenting),
                "received": aiortc_patches.datagram_segments(sctp.transport).received
                if sctp is not None
                else 0,
            },
        }

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            sctp = self.pc.sctp
            if sctp is not None:
                aiortc_patches.stop_large_packets(sctp)
            report_path = self.tuning.link_report
            if report_path:
                _append_line(report_path, json.dumps(self.packet_report()))
            await self.pc.close()


def _append_line(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")
