"""Every private touch of aiortc and aioice, in one place, applied by an explicit call.

Nothing here runs on import: :func:`apply` is called by ``webrtc.PeerLink`` when the first peer
connection is made, and installs every change at once, or none of them, on the aiortc versions
listed in ``TESTED_VERSIONS`` (the range is pinned in pyproject.toml). On any other version
p2pshare runs on stock aiortc: slower, without ``--local-address`` filtering, and without
naming the network path. ``tests/test_aiortc_patches.py`` fingerprints the source of every
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
its DTLS transport then reads and writes whole records of up to 16 KiB (upstream's
``_write_ssl`` reads ``bio_read(1500)`` and ``_recv_next`` decrypts with ``recv(1500)``, which
split a larger record). Our packets stay at the base size until :func:`probe_large_packets`
sent a HEARTBEAT padded with a PAD chunk (RFC 4820) to the large size and its HEARTBEAT ACK
came back (RFC 8899); then new chunks are cut at 16,204 bytes. Three retransmission timeouts
in a row with a large chunk oldest in flight mean a black hole: chunks not yet sent are cut
again at the base size and renumbered (their TSNs never reached the wire); chunks already
sent keep their size (SCTP cannot split a TSN) and are retransmitted as they are.

**Socket buffers**: :func:`enlarge_socket_buffers` raises every ICE socket's send and receive
buffers to 4 MiB (SO_RCVBUFFORCE as root, else up to net.core.rmem_max).

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

import asyncio
import contextvars
import logging
import math
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc import rtcsctptransport as sctp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc.utils import uint16_add, uint32_gt, uint32_gte
from google_crc32c import value as crc32c
from OpenSSL import SSL

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
LARGE_PACKET_BYTES = 16_232
"""The large SCTP packet: 16,204 bytes of user data plus 28 of headers. DTLS (AES-GCM: 37
bytes) and UDP (8) make it 16,277 bytes of IPv4 payload, which is exactly 11 fragments on a
1,500-byte MTU (11 x 1,480 = 16,280), and well under DTLS's 16,384-byte plaintext cap."""
DTLS_RECORD_READ_BYTES = 17 * 1024
"""Buffer for one large DTLS record (plaintext at most 16,384 bytes, plus header and tag)."""
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 0.3
BLACK_HOLE_T3_STRIKES = 2
"""Consecutive retransmission timeouts, with no acknowledgement between them, while a large
chunk is the oldest outstanding one: the path has stopped carrying large packets."""
LOST_LARGE_BUDGET = 48
LOST_LARGE_WINDOW_S = 30.0
"""Fall back once this many large packets were lost within the window. A receiver holds the
fragments of every incomplete datagram until it gives up on it (Linux: 30 s), within a budget
(Linux: net.ipv4.ipfrag_high_thresh, 4 MiB); beyond it the kernel drops every new fragment,
which is a black hole for large packets. 48 incomplete datagrams of 11 fragments hold about
1.3 MiB, well inside that budget."""
LOST_LARGE_RATIO = 0.03
LOST_LARGE_MIN_LOSSES = 8
"""Also fall back once more than 3% of the large packets sent were lost (after at least 8
losses): on a 1,500-byte MTU a large packet is 11 IP fragments, so 1% loss per IP packet is
~11% per large packet, and each lost one leaves fragments in the receiver's memory."""
REPROBE_AFTER_S = 30.0
"""After a fall-back, probe again this much later (RFC 8899's raise timer, shortened to the
time a Linux receiver keeps incomplete datagrams: by then their memory is free again)."""
SEGMENT_PAYLOAD_BYTES = 1100
"""A large chunk sent again goes as segments of this size, each in its own DTLS record and
datagram, which never depend on IP fragments (see :func:`_resend`)."""
_SEGMENT_MAGIC = b"\xffp2s"
"""Opens a segment's plaintext; an SCTP packet opens with its source port (5000 in WebRTC)."""
_SEGMENTS_KEPT = 256
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
ENV_RTO_MIN = "P2PSHARE_SCTP_RTO_MIN_S"
"""Benchmark knob: the minimum retransmission timeout (upstream and RFC 4960: 1 s)."""
_rto_min_s: float = sctp.SCTP_RTO_MIN
_PROBE_MAGIC = b"p2pshare-pmtu-probe"
_PAD_CHUNK_TYPE = 0x84  # RFC 4820; receivers that do not know it skip it
_HEARTBEAT_INFO = 1

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
    "aiortc.rtcsctptransport:RTCSctpTransport._update_rto",  # only with ENV_RTO_MIN set
    "aioice.ice:get_host_addresses",
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
    global _applied, _sctp_applied, _rto_min_s
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
    aioice.ice.get_host_addresses = _get_host_addresses
    _applied = True
    if os.environ.get(ENV_STOCK) == "1":
        logger.info("stock aiortc SCTP (%s=1)", ENV_STOCK)
        return True
    RTCSctpTransport._handle_data = _handle_data  # type: ignore[method-assign]
    RTCSctpTransport._mark_received = _mark_received  # type: ignore[method-assign]
    RTCSctpTransport._receive_data_chunk = _receive_data_chunk  # type: ignore[method-assign]
    RTCSctpTransport._receive_sack_chunk = _receive_sack_chunk  # type: ignore[method-assign]
    RTCSctpTransport._t3_expired = _t3_expired  # type: ignore[method-assign]
    RTCSctpTransport._transmit = _transmit  # type: ignore[method-assign]
    RTCSctpTransport._send = _send  # type: ignore[method-assign]
    _rto_min_s = float(os.environ.get(ENV_RTO_MIN, sctp.SCTP_RTO_MIN))
    if _rto_min_s != sctp.SCTP_RTO_MIN:
        RTCSctpTransport._update_rto = _update_rto  # type: ignore[method-assign]
    RTCDtlsTransport._recv_next = _recv_next  # type: ignore[method-assign]
    RTCDtlsTransport._write_ssl = _write_ssl  # type: ignore[method-assign]
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


