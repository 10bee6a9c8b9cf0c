"""Every private touch of aiortc and aioice, in one place, applied by an explicit call.

This package: the gate, :func:`apply`, host addresses and the nominated pair (here);
``sctp_changes`` (the SCTP throughput changes), ``large`` (large packets between p2pshare peers
and the DTLS records they need), ``sockets`` (socket buffers, sending without the GIL, and
large datagrams as UDP segments).

Nothing here runs on import: :func:`apply` is called by ``webrtc.PeerLink`` when the first peer
connection is made, and installs every change at once, or none of them, on the aiortc versions
listed in ``TESTED_VERSIONS`` (the range is pinned in pyproject.toml). On any other version
p2pshare runs on stock aiortc: slower, without ``--local-address`` filtering, and without
naming the network path. ``tests/test_aiortc_patches/`` fingerprints the source of every
upstream function replaced, wrapped or read here, so an aiortc upgrade fails loudly in CI.

The touches:

**SCTP throughput** (``RTCSctpTransport``). aiortc's SCTP does per-packet Python work (about
42 µs per packet per side here), and the receiver makes it worse in three ways; the sender in
one more. Four changes remove them:

1. **Delayed acknowledgement** (RFC 4960 section 6.2). Upstream sends a SACK for every packet
   that carried DATA. We acknowledge every second such packet, or 20 ms after the first
   unacknowledged one, and at once when a gap or a duplicate is seen (so fast retransmit and
   loss recovery are not delayed). Acknowledging every 4th or 8th packet was measured to
   collapse under 1% loss (retransmission timeouts): do not raise ``SACK_EVERY_PACKETS``.
2. **In-order TSN fast path**: the common case (the next TSN, nothing out of order) skips the
   set insert, sort and two filter passes of ``_mark_received``.
3. **No reassembly rescan after a non-final fragment**: upstream rescans the stream's whole
   reassembly list after every chunk, which is quadratic in the fragments of a message (a
   64 KiB message is ~56 chunks). A chunk appended at the end that is not a message's last
   fragment cannot complete a message, so the scan is skipped.
4. **No retransmit scan when nothing can need retransmission** (sender): upstream walks the
   whole sent queue looking for chunks marked for retransmission on every transmit (every
   SACK, every send). Chunks are only ever marked by a SACK that reports gaps or by the T3
   timer; the walk is skipped until one of those happened, and resumes skipping once a walk
   found nothing left to retransmit.

5. **Chunk size per association**: ``_send``, ``_transmit``, ``_receive_sack_chunk`` and
   ``_t3_expired`` use ``self._p2p_chunk_bytes`` where upstream uses the module constant
   ``USERDATA_MAX_LENGTH`` (chunking, burst, cwnd growth and floors), so one association can
   use large packets while another (a browser) stays at the base size.

**Large packets** (between two p2pshare peers that both offered them in the sealed SDP, see
``webrtc.py`` and docs/performance.md). :func:`allow_large_packets` marks the association:
its DTLS transport then carries an SCTP packet of up to 64,844 bytes as consecutive records of
at most 16,384 bytes in one datagram (upstream's ``_send_data`` hands a packet to one
``SSL_write``, which DTLS refuses beyond 16,384 bytes; ``_write_ssl`` reads ``bio_read(1500)``
and ``_recv_next`` decrypts with ``recv(1500)``, which split a larger record; and OpenSSL reads
a DTLS datagram into a buffer for one record, so the receiver feeds it the records one by
one). Our packets stay at the base size until :func:`probe_large_packets`
sent a HEARTBEAT padded with a PAD chunk (RFC 4820) to the large size and its HEARTBEAT ACK
came back (RFC 8899); then new chunks are cut at 64,816 bytes. Falling back (docs/
performance.md, "The policy"): two retransmission timeouts in a row with a large chunk oldest
in flight, 48 large packets lost within 30 s, or more than 3% lost since they were turned on.
Chunks not yet sent are then cut again at the base size and renumbered (their TSNs never
reached the wire); chunks already sent keep their size (SCTP cannot split a TSN), and every
large chunk sent again goes in base-size segments below SCTP, each its own DTLS record and
datagram, which the peer's DTLS layer reassembles (:func:`segment_packet`,
:func:`reassemble_segment`): no path that drops IP fragments can stall a transfer. The path is
probed again 30 s after a fall-back. These associations also use a minimum retransmission
timeout of 0.2 s instead of 1 s (``_update_rto``; :data:`LARGE_RTO_MIN_S`).

**Socket buffers**: :func:`enlarge_socket_buffers` raises every ICE socket's send and receive
buffers to 4 MiB (SO_RCVBUFFORCE as root, else up to net.core.rmem_max), and
:func:`~p2pshare.aiortc_patches.sockets.send_without_gil` sends each IPv4 host socket's
datagrams with Python's ``socket.sendto`` (which releases the GIL for the system call) instead of
uvloop's (which holds it): the kernel's work for a 64 KB datagram no longer stops our reader,
compressor and writer threads (``P2PSHARE_SEND_WITHOUT_GIL=0`` turns it off). Between two
Linux peers that both said so in the SDP (``a=x-p2pshare-udp-segments``), a large packet's
datagram leaves as UDP segments in one ``sendmsg`` (``UDP_SEGMENT``, GSO) and arrives through
``UDP_GRO``, each segment with an 8-byte header, put back together before OpenSSL sees it
(:class:`~p2pshare.aiortc_patches.sockets.DatagramSegments`): no IP fragments
(``P2PSHARE_UDP_SEGMENTS=0`` keeps them).

``P2PSHARE_STOCK_SCTP=1`` leaves items 1-5 and large packets out, for comparisons (the host
addresses and the nominated pair below stay).

**Host addresses** (``aioice.ice.get_host_addresses``). aioice never offers 127.0.0.1 and
offers every address of the machine; a connection made with ``local_addresses`` must offer
exactly those (two peers on one machine, tests in namespaces). The module-level function is
wrapped once; the choice travels in a context variable so concurrent connections do not
interfere (:func:`offering`).

**The nominated pair** (``aioice.Connection._nominated``): which candidate pair ICE chose, to
tell the user whether the path is direct or relayed (:func:`nominated_pair`).
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc import rtcsctptransport as sctp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport

logger = logging.getLogger(__name__)

TESTED_VERSIONS = ("1.16.0",)
"""aiortc versions these changes were written and tested against."""
TESTED_AIOICE_VERSIONS = ("0.13.0",)
SACK_EVERY_PACKETS = 2
SACK_DELAY_S = 0.020
ENV_STOCK = "P2PSHARE_STOCK_SCTP"

BASE_USERDATA_BYTES: int = sctp.USERDATA_MAX_LENGTH
"""User data per DATA chunk at the 1,200-byte base every WebRTC stack accepts (1,160)."""
SCTP_OVERHEAD_BYTES = sctp.SCTP_COMMON_HEADER_LENGTH + sctp.SCTP_DATA_CHUNK_HEADER_LENGTH
LARGE_PACKET_BYTES = 64_844
"""The large SCTP packet: 64,816 bytes of user data plus 28 of headers, carried in one UDP
datagram as four DTLS records (a record holds at most 16,384 bytes of plaintext; RFC 6347
allows several records per datagram): 64,844 + 4 x 37 (AES-GCM) + 8 (UDP) = 65,000 bytes, under
the 65,507 a UDP datagram can carry; 44 IP fragments on a 1,500-byte MTU. Four such chunks are
one 259,264-byte message (within the 256 KiB aiortc and browsers advertise). A peer of the
previous version offers 16,232 (one record per datagram), and the smaller offer is used."""
DTLS_PLAINTEXT_BYTES = 16_384
"""The most plaintext one DTLS record carries (RFC 6347, 2^14)."""
DTLS_DATAGRAM_READ_BYTES = 66 * 1024
"""Buffer for the records of one large datagram, read from OpenSSL's memory BIO at once."""
LARGE_MESSAGE_LIMIT_BYTES = 256 * 1024
"""What we send a peer that advertises messages of any size (max-message-size 0)."""
DTLS_RECORD_READ_BYTES = 17 * 1024
"""Buffer for one large DTLS record (plaintext at most 16,384 bytes, plus header and tag)."""
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 0.3
SMALLER_PROBE_BYTES = 16_232
"""Probed next when three probes of the agreed size were lost (RFC 8899's search, one step):
one DTLS record per datagram, 11 fragments on a 1,500-byte MTU. At 1% loss per IP packet a
64 KB probe is lost 36% of the time (three in a row: 5%), a 16 KB one 11%."""
BLACK_HOLE_T3_STRIKES = 2
"""Consecutive retransmission timeouts, with no acknowledgement between them, while a large
chunk is the oldest outstanding one: the path has stopped carrying large packets."""
LOST_LARGE_BUDGET = 12
LOST_LARGE_WINDOW_S = 30.0
"""Fall back once this many 64 KB packets were lost within the window, or as many IP fragments'
worth of smaller ones (48 of 16 KB). A receiver holds the fragments of every incomplete
datagram until it gives up on it (Linux: 30 s), within a budget (Linux:
net.ipv4.ipfrag_high_thresh, 4 MiB); beyond it the kernel drops every new fragment, which is a
black hole for large packets. 12 incomplete datagrams of 44 fragments hold about 1.3 MiB (with
the kernel's per-fragment overhead), well inside that budget."""
LOST_LARGE_RATIO = 0.03
LOST_LARGE_MIN_LOSSES = 4
"""Also fall back once more than 3% of the large packets sent were lost (after at least 4
losses): on a 1,500-byte MTU a large packet is 44 IP fragments, so 1% loss per IP packet is
~36% per large packet, and each lost one leaves fragments in the receiver's memory."""
REPROBE_AFTER_S = 30.0
"""After a fall-back, probe again this much later (RFC 8899's raise timer, shortened to the
time a Linux receiver keeps incomplete datagrams: by then their memory is free again)."""
SEGMENT_PAYLOAD_BYTES = 1100
"""A large chunk sent again goes as segments of this size, each in its own DTLS record and
datagram, which never depend on IP fragments (see :func:`_resend`)."""
RESEND_COPIES = 2
"""Each segment of a resent large packet is sent twice (all of them, then all again). SCTP
fast-retransmits a chunk once; if that copy is lost too, only the retransmission timeout
recovers it, a stall of at least LARGE_RTO_MIN_S with the window back at one packet. A 64 KB
packet is 59 segments: at 1% loss per IP packet one copy of them all arrives 55% of the time,
two copies 99.4%, better than a base-size packet's 99%. The cost is one more large packet's
bytes per large packet lost."""
_SEGMENT_MAGIC = b"\xffp2s"
"""Opens a segment's plaintext; an SCTP packet opens with its source port (5000 in WebRTC)."""
_SEGMENTS_KEPT = 256
DATAGRAM_SEGMENT_BYTES = 1_372
"""A large packet's datagram in segments (UDP GSO, see ``sockets.py``): each segment, its
8-byte header included, is a UDP datagram of this size (1,400 bytes of IPv4 packet: within a
1,500-byte Ethernet MTU, PPPoE's 1,492 and WireGuard's 1,420). A 64 KB packet's 65,000-byte
datagram is 48 of them, within the 64 segments Linux accepts in one send."""
_DATAGRAM_SEGMENT_MARKER = 0x3E
"""Opens every segment: within 20-63, which RFC 7983 gives to DTLS (so ICE hands it on), but
no DTLS content type (20-26)."""
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
LARGE_RTO_MIN_S = 0.2
"""Minimum retransmission timeout on associations between two p2pshare peers that agreed on
large packets (upstream and RFC 4960: 1 s, kept for everyone else; Linux TCP uses 0.2 s).
At 1% loss a timeout otherwise stalls a transfer for a whole second."""
ENV_RTO_MIN = "P2PSHARE_SCTP_RTO_MIN_S"
"""Benchmark knob: the minimum retransmission timeout, for every association."""
_rto_min_s: float = sctp.SCTP_RTO_MIN
_rto_min_forced = False
_PROBE_MAGIC = b"p2pshare-pmtu-probe"
_PAD_CHUNK_TYPE = 0x84  # RFC 4820; receivers that do not know it skip it
_HEARTBEAT_INFO = 1
_SEGMENTS_MERGED_PARAM = 0x7E01
"""In a HEARTBEAT ACK to a probe: the probe's UDP segments arrived merged (UDP GRO)."""

