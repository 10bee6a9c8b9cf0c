"""Every private touch of aiortc and aioice, in one place, applied by an explicit call.

This package: the gate, :func:`apply`, host addresses and the nominated pair (here);
``sctp_changes`` (the SCTP throughput changes), ``large`` (large packets between p2pshare peers
and the DTLS records they need), ``sockets`` (socket buffers, sending without the GIL, and
large datagrams as UDP segments). The numbers they share are in ``constants``, what ``apply``
installed in ``state``: the parts import those two, never this package.

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

``P2PSHARE_STOCK_SCTP=1`` (``Tuning.stock_sctp``) leaves items 1-5 and large packets out, for
comparisons (the host addresses and the nominated pair below stay).

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcsctptransport import RTCSctpTransport

from p2pshare.aiortc_patches import large, sctp_changes
from p2pshare.aiortc_patches.constants import (
    LARGE_MESSAGE_LIMIT_BYTES,
    LARGE_PACKET_BYTES,
    SCTP_OVERHEAD_BYTES,
)
from p2pshare.aiortc_patches.large import (
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
from p2pshare.aiortc_patches.sockets import (
    datagram_segments_possible,
    enlarge_socket_buffers,
    use_datagram_segments,
)
from p2pshare.aiortc_patches.state import INSTALLED
from p2pshare.config import Tuning

logger = logging.getLogger(__name__)

TESTED_VERSIONS = ("1.16.0",)
"""aiortc versions these changes were written and tested against."""
TESTED_AIOICE_VERSIONS = ("0.13.0",)
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


def tested() -> bool:
    """Whether the installed aiortc is one these changes were written and tested against."""
    return aiortc.__version__ in TESTED_VERSIONS and aioice.__version__ in TESTED_AIOICE_VERSIONS


def enabled() -> bool:
    """Whether the SCTP throughput changes are active."""
    return INSTALLED.sctp


def apply(tuning: Tuning | None = None) -> bool:
    """Install every touch once (idempotent: the first call's ``tuning`` holds for the
    process); returns whether they are installed."""
    if INSTALLED.applied is not None:
        return INSTALLED.applied
    tuning = tuning or Tuning()
    if not tested():
        logger.warning(
            "aiortc %s / aioice %s are not versions p2pshare was tested with (%s / %s): "
            "running on stock aiortc, slower, without --local-address filtering",
            aiortc.__version__,
            aioice.__version__,
            ", ".join(TESTED_VERSIONS),
            ", ".join(TESTED_AIOICE_VERSIONS),
        )
        INSTALLED.applied = False
        return False
    aioice.ice.get_host_addresses = _get_host_addresses
    INSTALLED.applied = True
    INSTALLED.send_without_gil = tuning.send_without_gil
    INSTALLED.udp_segments = tuning.udp_segments
    INSTALLED.linux_calls = tuning.linux_calls
    if tuning.stock_sctp:
        logger.info("stock aiortc SCTP (P2PSHARE_STOCK_SCTP=1)")
        return True
    RTCSctpTransport._handle_data = sctp_changes._handle_data  # type: ignore[method-assign]
    RTCSctpTransport._mark_received = sctp_changes._mark_received  # type: ignore[method-assign]
    RTCSctpTransport._receive_data_chunk = sctp_changes._receive_data_chunk  # type: ignore[method-assign]
    RTCSctpTransport._receive_sack_chunk = sctp_changes._receive_sack_chunk  # type: ignore[method-assign]
    RTCSctpTransport._t3_expired = sctp_changes._t3_expired  # type: ignore[method-assign]
    RTCSctpTransport._transmit = sctp_changes._transmit  # type: ignore[method-assign]
    RTCSctpTransport._send = sctp_changes._send  # type: ignore[method-assign]
    if tuning.sctp_rto_min_s is not None:
        INSTALLED.rto_min_forced = True
        INSTALLED.rto_min_s = tuning.sctp_rto_min_s
    RTCSctpTransport._update_rto = sctp_changes._update_rto  # type: ignore[method-assign]
    RTCDtlsTransport._recv_next = large._recv_next  # type: ignore[method-assign]
    RTCDtlsTransport._write_ssl = large._write_ssl  # type: ignore[method-assign]
    RTCDtlsTransport._send_data = large._send_data  # type: ignore[method-assign]
    INSTALLED.sctp = True
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
    if addresses is not None and not INSTALLED.applied:
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
    if not INSTALLED.applied:
        return None
    try:
        pair: Any = ice_transport._connection._nominated.get(1)
        return pair.local_candidate, pair.remote_candidate
    except AttributeError:
        return None


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