_stock_mark_received = RTCSctpTransport._mark_received


def _mark_received(self: Any, tsn: int) -> bool:
    if not self._sack_misordered and tsn == sctp.tsn_plus_one(self._last_received_tsn):
        self._last_received_tsn = tsn
        if self._sack_duplicates:
            self._sack_duplicates = [x for x in self._sack_duplicates if uint32_gt(x, tsn)]
        return False
    result: bool = _stock_mark_received(self, tsn)
    return result


async def _receive_data_chunk(self: Any, chunk: Any) -> None:
    # aiortc 1.16.0's _receive_data_chunk, with the reassembly scan skipped when it cannot
    # find a complete message.
    self._sack_needed = True
    if self._mark_received(chunk.tsn):
        return
    inbound_stream = self._get_inbound_stream(chunk.stream_id)
    reassembly = inbound_stream.reassembly
    appended = not reassembly or uint32_gt(chunk.tsn, reassembly[-1].tsn)
    inbound_stream.add_chunk(chunk)
    self._advertised_rwnd -= len(chunk.user_data)
    if not appended or chunk.flags & sctp.SCTP_DATA_LAST_FRAG:
        for message in inbound_stream.pop_messages():
            self._advertised_rwnd += len(message[2])
            await self._receive(*message)
    await self._reset_deferred_streams()


async def _handle_data(self: Any, data: bytes) -> None:
    # aiortc 1.16.0's _handle_data, with the SACK decision replaced (see the module docstring).
    try:
        _, _, verification_tag, chunks = sctp.parse_packet(data)
    except ValueError:
        return
    init_chunk = len([x for x in chunks if isinstance(x, sctp.InitChunk)])
    if init_chunk:
        assert len(chunks) == 1
        expected_tag = 0
    else:
        expected_tag = self._local_verification_tag
    if verification_tag != expected_tag:
        return
    for chunk in chunks:
        if chunk.__class__ is sctp.HeartbeatAckChunk:
            _heartbeat_acked(self, chunk)
        else:
            await self._receive_chunk(chunk)
    if not self._sack_needed:
        return
    only_data = all(isinstance(c, sctp.DataChunk) for c in chunks)
    pending = getattr(self, "_p2p_unacked_packets", 0) + 1
    if (
        not only_data
        or self._sack_misordered
        or self._sack_duplicates
        or pending >= SACK_EVERY_PACKETS
        or self._association_state != RTCSctpTransport.State.ESTABLISHED
    ):
        await _sack_now(self)
        return
    self._p2p_unacked_packets = pending
    if getattr(self, "_p2p_sack_timer", None) is None:
        loop = asyncio.get_running_loop()
        self._p2p_sack_timer = loop.call_later(SACK_DELAY_S, _on_sack_timer, self)


