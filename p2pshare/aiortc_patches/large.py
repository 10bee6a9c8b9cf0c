"""Large SCTP packets between two p2pshare peers: negotiated, probed with HEARTBEAT+PAD,
resent in base-size segments, dropped on a black hole (see the package docstring), and DTLS
records of any size on the associations that use them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiortc import rtcsctptransport as sctp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcsctptransport import RTCSctpTransport
from google_crc32c import value as crc32c
from OpenSSL import SSL

from p2pshare.aiortc_patches.constants import (
    BASE_USERDATA_BYTES,
    DATAGRAM_SEGMENT_MARKER,
    DTLS_DATAGRAM_READ_BYTES,
    DTLS_PLAINTEXT_BYTES,
    DTLS_RECORD_READ_BYTES,
    HEARTBEAT_INFO,
    LARGE_PACKET_BYTES,
    LARGE_RTO_MIN_S,
    LOST_LARGE_BUDGET,
    LOST_LARGE_MIN_LOSSES,
    LOST_LARGE_RATIO,
    LOST_LARGE_WINDOW_S,
    PAD_CHUNK_TYPE,
    PROBE_ATTEMPTS,
    PROBE_MAGIC,
    PROBE_TIMEOUT_S,
    REPROBE_AFTER_S,
    RESEND_COPIES,
    SCTP_OVERHEAD_BYTES,
    SEGMENT_MAGIC,
    SEGMENT_PAYLOAD_BYTES,
    SEGMENTS_KEPT,
    SEGMENTS_MERGED_PARAM,
    SMALLER_PROBE_BYTES,
)
from p2pshare.aiortc_patches.sockets import DatagramSegments
from p2pshare.aiortc_patches.state import INSTALLED

logger = logging.getLogger(__name__)

_DTLS_RECORD_OVERHEAD = 37
"""A DTLS 1.2 AES-GCM record's header (13), explicit nonce (8) and tag (16)."""
_IPV4_FRAGMENT_BYTES = 1480

# -- large packets -------------------------------------------------------------------------


@dataclass
class LargePackets:
    """Large SCTP packets on one association, between two p2pshare peers that both offered
    them in the sealed SDP. ``state`` moves ``negotiated`` -> ``probing`` -> ``on``, or to
    ``refused`` (no probe came back), ``skipped`` (a path we never try: NAT, TURN), or from
    ``on`` to ``fallback`` (a black hole during the transfer)."""

    packet_bytes: int
    """The size in use, or being probed."""
    agreed_bytes: int = 0
    """The largest both sides accept (from the SDP); every probing starts there."""
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
    step_downs: int = 0
    """Times a lossy path made the sender go from 64 KB to 16 KB packets (not to the base)."""
    on_cut: int = 0
    on_resent: int = 0
    """``large_cut`` and ``large_resent`` when the size in use was last turned on; resends of
    chunks cut at a larger size before a step down are counted in ``on_resent`` too."""
    losses: deque[tuple[float, int]] = field(default_factory=deque)
    """When each large packet was first found lost, and its IP fragments (the rest of which
    the receiver's kernel holds until it gives up on the datagram)."""
    segment_id: int = 0
    segments_unmerged: bool = False
    """The peer reported our probe's UDP segments arrived one by one: segments were turned off."""
    probed_fragments: bool = False
    segments_forced: bool = False
    """Segments kept although unmerged: the path dropped the fragments tried instead."""
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
            "step_downs": self.step_downs,
            "segments_unmerged": self.segments_unmerged,
            "segments_forced": self.segments_forced,
        }


def large_packets_possible() -> bool:
    """Whether this process can send and receive large packets (the changes are installed)."""
    return INSTALLED.sctp


