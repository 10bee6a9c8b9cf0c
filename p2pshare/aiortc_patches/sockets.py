"""The ICE sockets: buffers as large as the kernel allows (the default 208 KiB receive buffer
overflows at these rates), datagrams sent without holding the GIL, and a large packet's
datagram carried as segments (UDP GSO and GRO) instead of IP fragments."""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import struct
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from p2pshare.aiortc_patches.constants import (
    DATAGRAM_SEGMENT_BYTES,
    DATAGRAM_SEGMENT_MARKER,
    SOCKET_BUFFER_BYTES,
)
from p2pshare.aiortc_patches.state import INSTALLED

logger = logging.getLogger(__name__)

# -- socket buffers ------------------------------------------------------------------------


def enlarge_socket_buffers(ice_gatherer: Any, want: int = SOCKET_BUFFER_BYTES) -> int | None:
    """Raise the receive and send buffers of every UDP socket ICE gathered to ``want`` bytes:
    with SO_RCVBUFFORCE where allowed (root), else as far as net.core.rmem_max lets
    SO_RCVBUF go. aiortc's default (the kernel's, ~208 KiB) overflows at these rates. Returns
    the smallest receive buffer obtained (as the kernel reports it, doubled)."""
    if not INSTALLED.applied:
        return None
    got: list[int] = []
    for protocol in _ice_protocols(ice_gatherer):
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            continue
        # A duplicate descriptor: uvloop hands out a pseudo-socket without setsockopt.
        linux = INSTALLED.linux_calls
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            for force, plain in (
                (getattr(socket, "SO_RCVBUFFORCE", None) if linux else None, socket.SO_RCVBUF),
                (getattr(socket, "SO_SNDBUFFORCE", None) if linux else None, socket.SO_SNDBUF),
            ):
                try:
                    if force is None:
                        raise PermissionError
                    dup.setsockopt(socket.SOL_SOCKET, force, want)
                except OSError:
                    with suppress(OSError):
                        dup.setsockopt(socket.SOL_SOCKET, plain, want)
            got.append(dup.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        if INSTALLED.send_without_gil:
            send_without_gil(protocol, sock)
    return min(got) if got else None


def _ice_protocols(ice_gatherer: Any) -> list[Any]:
    """The socket protocols aioice gathered candidates on (none if its internals moved)."""
    try:
        return list(ice_gatherer._connection._protocols)
    except AttributeError:
        return []


def send_without_gil(protocol: Any, sock: Any) -> None:
    """Send this ICE socket's datagrams with Python's ``socket.sendto``, which releases the GIL
    for the system call, instead of uvloop's, which holds it. The kernel's work for a 64 KB
    datagram (44 IP fragments, and on a veth the receiving side's processing too) then no
    longer stops our reader and writer threads. A datagram the socket refuses
    (``EAGAIN``), and every one after it while uvloop still holds some, goes through uvloop,
    so their order is kept."""
    from aioice.ice import StunProtocol

    if (
        type(protocol) is not StunProtocol
        or sock.family != socket.AF_INET
        or hasattr(protocol, "_p2p_fast_socket")
        or not INSTALLED.sctp  # P2PSHARE_STOCK_SCTP=1: stock for comparisons
    ):
        return
    target: Any = protocol  # its methods are replaced on this instance only
    fast = socket.socket(fileno=os.dup(sock.fileno()))
    fast.setblocking(False)  # already so (one open file with uvloop's); never wait in sendto
    transport: Any = target.transport
    lost = target.connection_lost

    segments = Segmenting()

    async def send_data(data: bytes, addr: tuple[str, int]) -> None:
        buffer = segments.cut(data) if segments.on and len(data) > DATAGRAM_SEGMENT_BYTES else None
        if not transport.get_write_buffer_size():
            try:
                if buffer is not None:
                    fast.sendmsg([buffer], segments.ancillary, 0, addr)
                    segments.sent += 1
                    segments.last_together = True
                else:
                    fast.sendto(data, addr)
                return
            except BlockingIOError:
                pass  # full: uvloop queues it, and everything after it until it is sent
            except OSError as exc:
                if buffer is not None and exc.errno in _NO_SEGMENTS_ERRNOS:
                    # This kernel or path cannot segment: IP fragments, as before.
                    segments.on = False
                    logger.info("UDP segments refused by the kernel (%s): off", exc.strerror)
                buffer = None  # whole, for uvloop to send or to report as it would
        if buffer is None:
            transport.sendto(data, addr)
            return
        # Queued behind uvloop's: the segments one by one (never IP fragments, which a path
        # may drop); the receiver puts them together all the same.
        stride = DATAGRAM_SEGMENT_BYTES
        for at in range(0, len(buffer), stride):
            transport.sendto(buffer[at : at + stride], addr)
        segments.sent += 1
        segments.last_together = False  # its arrival says nothing of the receiver's GRO

    def connection_lost(exc: Exception | None) -> None:
        fast.close()
        lost(exc)

    target.send_data = send_data
    target.connection_lost = connection_lost
    target._p2p_fast_socket = fast
    target._p2p_segments = segments


# -- a large datagram in segments (UDP GSO and GRO) -------------------------------------------
#
# A 64 KB datagram sent whole is cut into 44 IP fragments by the sender's kernel and put
# together again by the receiver's: on a veth that is a fifth of both processes' CPU, and
# fragments are what middleboxes drop first. Between two p2pshare peers on Linux that both
# said so in the sealed SDP, the sender hands the datagram to the kernel as one buffer of
# segments of DATAGRAM_SEGMENT_BYTES, each a UDP datagram on the wire (one sendmsg with
# UDP_SEGMENT: the kernel, or the network card, cuts them), and the receiver's socket has
# UDP_GRO on, so that segments which travelled together arrive together in one read. Each
# segment opens with an 8-byte header (a marker byte in the range RFC 7983 gives DTLS but no
# DTLS content type uses, its index, the count, and the datagram's id), so segments that
# arrive on their own, or merged with others, are put together all the same
# (:class:`DatagramSegments`). The header is not authenticated and needs not be: the
# datagram put together is DTLS, whose records are.

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
"""Linux's socket options (include/uapi/linux/udp.h); Python's socket module lacks them."""
_HEADER = struct.Struct("!BBBxL")
_DATAGRAMS_KEPT = 64
_SEGMENT_PAYLOAD = DATAGRAM_SEGMENT_BYTES - _HEADER.size
MAX_SEGMENTS = 64
"""Segments per datagram: what Linux accepts in one send (UDP_MAX_SEGMENTS), and the most a
receiver collects for one datagram."""
_MAX_UDP_PAYLOAD = 65_507
MERGED_SEGMENTS_PER_READ = 8
"""Segments are worth sending only if the receiving kernel hands them over merged (UDP GRO):
one by one, each is a Python datagram callback, slower than IP fragments which the kernel
puts together. 8 a read on average (6 reads for a 64 KB datagram, 2 for any smaller one)
counts as merged."""
_NO_SEGMENTS_ERRNOS = {errno.EINVAL, errno.EIO, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP}


@dataclass
class Segmenting:
    """One ICE socket's sending side: whether large datagrams go in segments, and counters."""

    on: bool = False
    sent: int = 0
    last_together: bool = False
    """The last large datagram left in one GSO send (not one segment at a time)."""
    next_id: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    ancillary: list[tuple[int, int, bytes]] = field(
        default_factory=lambda: [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", DATAGRAM_SEGMENT_BYTES))]
    )

    def cut(self, datagram: bytes) -> bytes | None:
        """``datagram`` in segments, or None when it does not fit one send (Linux takes at
        most 64 segments and a UDP datagram's 65,507 bytes): it then goes whole."""
        if len(datagram) > MAX_SEGMENTS * _SEGMENT_PAYLOAD or (
            len(datagram) + math.ceil(len(datagram) / _SEGMENT_PAYLOAD) * _HEADER.size
            > _MAX_UDP_PAYLOAD
        ):
            return None
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        return segment_datagram(datagram, self.next_id)


def segment_datagram(datagram: bytes, datagram_id: int) -> bytes:
    """``datagram`` as consecutive segments of DATAGRAM_SEGMENT_BYTES (the last one shorter),
    each with its header, in one buffer for a sendmsg with UDP_SEGMENT."""
    count = math.ceil(len(datagram) / _SEGMENT_PAYLOAD)
    if not 0 < count <= MAX_SEGMENTS:
        raise ValueError(f"a datagram of {len(datagram)} bytes cannot go in segments")
    view = memoryview(datagram)
    parts: list[bytes | memoryview] = []
    for index in range(count):
        parts.append(_HEADER.pack(DATAGRAM_SEGMENT_MARKER, index, count, datagram_id))
        parts.append(view[index * _SEGMENT_PAYLOAD : (index + 1) * _SEGMENT_PAYLOAD])
    return b"".join(parts)


@dataclass
class DatagramSegments:
    """One DTLS transport's receiving side: segments put back together into datagrams."""

    received: int = 0
    """Datagrams put together from segments."""
    merged: bool = False
    """Whether the last datagram completed came in few reads (UDP GRO merged its segments:
    at least MERGED_SEGMENTS_PER_READ a read), which the probe's answer reports."""
    pending: dict[int, list[bytes | None]] = field(default_factory=dict)
    reads: dict[int, int] = field(default_factory=dict)

    def add(self, buffer: bytes) -> list[bytes]:
        """The datagrams that ``buffer`` (one segment, or several that arrived together)
        completes; the others' segments are kept (at most _DATAGRAMS_KEPT datagrams' worth,
        oldest dropped first: ~5.6 MB at most, whatever a sender claims)."""
        stride = DATAGRAM_SEGMENT_BYTES
        size = len(buffer)
        if size <= _HEADER.size:
            return []
        marker, index, count, datagram_id = _HEADER.unpack_from(buffer)
        if (
            index == 0
            and (count - 1) * stride + _HEADER.size < size <= count * stride
            and _HEADER.unpack_from(buffer, (count - 1) * stride)
            == (marker, count - 1, count, datagram_id)
        ):
            # The common case: every segment of one datagram, in order, in one read.
            self.received += 1
            self.merged = True
            view = memoryview(buffer)
            return [
                b"".join(view[at + _HEADER.size : at + stride] for at in range(0, size, stride))
            ]
        done: list[bytes] = []
        seen: set[int] = set()
        for at in range(0, size, stride):
            segment = buffer[at : at + stride]
            if segment[0] != DATAGRAM_SEGMENT_MARKER:
                # A datagram of the peer's that UDP GRO merged after segments (it can only
                # be the last): passed on as it is.
                done.append(buffer[at:])
                break
            if len(segment) <= _HEADER.size:
                break
            _, index, count, datagram_id = _HEADER.unpack_from(segment)
            if (
                index >= count
                or count > MAX_SEGMENTS
                or (index < count - 1 and len(segment) < stride)
            ):
                continue  # not a segment we sent: a middle one is always whole
            parts = self.pending.get(datagram_id)
            if parts is None or len(parts) != count:
                parts = self.pending[datagram_id] = [None] * count
                self.reads[datagram_id] = 0
                while len(self.pending) > _DATAGRAMS_KEPT:
                    oldest = next(iter(self.pending))
                    del self.pending[oldest], self.reads[oldest]
            if datagram_id not in seen:
                seen.add(datagram_id)
                self.reads[datagram_id] += 1
            parts[index] = segment[_HEADER.size :]
            if all(part is not None for part in parts):
                del self.pending[datagram_id]
                reads = self.reads.pop(datagram_id)
                self.merged = reads <= max(2, count // MERGED_SEGMENTS_PER_READ)
                self.received += 1
                done.append(b"".join(part for part in parts if part is not None))
        return done


def datagram_segments_possible() -> bool:
    """Whether this side can receive segments (UDP GRO) and send them (UDP GSO): Linux 5.0 or
    later, our changes installed, and not switched off (``Tuning.udp_segments``,
    ``send_without_gil``, ``linux_calls``)."""
    global _possible
    if _possible is None:
        _possible = False
        if sys.platform.startswith("linux"):
            with suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.setsockopt(SOL_UDP, UDP_GRO, 0)
                probe.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
                _possible = True
    return (
        _possible
        and INSTALLED.sctp
        and INSTALLED.udp_segments
        and INSTALLED.send_without_gil
        and INSTALLED.linux_calls
    )


_possible: bool | None = None


def use_datagram_segments(ice_gatherer: Any) -> list[Segmenting]:
    """Both sides agreed on segments: turn UDP GRO on for every IPv4 host socket of this
    connection (we may now receive segments) and send our large datagrams in segments.
    Returns the sending side of each socket that does."""
    used: list[Segmenting] = []
    for protocol in _ice_protocols(ice_gatherer):
        fast: socket.socket | None = getattr(protocol, "_p2p_fast_socket", None)
        if fast is None:
            continue
        try:
            fast.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError as exc:
            logger.info("UDP GRO refused (%s): no segments on this socket", exc.strerror)
            continue
        protocol._p2p_segments.on = True
        used.append(protocol._p2p_segments)
        stock = protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple[str, int], stock: Any = stock) -> None:
            for piece in split_gro_read(data):
                stock(piece, addr)

        protocol.datagram_received = datagram_received
    return used


_STUN_COOKIE = b"\x21\x12\xa4\x42"
_MAX_GRO_PIECE = 9_216
"""No datagram UDP GRO merges is larger than a jumbo frame's payload."""


def _stated_length(buffer: bytes, at: int) -> int | None:
    """The length the datagram of ours that would begin at ``at`` says it has: a segment
    (a plausible header), a STUN message (its magic cookie) or a one-record DTLS 1.x datagram;
    None if none begins there."""
    first = buffer[at]
    if first == DATAGRAM_SEGMENT_MARKER:
        if len(buffer) - at <= _HEADER.size:
            return None
        _, index, count, _ = _HEADER.unpack_from(buffer, at)
        if not index < count <= MAX_SEGMENTS:
            return None
        return min(DATAGRAM_SEGMENT_BYTES, len(buffer) - at)  # the last of a read may be short
    if first < 2 and buffer[at + 4 : at + 8] == _STUN_COOKIE:
        return 20 + int.from_bytes(buffer[at + 2 : at + 4], "big")
    if 19 < first < 64 and buffer[at + 1 : at + 2] == b"\xfe" and len(buffer) - at >= 13:
        return 13 + int.from_bytes(buffer[at + 11 : at + 13], "big")
    return None


def split_gro_read(buffer: bytes) -> list[bytes]:
    """The peer's datagrams in one read from a socket with UDP_GRO on.

    GRO merges consecutive datagrams of one flow and of one size (the last may be smaller)
    into one read, and uvloop does not pass on that size (a control message). But every
    datagram a p2pshare peer sends says its own length: a STUN message in its header, a DTLS
    datagram in its record's header (only a large packet's datagram holds several records, and
    it is larger than any MTU, so never merged), a segment is DATAGRAM_SEGMENT_BYTES. So the
    first one's length is the length of all but the last, if a datagram of ours begins at each
    multiple of it; if not, the read is one datagram (a DTLS handshake flight holds several
    records) and goes on as it came. Consecutive segments stay together, for
    :class:`DatagramSegments` to take at once."""
    size = len(buffer)
    if size < 20:
        return [buffer]
    piece = _stated_length(buffer, 0)
    if piece is None or piece >= size or piece > _MAX_GRO_PIECE:
        return [buffer]
    last = (size - 1) // piece * piece
    for at in range(0, size, piece):
        stated = _stated_length(buffer, at)
        # All but the last are exactly ``piece`` long (GRO merges one size); the last is
        # what remains.
        if stated != (piece if at < last else size - at):
            return [buffer]  # not a merge (a DTLS flight's records, or noise): as it came
    pieces: list[bytes] = []
    run = -1  # where the current run of segments began
    for at in range(0, size, piece):
        if buffer[at] == DATAGRAM_SEGMENT_MARKER:
            run = at if run < 0 else run
            continue
        if run >= 0:
            pieces.append(buffer[run:at])
            run = -1
        pieces.append(buffer[at : at + piece])
    if run >= 0:
        pieces.append(buffer[run:])
    return pieces
