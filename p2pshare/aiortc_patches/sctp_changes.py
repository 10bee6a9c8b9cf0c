"""The SCTP throughput changes (see the package docstring: delayed acknowledgement,
the in-order fast path, no reassembly rescan, no needless retransmit scan), and the per-association
chunk size, bundling and retransmission timeout that large packets need."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from aiortc import rtcsctptransport as sctp
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc.utils import uint16_add, uint32_gt, uint32_gte

from p2pshare.aiortc_patches.constants import (
    BASE_USERDATA_BYTES,
    BLACK_HOLE_T3_STRIKES,
    SACK_DELAY_S,
    SACK_EVERY_PACKETS,
)
from p2pshare.aiortc_patches.large import (
    LargePackets,
    _fall_back,
    _heartbeat_acked,
    _init_chunk_counters,
    _is_probe,
    _probe_answer,
    _resend,
)
from p2pshare.aiortc_patches.state import INSTALLED

logger = logging.getLogger(__name__)

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
        elif chunk.__class__ is sctp.HeartbeatChunk and _is_probe(chunk):
            await self._send_chunk(_probe_answer(self, chunk))
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
            _fall_back(self, large, "black hole: large packets stopped arriving", from_losses=False)
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
    # aiortc 1.16.0's _update_rto with the minimum per association (LARGE_RTO_MIN_S).
    if self._srtt is None:
        self._rttvar = R / 2
        self._srtt = R
    else:
        self._rttvar = (1 - sctp.SCTP_RTO_BETA) * self._rttvar + sctp.SCTP_RTO_BETA * abs(
            self._srtt - R
        )
        self._srtt = (1 - sctp.SCTP_RTO_ALPHA) * self._srtt + sctp.SCTP_RTO_ALPHA * R
    rto_min = getattr(self, "_p2p_rto_min", INSTALLED.rto_min_s)
    self._rto = max(rto_min, min(self._srtt + 4 * self._rttvar, sctp.SCTP_RTO_MAX))


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