def allow_large_packets(sctp_transport: Any, packet_bytes: int) -> LargePackets:
    """Both sides offered large packets: from now on accept large DTLS records on this
    association (the peer may send them as soon as its probe is answered). Our own packets
    stay at the base size until :func:`probe_large_packets` confirms the path carries them."""
    size = min(packet_bytes, LARGE_PACKET_BYTES)
    large = LargePackets(packet_bytes=size, agreed_bytes=size)
    sctp_transport._p2p_large = large
    if not INSTALLED.rto_min_forced:
        sctp_transport._p2p_rto_min = LARGE_RTO_MIN_S
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
    # The agreed size first, then (if it is larger) one DTLS record's worth.
    sizes = sorted({large.agreed_bytes, min(large.agreed_bytes, SMALLER_PROBE_BYTES)}, reverse=True)
    for size in sizes:
        large.packet_bytes = size
        lost = 0
        while lost < PROBE_ATTEMPTS:
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
                lost += 1
                continue
            if large.segments_unmerged and not large.probed_fragments:
                large.probed_fragments = True  # the path carried segments: once more, fragments
                continue
            _use_large(transport, large)
            return
        if large.probed_fragments and large.segments_unmerged:
            # Segments of this size came through, but fragments do not (a path that drops
            # them): segments after all, read one by one at the other end.
            for state in getattr(transport, "_p2p_segmenting", ()):
                state.on = True
            large.segments_unmerged = False
            large.segments_forced = True
            logger.info("IP fragments lost where UDP segments passed: segments after all")
            _use_large(transport, large)
            return
    large.state = "refused"
    tried = " and ".join(str(size) for size in sizes)
    large.reason = f"{PROBE_ATTEMPTS} probes each of {tried} bytes were lost"
    logger.info("large SCTP packets refused: %s", large.reason)


def _probe_packet(transport: Any, large: LargePackets) -> bytes:
    info = PROBE_MAGIC + large.probe_nonce
    heartbeat = sctp.HeartbeatChunk()
    heartbeat.params.append((HEARTBEAT_INFO, info))
    body = bytes(heartbeat)
    pad_length = large.packet_bytes - sctp.SCTP_COMMON_HEADER_LENGTH - len(body)
    pad = struct.pack("!BBH", PAD_CHUNK_TYPE, 0, pad_length) + bytes(pad_length - 4)
    header = struct.pack(
        "!HHL", transport._local_port, transport._remote_port, transport._remote_verification_tag
    )
    data = body + pad
    checksum = crc32c(header + b"\x00\x00\x00\x00" + data)
    return header + struct.pack("<L", checksum) + data


def _is_probe(chunk: Any) -> bool:
    return any(
        kind == HEARTBEAT_INFO and value.startswith(PROBE_MAGIC) for kind, value in chunk.params
    )


def _probe_answer(self: Any, chunk: Any) -> Any:
    """The HEARTBEAT ACK to a peer's probe: its heartbeat information, as upstream answers,
    and, if the probe's datagram came in UDP segments that our kernel merged, a parameter
    saying so (a peer of the previous version ignores it; only the prober reads it)."""
    ack = sctp.HeartbeatAckChunk()
    ack.params = list(chunk.params)
    segments = getattr(self.transport, "_p2p_datagram_segments", None)
    if segments is not None and segments.merged:
        ack.params.append((SEGMENTS_MERGED_PARAM, b""))
    return ack


def _heartbeat_acked(self: Any, chunk: Any) -> None:
    large = large_packets(self)
    if large is None or large.state != "probing":
        return
    if (HEARTBEAT_INFO, PROBE_MAGIC + large.probe_nonce) not in chunk.params:
        return
    segmenting = [state for state in getattr(self, "_p2p_segmenting", ()) if state.on]
    together = any(state.last_together for state in segmenting)  # else it proves nothing
    if together and (SEGMENTS_MERGED_PARAM, b"") not in chunk.params:
        # Our probe went in segments and the peer's kernel handed them over one by one (no
        # UDP GRO on its path): IP fragments, which its kernel puts together, are cheaper
        # there. The next probe goes as fragments, at once.
        for state in segmenting:
            state.on = False
        large.segments_unmerged = True
        logger.info("UDP segments arrive unmerged at the peer: IP fragments instead")
    large.probe_acked.set()