UPSTREAM_TOUCHED = (
    # replaced
    "aiortc.rtcsctptransport:RTCSctpTransport._handle_data",
    "aiortc.rtcsctptransport:RTCSctpTransport._mark_received",
    "aiortc.rtcsctptransport:RTCSctpTransport._receive_data_chunk",
    "aiortc.rtcsctptransport:RTCSctpTransport._receive_sack_chunk",
    "aiortc.rtcsctptransport:RTCSctpTransport._t3_expired",
    "aiortc.rtcsctptransport:RTCSctpTransport._transmit",
    "aiortc.rtcsctptransport:RTCSctpTransport._send",
    "aiortc.rtcdtlstransport:RTCDtlsTransport._recv_next",
    "aiortc.rtcdtlstransport:RTCDtlsTransport._write_ssl",
    "aiortc.rtcsctptransport:RTCSctpTransport._update_rto",
    "aioice.ice:get_host_addresses",
    "aioice.ice:StunProtocol.send_data",
    "aioice.ice:StunProtocol.connection_lost",
    "aioice.ice:StunProtocol.datagram_received",
    # called or read by the replacements (their contracts must not move under us)
    "aiortc.rtcsctptransport:RTCSctpTransport.__init__",
    "aiortc.rtcsctptransport:RTCSctpTransport._send_sack",
    "aiortc.rtcsctptransport:RTCSctpTransport._get_inbound_stream",
    "aiortc.rtcsctptransport:RTCSctpTransport._flight_size_increase",
    "aiortc.rtcsctptransport:RTCSctpTransport._send_chunk",
    "aiortc.rtcsctptransport:RTCSctpTransport._t3_start",
    "aiortc.rtcsctptransport:RTCSctpTransport._t3_restart",
    "aiortc.rtcsctptransport:RTCSctpTransport._reset_deferred_streams",
    "aiortc.rtcsctptransport:RTCSctpTransport._receive_chunk",
    "aiortc.rtcsctptransport:InboundStream.add_chunk",
    "aiortc.rtcsctptransport:InboundStream.pop_messages",
    "aiortc.rtcicetransport:RTCIceTransport.__init__",
    "aioice.ice:Connection.__init__",
    "aioice.ice:Connection.check_complete",
    "aiortc.rtcsctptransport:RTCSctpTransport._update_advanced_peer_ack_point",
    "aiortc.rtcsctptransport:RTCSctpTransport._maybe_abandon",
    "aiortc.rtcsctptransport:RTCSctpTransport._data_channel_flush",
    "aiortc.rtcsctptransport:RTCSctpTransport._flight_size_decrease",
    "aiortc.rtcsctptransport:RTCSctpTransport._t3_cancel",
    "aiortc.rtcsctptransport:Chunk.__bytes__",
    "aiortc.rtcsctptransport:serialize_packet",
    "aiortc.rtcsctptransport:parse_packet",
    "aiortc.rtcdtlstransport:RTCDtlsTransport.__init__",
    "aiortc.rtcdtlstransport:RTCDtlsTransport._send_data",
    "aiortc.rtcdtlstransport:RTCDtlsTransport.start",
    "aiortc.rtcicetransport:RTCIceGatherer.__init__",
    "aioice.ice:StunProtocol.connection_made",
)
"""Every upstream function these changes replace or depend on, as ``module:qualname``; the
test suite fingerprints each one's source for every version in ``TESTED_VERSIONS``."""

