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

``P2PSHARE_STOCK_SCTP=1`` leaves these four out, for comparisons (the two below stay).

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
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice
import aioice.ice
import aiortc
from aiortc import rtcsctptransport as sctp
from aiortc.rtcsctptransport import RTCSctpTransport
from aiortc.utils import uint32_gt

logger = logging.getLogger(__name__)

TESTED_VERSIONS = ("1.16.0",)
"""aiortc versions these changes were written and tested against."""
TESTED_AIOICE_VERSIONS = ("0.13.0",)
SACK_EVERY_PACKETS = 2
SACK_DELAY_S = 0.020
ENV_STOCK = "P2PSHARE_STOCK_SCTP"

UPSTREAM_TOUCHED = (
    # replaced
    "aiortc.rtcsctptransport:RTCSctpTransport._handle_data",
    "aiortc.rtcsctptransport:RTCSctpTransport._mark_received",
    "aiortc.rtcsctptransport:RTCSctpTransport._receive_data_chunk",
    "aiortc.rtcsctptransport:RTCSctpTransport._receive_sack_chunk",
    "aiortc.rtcsctptransport:RTCSctpTransport._t3_expired",
    "aiortc.rtcsctptransport:RTCSctpTransport._transmit",
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
    global _applied, _sctp_applied
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