def _use_large(transport: Any, large: LargePackets) -> None:
    size = (large.packet_bytes - SCTP_OVERHEAD_BYTES) // 4 * 4
    transport._p2p_chunk_bytes = size
    transport._cwnd = max(transport._cwnd, 3 * size)
    large.on_cut, large.on_resent = large.large_cut, large.large_resent
    large.state = "on"
    logger.info("large SCTP packets on: %d bytes", large.packet_bytes)


def _fall_back(
    transport: Any, large: LargePackets, reason: str, *, from_losses: bool = True
) -> None:
    """Down one size: from 64 KB to 16 KB (a 16 KB datagram is a quarter of the fragments,
    so a path that loses one in a thousand IP packets loses 1% of them, not 4%), else back to
    the base size. Chunks not sent yet are cut again (their TSNs were never on the wire, so
    they are renumbered); chunks already sent keep their size and TSN, as SCTP requires, and
    are retransmitted as they are.

    When the trigger was loss (``from_losses``), the step to 16 KB is skipped if the losses
    seen at 64 KB say 16 KB would be lossy too: at 1% loss per IP packet a 64 KB packet is lost
    36% of the time and a 16 KB one 10%, and every stop on the way costs lost large packets,
    each resent in segments. A black hole (every 64 KB packet lost) says nothing of 16 KB ones,
    which a path with a smaller limit still carries."""
    lost = large.large_resent - large.on_resent
    cut = large.large_cut - large.on_cut
    if large.packet_bytes > SMALLER_PROBE_BYTES and (
        not from_losses
        or expected_loss(SMALLER_PROBE_BYTES, large.packet_bytes, lost, cut) <= LOST_LARGE_RATIO
    ):
        large.packet_bytes = SMALLER_PROBE_BYTES
        size = (SMALLER_PROBE_BYTES - SCTP_OVERHEAD_BYTES) // 4 * 4
        transport._p2p_chunk_bytes = size
        large.step_downs += 1
        large.rechunked += rechunk_unsent(transport, size)
        large.on_cut, large.on_resent = large.large_cut, large.large_resent
        logger.info("large SCTP packets down to %d bytes: %s", SMALLER_PROBE_BYTES, reason)
        return
    transport._p2p_chunk_bytes = BASE_USERDATA_BYTES
    large.state, large.reason = "fallback", reason
    large.fallbacks += 1
    large.rechunked += rechunk_unsent(transport, BASE_USERDATA_BYTES)
    logger.info("large SCTP packets off: %s; probing again in %g s", reason, REPROBE_AFTER_S)
    loop = asyncio.get_running_loop()
    transport._p2p_reprobe = loop.call_later(REPROBE_AFTER_S, _reprobe, transport, large)


def ip_fragments(packet_bytes: int) -> int:
    """IP packets that carry one SCTP packet of ``packet_bytes`` on a 1,500-byte IPv4 MTU: its
    DTLS records (AES-GCM adds 37 bytes each) and the UDP header, 1,480 bytes a fragment."""
    records = math.ceil(packet_bytes / DTLS_PLAINTEXT_BYTES)
    return math.ceil((packet_bytes + records * _DTLS_RECORD_OVERHEAD + 8) / _IPV4_FRAGMENT_BYTES)


def expected_loss(size: int, seen_size: int, lost: int, sent: int) -> float:
    """The share of ``size`` packets a path would lose, from ``lost`` of ``sent`` packets of
    ``seen_size`` lost there, each IP fragment taken as lost independently."""
    if sent <= 0:
        return 0.0
    per_fragment = 1 - (1 - min(lost / sent, 1.0)) ** (1 / ip_fragments(seen_size))
    return float(1 - (1 - per_fragment) ** ip_fragments(size))