_applied: bool | None = None
"""None: :func:`apply` not called yet; then whether the touches are installed."""
_sctp_applied = False


def tested() -> bool:
    """Whether the installed aiortc is one these changes were written and tested against."""
    return aiortc.__version__ in TESTED_VERSIONS and aioice.__version__ in TESTED_AIOICE_VERSIONS


def enabled() -> bool:
    """Whether the SCTP throughput changes are active."""
    return _sctp_applied


def apply() -> bool:
    """Install every touch once (idempotent); returns whether they are installed."""
    global _applied, _sctp_applied, _rto_min_s, _rto_min_forced
    if _applied is not None:
        return _applied
    if not tested():
        logger.warning(
            "aiortc %s / aioice %s are not versions p2pshare was tested with (%s / %s): "
            "running on stock aiortc, slower, without --local-address filtering",
            aiortc.__version__,
            aioice.__version__,
            ", ".join(TESTED_VERSIONS),
            ", ".join(TESTED_AIOICE_VERSIONS),
        )
        _applied = False
        return False
    from p2pshare.aiortc_patches import large, sctp_changes

    aioice.ice.get_host_addresses = _get_host_addresses
    _applied = True
    if os.environ.get(ENV_STOCK) == "1":
        logger.info("stock aiortc SCTP (%s=1)", ENV_STOCK)
        return True
    RTCSctpTransport._handle_data = sctp_changes._handle_data  # type: ignore[method-assign]
    RTCSctpTransport._mark_received = sctp_changes._mark_received  # type: ignore[method-assign]
    RTCSctpTransport._receive_data_chunk = sctp_changes._receive_data_chunk  # type: ignore[method-assign]
    RTCSctpTransport._receive_sack_chunk = sctp_changes._receive_sack_chunk  # type: ignore[method-assign]
    RTCSctpTransport._t3_expired = sctp_changes._t3_expired  # type: ignore[method-assign]
    RTCSctpTransport._transmit = sctp_changes._transmit  # type: ignore[method-assign]
    RTCSctpTransport._send = sctp_changes._send  # type: ignore[method-assign]
    _rto_min_forced = ENV_RTO_MIN in os.environ
    _rto_min_s = float(os.environ.get(ENV_RTO_MIN, sctp.SCTP_RTO_MIN))
    RTCSctpTransport._update_rto = sctp_changes._update_rto  # type: ignore[method-assign]
    RTCDtlsTransport._recv_next = large._recv_next  # type: ignore[method-assign]
    RTCDtlsTransport._write_ssl = large._write_ssl  # type: ignore[method-assign]
    RTCDtlsTransport._send_data = large._send_data  # type: ignore[method-assign]
    _sctp_applied = True
    return True