async def _sack_now(self: Any) -> None:
    self._p2p_unacked_packets = 0
    timer = getattr(self, "_p2p_sack_timer", None)
    if timer is not None:
        timer.cancel()
        self._p2p_sack_timer = None
    await self._send_sack()


def _on_sack_timer(self: Any) -> None:
    self._p2p_sack_timer = None
    if self._sack_needed and self._association_state == RTCSctpTransport.State.ESTABLISHED:
        task = asyncio.ensure_future(_sack_now(self))
        # Keep a reference until it ran (the loop only holds weak references to tasks).
        self._p2p_sack_task = task


def _mtu(self: Any) -> int:
    """User data per DATA chunk on this association (the unit of cwnd and burst sizes)."""
    size: int = getattr(self, "_p2p_chunk_bytes", BASE_USERDATA_BYTES)
    return size


async def _receive_sack_chunk(self: Any, chunk: Any) -> None:
    # aiortc 1.16.0's _receive_sack_chunk, with the chunk size per association (not the module
    # constant), the retransmit-walk flag, and the black-hole strike count reset on progress.
    if uint32_gt(self._last_sacked_tsn, chunk.cumulative_tsn):
        return
    if chunk.gaps:
        self._p2p_may_retransmit = True  # the strike loop may mark chunks
    mtu = _mtu(self)
    received_time = time.time()
    self._last_sacked_tsn = chunk.cumulative_tsn
    cwnd_fully_utilized = self._flight_size >= self._cwnd
    done = 0
    done_bytes = 0
    while self._sent_queue and uint32_gte(self._last_sacked_tsn, self._sent_queue[0].tsn):
        schunk = self._sent_queue.popleft()
        done += 1
        if not schunk._acked:
            done_bytes += schunk._book_size
        self._flight_size_decrease(schunk)
        if done == 1 and schunk._sent_count == 1:
            self._update_rto(received_time - schunk._sent_time)
    if done:
        large = getattr(self, "_p2p_large", None)
        if large is not None:
            large.t3_strikes = 0
    loss = False
    if chunk.gaps:
        seen = set()
        for gap in chunk.gaps:
            for pos in range(gap[0], gap[1] + 1):
                highest_seen_tsn = (chunk.cumulative_tsn + pos) % sctp.SCTP_TSN_MODULO
                seen.add(highest_seen_tsn)
        highest_newly_acked = chunk.cumulative_tsn
        for schunk in self._sent_queue:
            if uint32_gt(schunk.tsn, highest_seen_tsn):
                break
            if schunk.tsn in seen:
                if not schunk._acked:
                    done_bytes += schunk._book_size
                    schunk._acked = True
                    highest_newly_acked = schunk.tsn
                self._flight_size_decrease(schunk)
        for schunk in self._sent_queue:
            if uint32_gt(schunk.tsn, highest_newly_acked):
                break
            if schunk.tsn not in seen:
                schunk._misses += 1
                if schunk._misses == 3:
                    schunk._misses = 0
                    if not self._maybe_abandon(schunk):
                        schunk._retransmit = True
                    schunk._acked = False
                    self._flight_size_decrease(schunk)
                    loss = True
    if self._fast_recovery_exit is None:
        if done and cwnd_fully_utilized:
            if self._cwnd <= self._ssthresh:
                self._cwnd += min(done_bytes, mtu)
            else:
                self._partial_bytes_acked += done_bytes
                if self._partial_bytes_acked >= self._cwnd:
                    self._partial_bytes_acked -= self._cwnd
                    self._cwnd += mtu
        if loss:
            self._ssthresh = max(self._cwnd // 2, 4 * mtu)
            self._cwnd = self._ssthresh
            self._partial_bytes_acked = 0
            self._fast_recovery_exit = self._sent_queue[-1].tsn
            self._fast_recovery_transmit = True
    elif uint32_gte(chunk.cumulative_tsn, self._fast_recovery_exit):
        self._fast_recovery_exit = None
    if not self._sent_queue:
        self._t3_cancel()
    elif done:
        self._t3_restart()
    self._update_advanced_peer_ack_point()
    await self._data_channel_flush()
    await self._transmit()


def _t3_expired(self: Any) -> None:
    # aiortc 1.16.0's _t3_expired, with the chunk size per association and black-hole
    # detection for large packets (see "Large packets" in the module docstring).
    self._t3_handle = None
    self._p2p_may_retransmit = True  # marks every outstanding chunk
    large: LargePackets | None = getattr(self, "_p2p_large", None)
    if large is not None and large.state == "on":
        large.t3_strikes += 1
        oldest = self._sent_queue[0] if self._sent_queue else None
        if (
            large.t3_strikes >= BLACK_HOLE_T3_STRIKES
            and oldest is not None
            and oldest._book_size > BASE_USERDATA_BYTES
        ):
            _fall_back(self, large, "black hole: large packets stopped arriving")
    for chunk in self._sent_queue:
        if not self._maybe_abandon(chunk):
            chunk._retransmit = True
        self._flight_size_decrease(chunk)
    self._update_advanced_peer_ack_point()
    self._fast_recovery_exit = None
    self._partial_bytes_acked = 0
    mtu = _mtu(self)
    self._ssthresh = max(self._cwnd // 2, 4 * mtu)
    self._cwnd = mtu
    self._p2p_t3_task = asyncio.ensure_future(self._transmit())


async def _send(
    self: Any,
    stream_id: int,
    pp_id: int,
    user_data: bytes,
    expiry: float | None = None,
    max_retransmits: int | None = None,
    ordered: bool = True,
) -> None:
    # aiortc 1.16.0's _send, cutting chunks at this association's size.
    stream_seq = self._outbound_stream_seq.get(stream_id, 0) if ordered else 0
    size = _mtu(self)
    fragments = math.ceil(len(user_data) / size)
    pos = 0
    for fragment in range(0, fragments):
        chunk = sctp.DataChunk()
        chunk.flags = 0
        if not ordered:
            chunk.flags = sctp.SCTP_DATA_UNORDERED
        if fragment == 0:
            chunk.flags |= sctp.SCTP_DATA_FIRST_FRAG
        if fragment == fragments - 1:
            chunk.flags |= sctp.SCTP_DATA_LAST_FRAG
        chunk.tsn = self._local_tsn
        chunk.stream_id = stream_id
        chunk.stream_seq = stream_seq
        chunk.protocol = pp_id
        chunk.user_data = user_data[pos : pos + size]
        _init_chunk_counters(chunk, expiry, max_retransmits)
        pos += size
        self._local_tsn = sctp.tsn_plus_one(self._local_tsn)
        self._outbound_queue.append(chunk)
    if ordered:
        self._outbound_stream_seq[stream_id] = uint16_add(stream_seq, 1)
    if size > BASE_USERDATA_BYTES:
        self._p2p_large.large_cut += fragments
    await self._transmit()


def _update_rto(self: Any, R: float) -> None:
    # aiortc 1.16.0's _update_rto with the minimum from ENV_RTO_MIN (a benchmark knob).
    if self._srtt is None:
        self._rttvar = R / 2
        self._srtt = R
    else:
        self._rttvar = (1 - sctp.SCTP_RTO_BETA) * self._rttvar + sctp.SCTP_RTO_BETA * abs(
            self._srtt - R
        )
        self._srtt = (1 - sctp.SCTP_RTO_ALPHA) * self._srtt + sctp.SCTP_RTO_ALPHA * R
    self._rto = max(_rto_min_s, min(self._srtt + 4 * self._rttvar, sctp.SCTP_RTO_MAX))


def _init_chunk_counters(chunk: Any, expiry: float | None, max_retransmits: int | None) -> None:
    chunk._abandoned = False
    chunk._acked = False
    chunk._book_size = len(chunk.user_data)
    chunk._expiry = expiry
    chunk._in_flight = False
    chunk._max_retransmits = max_retransmits
    chunk._misses = 0
    chunk._retransmit = False
    chunk._sent_count = 0
    chunk._sent_time = None


async def _transmit(self: Any) -> None:
    # aiortc 1.16.0's _transmit, with the retransmit walk guarded (see the module docstring).
    if self._forward_tsn_chunk is not None:
        await self._send_chunk(self._forward_tsn_chunk)
        self._forward_tsn_chunk = None
        if not self._t3_handle:
            self._t3_start()
    mtu = _mtu(self)
    burst_size = 2 * mtu if self._fast_recovery_exit is not None else 4 * mtu
    cwnd = min(self._flight_size + burst_size, self._cwnd)
    if getattr(self, "_p2p_may_retransmit", True):
        retransmit_earliest = True
        for chunk in self._sent_queue:
            if chunk._retransmit:
                if self._fast_recovery_transmit:
                    self._fast_recovery_transmit = False
                elif self._flight_size >= cwnd:
                    return  # still marked chunks: keep walking next time
                self._flight_size_increase(chunk)
                chunk._misses = 0
                chunk._retransmit = False
                chunk._sent_count += 1
                await _resend(self, chunk)
                if retransmit_earliest:
                    self._t3_restart()
            retransmit_earliest = False
        self._p2p_may_retransmit = False
    while self._outbound_queue and self._flight_size < cwnd:
        chunk = self._outbound_queue.popleft()
        self._sent_queue.append(chunk)
        self._flight_size_increase(chunk)
        chunk._sent_count += 1
        chunk._sent_time = time.time()
        await self._send_chunk(chunk)
        if not self._t3_handle:
            self._t3_start()


# -- large packets -------------------------------------------------------------------------


@dataclass
class LargePackets:
    """Large SCTP packets on one association, between two p2pshare peers that both offered
    them in the sealed SDP. ``state`` moves ``negotiated`` -> ``probing`` -> ``on``, or to
    ``refused`` (no probe came back), ``skipped`` (a path we never try: NAT, TURN), or from
    ``on`` to ``fallback`` (a black hole during the transfer)."""

    packet_bytes: int
    state: str = "negotiated"
    reason: str = ""
    probes_sent: int = 0
    t3_strikes: int = 0
    rechunked: int = 0
    """Queued, never-sent chunks cut again at the base size by a fall-back."""
    large_cut: int = 0
    """Large chunks cut (each is sent at least once)."""
    large_resent: int = 0
    """Large chunks sent again (each one in segments)."""
    fallbacks: int = 0
    on_cut: int = 0
    on_resent: int = 0
    """``large_cut`` and ``large_resent`` when large packets were last turned on."""
    losses: deque[float] = field(default_factory=deque)
    segment_id: int = 0
    probe_nonce: bytes = b""
    probe_acked: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "packet_bytes": self.packet_bytes,
            "reason": self.reason,
            "probes_sent": self.probes_sent,
            "rechunked": self.rechunked,
            "large_cut": self.large_cut,
            "large_resent": self.large_resent,
            "fallbacks": self.fallbacks,
        }


def large_packets_possible() -> bool:
    """Whether this process can send and receive large packets (the changes are installed)."""
    return _sctp_applied


def allow_large_packets(sctp_transport: Any, packet_bytes: int) -> LargePackets:
    """Both sides offered large packets: from now on accept large DTLS records on this
    association (the peer may send them as soon as its probe is answered). Our own packets
    stay at the base size until :func:`probe_large_packets` confirms the path carries them."""
    large = LargePackets(packet_bytes=min(packet_bytes, LARGE_PACKET_BYTES))
    sctp_transport._p2p_large = large
    sctp_transport.transport._p2p_large_records = True
    return large


def large_packets(sctp_transport: Any) -> LargePackets | None:
    large: LargePackets | None = getattr(sctp_transport, "_p2p_large", None)
    return large


def skip_large_packets(sctp_transport: Any, reason: str) -> None:
    large = large_packets(sctp_transport)
    if large is not None and large.state == "negotiated":
        large.state, large.reason = "skipped", reason
        logger.info("large SCTP packets not tried: %s", reason)


def probe_large_packets(sctp_transport: Any) -> None:
    """Start probing (in the background) whether the path carries large packets."""
    large = large_packets(sctp_transport)
    if large is None or large.state != "negotiated":
        return
    large.state = "probing"
    large.task = asyncio.ensure_future(_probe(sctp_transport, large))


def stop_large_packets(sctp_transport: Any) -> None:
    large = large_packets(sctp_transport)
    if large is not None and large.task is not None:
        large.task.cancel()
    reprobe = getattr(sctp_transport, "_p2p_reprobe", None)
    if reprobe is not None:
        reprobe.cancel()


async def _probe(transport: Any, large: LargePackets) -> None:
    # RFC 8899 section 4.1: a HEARTBEAT padded to the probed size; the HEARTBEAT ACK echoes
    # only the (small) heartbeat information, so only the probed direction carries the size.
    for _ in range(PROBE_ATTEMPTS):
        large.probe_nonce = os.urandom(8)
        large.probe_acked.clear()
        try:
            await transport.transport._send_data(_probe_packet(transport, large))
        except ConnectionError:
            return
        large.probes_sent += 1
        try:
            await asyncio.wait_for(large.probe_acked.wait(), PROBE_TIMEOUT_S)
        except TimeoutError:
            continue
        _use_large(transport, large)
        return
    large.state = "refused"
    large.reason = f"{PROBE_ATTEMPTS} probes of {large.packet_bytes} bytes were lost"
    logger.info("large SCTP packets refused: %s", large.reason)


def _probe_packet(transport: Any, large: LargePackets) -> bytes:
    info = _PROBE_MAGIC + large.probe_nonce
    heartbeat = sctp.HeartbeatChunk()
    heartbeat.params.append((_HEARTBEAT_INFO, info))
    body = bytes(heartbeat)
    pad_length = large.packet_bytes - sctp.SCTP_COMMON_HEADER_LENGTH - len(body)
    pad = struct.pack("!BBH", _PAD_CHUNK_TYPE, 0, pad_length) + bytes(pad_length - 4)
    header = struct.pack(
        "!HHL", transport._local_port, transport._remote_port, transport._remote_verification_tag
    )
    data = body + pad
    checksum = crc32c(header + b"\x00\x00\x00\x00" + data)
    return header + struct.pack("<L", checksum) + data


def _heartbeat_acked(self: Any, chunk: Any) -> None:
    large = large_packets(self)
    if large is None or large.state != "probing":
        return
    if (_HEARTBEAT_INFO, _PROBE_MAGIC + large.probe_nonce) in chunk.params:
        large.probe_acked.set()


def _use_large(transport: Any, large: LargePackets) -> None:
    size = (large.packet_bytes - SCTP_OVERHEAD_BYTES) // 4 * 4
    transport._p2p_chunk_bytes = size
    transport._cwnd = max(transport._cwnd, 3 * size)
    large.on_cut, large.on_resent = large.large_cut, large.large_resent
    large.state = "on"
    logger.info("large SCTP packets on: %d bytes", large.packet_bytes)


def _fall_back(transport: Any, large: LargePackets, reason: str) -> None:
    """Back to the base size: chunks not sent yet are cut again (their TSNs were never on the
    wire, so they are renumbered); chunks already sent keep their size and TSN, as SCTP
    requires, and are retransmitted as they are."""
    transport._p2p_chunk_bytes = BASE_USERDATA_BYTES
    large.state, large.reason = "fallback", reason
    large.fallbacks += 1
    large.rechunked += _rechunk_unsent(transport, BASE_USERDATA_BYTES)
    logger.info("large SCTP packets off: %s; probing again in %g s", reason, REPROBE_AFTER_S)
    loop = asyncio.get_running_loop()
    transport._p2p_reprobe = loop.call_later(REPROBE_AFTER_S, _reprobe, transport, large)


def _reprobe(transport: Any, large: LargePackets) -> None:
    if (
        large.state == "fallback"
        and transport._association_state == RTCSctpTransport.State.ESTABLISHED
    ):
        large.state = "negotiated"
        probe_large_packets(transport)


def _rechunk_unsent(transport: Any, size: int) -> int:
    """Cut the never-sent chunks of the outbound queue to ``size``; returns how many were cut.

    The fragments of one message keep consecutive TSNs; the first piece of a chunk keeps its
    FIRST flag, the last its LAST flag."""
    queue = transport._outbound_queue
    if not queue or all(len(c.user_data) <= size for c in queue):
        return 0
    tsn = queue[0].tsn
    cut = 0
    rebuilt: deque[Any] = deque()
    for chunk in queue:
        data = chunk.user_data
        pieces = max(1, math.ceil(len(data) / size))
        cut += pieces > 1
        for index in range(pieces):
            piece = sctp.DataChunk()
            piece.flags = chunk.flags & sctp.SCTP_DATA_UNORDERED
            if index == 0:
                piece.flags |= chunk.flags & sctp.SCTP_DATA_FIRST_FRAG
            if index == pieces - 1:
                piece.flags |= chunk.flags & sctp.SCTP_DATA_LAST_FRAG
            piece.tsn = tsn
            piece.stream_id = chunk.stream_id
            piece.stream_seq = chunk.stream_seq
            piece.protocol = chunk.protocol
            piece.user_data = data[index * size : (index + 1) * size]
            _init_chunk_counters(piece, chunk._expiry, chunk._max_retransmits)
            rebuilt.append(piece)
            tsn = sctp.tsn_plus_one(tsn)
    transport._outbound_queue = rebuilt
    transport._local_tsn = tsn
    return cut


async def _resend(self: Any, chunk: Any) -> None:
    """Send a chunk again. A large one goes in segments of the base size, each its own DTLS
    record and datagram, so that a path (or a receiver out of reassembly memory) that drops
    IP fragments cannot stall the transfer: SCTP cannot cut a chunk that is on the wire
    (its TSN is fixed), but we can carry its packet in pieces below SCTP, between two
    p2pshare peers that agreed on large packets."""
    large: LargePackets | None = getattr(self, "_p2p_large", None)
    if large is None or chunk._book_size <= BASE_USERDATA_BYTES:
        await self._send_chunk(chunk)
        return
    large.large_resent += 1
    now = time.monotonic()
    large.losses.append(now)
    while large.losses and large.losses[0] < now - LOST_LARGE_WINDOW_S:
        large.losses.popleft()
    if large.state == "on":
        if len(large.losses) >= LOST_LARGE_BUDGET:
            _fall_back(
                self,
                large,
                f"{len(large.losses)} large packets lost within {LOST_LARGE_WINDOW_S:g} s",
            )
        elif (
            large.large_resent >= LOST_LARGE_MIN_LOSSES
            and large.large_resent > LOST_LARGE_RATIO * large.large_cut
        ):
            _fall_back(self, large, f"{large.large_resent} of {large.large_cut} large packets lost")
    packet = sctp.serialize_packet(
        self._local_port, self._remote_port, self._remote_verification_tag, chunk
    )
    large.segment_id = (large.segment_id + 1) & 0xFFFFFFFF
    count = math.ceil(len(packet) / SEGMENT_PAYLOAD_BYTES)
    for index in range(count):
        piece = packet[index * SEGMENT_PAYLOAD_BYTES : (index + 1) * SEGMENT_PAYLOAD_BYTES]
        header = _SEGMENT_MAGIC + struct.pack("!LBB", large.segment_id, index, count)
        await self.transport._send_data(header + piece)


def _reassemble(dtls: Any, plain: bytes) -> bytes | None:
    """Collect one segment; returns the SCTP packet once all its segments arrived."""
    if len(plain) < 10:
        return None
    packet_id, index, count = struct.unpack_from("!LBB", plain, 4)
    if index >= count:
        return None
    pending: dict[int, list[bytes | None]] = dtls.__dict__.setdefault("_p2p_segments", {})
    parts = pending.get(packet_id)
    if parts is None or len(parts) != count:
        parts = pending[packet_id] = [None] * count
        while len(pending) > _SEGMENTS_KEPT:
            del pending[next(iter(pending))]
    parts[index] = plain[10:]
    if any(part is None for part in parts):
        return None
    del pending[packet_id]
    return b"".join(part for part in parts if part is not None)


# -- DTLS records of any size on large-packet associations ----------------------------------


async def _write_ssl(self: Any) -> None:
    # aiortc 1.16.0's _write_ssl reads 1,500 bytes, splitting a larger record over two
    # datagrams; on a large-packet association (after the handshake) the whole record goes.
    size = (
        DTLS_RECORD_READ_BYTES
        if self._state is DtlsState.CONNECTED and getattr(self, "_p2p_large_records", False)
        else 1500
    )
    try:
        data = self._ssl.bio_read(size)
    except SSL.Error:
        data = b""
    if data:
        await self.transport._send(data)
        self._RTCDtlsTransport__tx_bytes += len(data)
        self._RTCDtlsTransport__tx_packets += 1


_stock_recv_next = RTCDtlsTransport._recv_next


async def _recv_next(self: Any) -> None:
    # aiortc 1.16.0's _recv_next decrypts with recv(1500): a larger record would come back in
    # pieces and every later datagram out of step. Large-packet associations take over once
    # the handshake is done (before that, and on every other association, upstream runs).
    if not (getattr(self, "_p2p_large_records", False) and self._RTCDtlsTransport__handshake_done):
        await _stock_recv_next(self)
        return
    data = await self.transport._recv()
    self._RTCDtlsTransport__rx_bytes += len(data)
    self._RTCDtlsTransport__rx_packets += 1
    if not 19 < data[0] < 64:
        return  # not DTLS: SRTP, which a data-only connection never carries
    self._ssl.bio_write(data)
    plain: bytes | None
    try:
        plain = self._ssl.recv(DTLS_RECORD_READ_BYTES)
    except SSL.ZeroReturnError:
        plain = None
    except SSL.Error:
        plain = b""
    await self._write_ssl()
    if plain is None:
        raise ConnectionError
    if plain[:4] == _SEGMENT_MAGIC:
        plain = _reassemble(self, plain) or b""
    if plain and self._data_receiver:
        await self._data_receiver._handle_data(plain)


# -- socket buffers ------------------------------------------------------------------------


def enlarge_socket_buffers(ice_gatherer: Any, want: int = SOCKET_BUFFER_BYTES) -> int | None:
    """Raise the receive and send buffers of every UDP socket ICE gathered to ``want`` bytes:
    with SO_RCVBUFFORCE where allowed (root), else as far as net.core.rmem_max lets
    SO_RCVBUF go. aiortc's default (the kernel's, ~208 KiB) overflows at these rates. Returns
    the smallest receive buffer obtained (as the kernel reports it, doubled)."""
    if not _applied:
        return None
    try:
        protocols = list(ice_gatherer._connection._protocols)
    except AttributeError:
        return None
    got: list[int] = []
    for protocol in protocols:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            continue
        # A duplicate descriptor: uvloop hands out a pseudo-socket without setsockopt.
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            for force, plain in (
                (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
                (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
            ):
                try:
                    if force is None:
                        raise PermissionError
                    dup.setsockopt(socket.SOL_SOCKET, force, want)
                except OSError:
                    with suppress(OSError):
                        dup.setsockopt(socket.SOL_SOCKET, plain, want)
            got.append(dup.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return min(got) if got else None