def _reprobe(transport: Any, large: LargePackets) -> None:
    if (
        large.state == "fallback"
        and transport._association_state == RTCSctpTransport.State.ESTABLISHED
    ):
        large.state = "negotiated"
        probe_large_packets(transport)


def rechunk_unsent(transport: Any, size: int) -> int:
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
    if chunk._book_size > getattr(self, "_p2p_chunk_bytes", BASE_USERDATA_BYTES):
        large.on_resent += 1  # cut before a step down: says nothing of the size in use
    now = time.monotonic()
    if not getattr(chunk, "_p2p_resent", False):  # later resends go in segments: no fragments
        chunk._p2p_resent = True
        large.losses.append((now, ip_fragments(chunk._book_size + SCTP_OVERHEAD_BYTES)))
    while large.losses and large.losses[0][0] < now - LOST_LARGE_WINDOW_S:
        large.losses.popleft()
    lost = large.large_resent - large.on_resent
    cut = large.large_cut - large.on_cut
    if large.state == "on":
        held = sum(fragments for _, fragments in large.losses)
        if held >= LOST_LARGE_BUDGET * ip_fragments(LARGE_PACKET_BYTES):
            _fall_back(
                self,
                large,
                f"{len(large.losses)} large packets lost within {LOST_LARGE_WINDOW_S:g} s",
            )
        elif lost >= LOST_LARGE_MIN_LOSSES and lost > LOST_LARGE_RATIO * cut:
            _fall_back(self, large, f"{lost} of {cut} large packets lost")
    packet = sctp.serialize_packet(
        self._local_port, self._remote_port, self._remote_verification_tag, chunk
    )
    large.segment_id = (large.segment_id + 1) & 0xFFFFFFFF
    segments = segment_packet(packet, large.segment_id)
    for _ in range(RESEND_COPIES):
        for segment in segments:
            await self.transport._send_data(segment)


def segment_packet(packet: bytes, packet_id: int) -> list[bytes]:
    """An SCTP packet cut into segments for :func:`reassemble_segment` (at most 255)."""
    count = math.ceil(len(packet) / SEGMENT_PAYLOAD_BYTES)
    return [
        SEGMENT_MAGIC
        + struct.pack("!LBB", packet_id, index, count)
        + packet[index * SEGMENT_PAYLOAD_BYTES : (index + 1) * SEGMENT_PAYLOAD_BYTES]
        for index in range(count)
    ]


def reassemble_segment(dtls: Any, plain: bytes) -> bytes | None:
    """Collect one segment (kept on ``dtls``, at most 256 packets' worth, oldest dropped
    first); returns the SCTP packet once all its segments arrived."""
    if len(plain) < 10:
        return None
    packet_id, index, count = struct.unpack_from("!LBB", plain, 4)
    if index >= count:
        return None
    pending: dict[int, list[bytes | None]] = dtls.__dict__.setdefault("_p2p_segments", {})
    parts = pending.get(packet_id)
    if parts == []:
        return None  # delivered already: a later copy of its segments (RESEND_COPIES)
    if parts is None or len(parts) != count:
        parts = pending[packet_id] = [None] * count
        while len(pending) > SEGMENTS_KEPT:
            del pending[next(iter(pending))]
    parts[index] = plain[10:]
    if any(part is None for part in parts):
        return None
    pending[packet_id] = []
    return b"".join(part for part in parts if part is not None)


# -- DTLS records of any size on large-packet associations ----------------------------------


_stock_send_data = RTCDtlsTransport._send_data