# -- host addresses ------------------------------------------------------------------------

_local_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "p2pshare_local_addresses", default=None
)
_stock_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _local_addresses.get()
    if chosen is None:
        addresses: list[str] = _stock_get_host_addresses(use_ipv4, use_ipv6)
        return addresses
    return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def host_addresses() -> list[str]:
    """The machine's addresses as stock aioice sees them (no loopback)."""
    addresses: list[str] = _stock_get_host_addresses(True, True)
    return addresses


@contextmanager
def offering(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Within this block, candidates are gathered on exactly ``addresses`` (None: aioice's
    choice). Without :func:`apply` in force the choice cannot be honoured and is ignored."""
    if addresses is not None and not _applied:
        logger.warning("cannot restrict local addresses on this aiortc version; using all")
    token = _local_addresses.set(addresses)
    try:
        yield
    finally:
        _local_addresses.reset(token)


# -- the nominated pair --------------------------------------------------------------------


def nominated_pair(ice_transport: Any) -> tuple[Any, Any] | None:
    """(local, remote) candidates of the pair ICE nominated for component 1, or None when
    aioice's internals are not as tested or nothing is nominated yet."""
    if not _applied:
        return None
    try:
        pair: Any = ice_transport._connection._nominated.get(1)
        return pair.local_candidate, pair.remote_candidate
    except AttributeError:
        return None


# The parts, after everything they read from here is defined (they import this package).
from p2pshare.aiortc_patches.large import (  # noqa: E402
    LargePackets,
    allow_large_packets,
    datagram_segments,
    large_packets,
    large_packets_possible,
    probe_large_packets,
    reassemble_segment,
    rechunk_unsent,
    segment_packet,
    skip_large_packets,
    stop_large_packets,
)
from p2pshare.aiortc_patches.sockets import (  # noqa: E402
    datagram_segments_possible,
    enlarge_socket_buffers,
    use_datagram_segments,
)

__all__ = [
    "LARGE_MESSAGE_LIMIT_BYTES",
    "LARGE_PACKET_BYTES",
    "SCTP_OVERHEAD_BYTES",
    "TESTED_AIOICE_VERSIONS",
    "TESTED_VERSIONS",
    "UPSTREAM_TOUCHED",
    "LargePackets",
    "allow_large_packets",
    "apply",
    "datagram_segments",
    "datagram_segments_possible",
    "enabled",
    "enlarge_socket_buffers",
    "host_addresses",
    "large_packets",
    "large_packets_possible",
    "nominated_pair",
    "offering",
    "probe_large_packets",
    "reassemble_segment",
    "rechunk_unsent",
    "segment_packet",
    "skip_large_packets",
    "stop_large_packets",
    "tested",
    "use_datagram_segments",
]
