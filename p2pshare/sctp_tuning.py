"""Run-time changes to aiortc's SCTP receive path, for throughput. Private API: version-gated.

aiortc's SCTP does per-packet Python work (about 42 µs per packet per side here), and the
receiver makes it worse in three ways that these patches remove:

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

:func:`apply` patches ``RTCSctpTransport`` only on the aiortc versions listed in
``TESTED_VERSIONS`` (the range is pinned in pyproject.toml) and leaves stock behaviour on any
other. ``P2PSHARE_STOCK_SCTP=1`` turns the patches off, for comparisons. The loss benchmark and
the end-to-end tests run through the patched path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import aiortc
from aiortc import rtcsctptransport as sctp
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc.utils import uint32_gt

logger = logging.getLogger(__name__)

TESTED_VERSIONS = ("1.16.0",)
SACK_EVERY_PACKETS = 2
SACK_DELAY_S = 0.020
ENV_STOCK = "P2PSHARE_STOCK_SCTP"

_applied = False


def enabled() -> bool:
    return _applied


def apply() -> bool:
    """Install the patches once; returns whether they are active."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_STOCK) == "1":
        logger.info("stock aiortc SCTP (%s=1)", ENV_STOCK)
        return False
    if aiortc.__version__ not in TESTED_VERSIONS:
        logger.info("stock aiortc SCTP: patches not tested on aiortc %s", aiortc.__version__)
        return False
    RTCSctpTransport._handle_data = _handle_data  # type: ignore[method-assign]
    RTCSctpTransport._mark_received = _mark_received  # type: ignore[method-assign]
    RTCSctpTransport._receive_data_chunk = _receive_data_chunk  # type: ignore[method-assign]
    RTCSctpTransport._receive_sack_chunk = _receive_sack_chunk  # type: ignore[method-assign]
    RTCSctpTransport._t3_expired = _t3_expired  # type: ignore[method-assign]
    RTCSctpTransport._transmit = _transmit  # type: ignore[method-assign]
    _applied = True
    return True


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


_stock_receive_sack_chunk = RTCSctpTransport._receive_sack_chunk
_stock_t3_expired = RTCSctpTransport._t3_expired


async def _receive_sack_chunk(self: Any, chunk: Any) -> None:
    if chunk.gaps:
        self._p2p_may_retransmit = True  # the strike loop may mark chunks
    await _stock_receive_sack_chunk(self, chunk)


def _t3_expired(self: Any) -> None:
    self._p2p_may_retransmit = True  # marks every outstanding chunk
    _stock_t3_expired(self)


async def _transmit(self: Any) -> None:
    # aiortc 1.16.0's _transmit, with the retransmit walk guarded (see the module docstring).
    if self._forward_tsn_chunk is not None:
        await self._send_chunk(self._forward_tsn_chunk)
        self._forward_tsn_chunk = None
        if not self._t3_handle:
            self._t3_start()
    if self._fast_recovery_exit is not None:
        burst_size = 2 * sctp.USERDATA_MAX_LENGTH
    else:
        burst_size = 4 * sctp.USERDATA_MAX_LENGTH
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
                await self._send_chunk(chunk)
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