async def _send_data(self: Any, data: bytes) -> None:
    # aiortc 1.16.0's _send_data hands the whole SCTP packet to one SSL_write, which DTLS
    # refuses beyond 16,384 bytes. On a large-packet association a larger packet goes as
    # consecutive records, read back together by _write_ssl into one datagram.
    if len(data) <= DTLS_PLAINTEXT_BYTES or not getattr(self, "_p2p_large_records", False):
        await _stock_send_data(self, data)
        return
    if self._state != DtlsState.CONNECTED:
        raise ConnectionError("Cannot send encrypted data, not connected")
    view = memoryview(data)
    for start in range(0, len(data), DTLS_PLAINTEXT_BYTES):
        self._ssl.send(view[start : start + DTLS_PLAINTEXT_BYTES])
    await self._write_ssl()


async def _write_ssl(self: Any) -> None:
    # aiortc 1.16.0's _write_ssl reads 1,500 bytes, splitting a larger record over two
    # datagrams; on a large-packet association (after the handshake) every record written
    # since (one, or the several of a large packet) goes in one datagram.
    size = (
        DTLS_DATAGRAM_READ_BYTES
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
    # pieces and every later datagram out of step. On a large-packet association (marked
    # before the handshake starts) this copy runs instead, with a buffer for a whole record,
    # and reassembles resent packets that came in segments. It drops SRTP, which a data-only
    # connection never carries. Every other association runs upstream's.
    if not getattr(self, "_p2p_large_records", False):
        await _stock_recv_next(self)
        return
    timeout = None
    if not self._RTCDtlsTransport__handshake_done:
        timeout = self._ssl.DTLSv1_get_timeout()
        if timeout is None and self.encrypted:
            self._RTCDtlsTransport__handshake_done = True
    if timeout is not None:
        try:
            data = await asyncio.wait_for(self.transport._recv(), timeout=timeout)
        except TimeoutError:
            self._ssl.DTLSv1_handle_timeout()
            await self._write_ssl()
            return
    else:
        data = await self.transport._recv()
    self._RTCDtlsTransport__rx_bytes += len(data)
    self._RTCDtlsTransport__rx_packets += 1
    if data[0] == DATAGRAM_SEGMENT_MARKER:
        datagrams = datagram_segments(self).add(data)
    elif 19 < data[0] < 64:
        datagrams = [data]
    else:
        return
    for datagram in datagrams:
        await _receive_datagram(self, datagram)


async def _receive_datagram(self: Any, data: bytes) -> None:
    records: list[bytes] = []
    closed = False
    try:
        # A large packet's datagram holds several records. OpenSSL reads a DTLS datagram
        # into a buffer for one record (~18 KiB) and drops what does not fit, so each
        # record goes in on its own (header: 13 bytes, the last two its length).
        for record in _dtls_records(data):
            self._ssl.bio_write(record)
            with contextlib.suppress(SSL.WantReadError):
                records.append(self._ssl.recv(DTLS_RECORD_READ_BYTES))
    except SSL.ZeroReturnError:
        closed = True
    except SSL.Error:
        pass  # an unusable record: what came before it is kept, SCTP's checksum decides
    await self._write_ssl()
    if closed:
        raise ConnectionError
    plain = b"".join(records)
    if plain[:4] == SEGMENT_MAGIC:
        plain = reassemble_segment(self, plain) or b""
    if plain and self._data_receiver:
        await self._data_receiver._handle_data(plain)


def datagram_segments(dtls: Any) -> DatagramSegments:
    """The segments of large datagrams received on this DTLS transport, being put together."""
    segments: DatagramSegments | None = getattr(dtls, "_p2p_datagram_segments", None)
    if segments is None:
        segments = dtls._p2p_datagram_segments = DatagramSegments()
    return segments


def _dtls_records(datagram: bytes) -> list[bytes]:
    """The DTLS records of one datagram (RFC 6347 4.1: 13-byte headers, length last); a
    truncated tail is passed on as it is, for OpenSSL to refuse."""
    if len(datagram) <= DTLS_PLAINTEXT_BYTES:
        return [datagram]
    records = []
    start = 0
    while start < len(datagram):
        end = start + 13 + int.from_bytes(datagram[start + 11 : start + 13], "big")
        records.append(datagram[start:end])
        start = end
    return records


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
