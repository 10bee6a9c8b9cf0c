"""Socket buffers as large as the kernel allows, for every connection (the default
208 KiB receive buffer overflows at these rates)."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import suppress
from typing import Any

from p2pshare import aiortc_patches as patches
from p2pshare.aiortc_patches import (
    SOCKET_BUFFER_BYTES,
)

logger = logging.getLogger(__name__)

# -- socket buffers ------------------------------------------------------------------------


def enlarge_socket_buffers(ice_gatherer: Any, want: int = SOCKET_BUFFER_BYTES) -> int | None:
    """Raise the receive and send buffers of every UDP socket ICE gathered to ``want`` bytes:
    with SO_RCVBUFFORCE where allowed (root), else as far as net.core.rmem_max lets
    SO_RCVBUF go. aiortc's default (the kernel's, ~208 KiB) overflows at these rates. Returns
    the smallest receive buffer obtained (as the kernel reports it, doubled)."""
    if not patches._applied:
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
        if os.environ.get(ENV_GIL_SEND, "1") != "0":
            send_without_gil(protocol, sock)
    return min(got) if got else None


ENV_GIL_SEND = "P2PSHARE_SEND_WITHOUT_GIL"


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
        or not patches._sctp_applied  # P2PSHARE_STOCK_SCTP=1: stock for comparisons
    ):
        return
    target: Any = protocol  # its methods are replaced on this instance only
    fast = socket.socket(fileno=os.dup(sock.fileno()))
    fast.setblocking(False)  # already so (one open file with uvloop's); never wait in sendto
    transport: Any = target.transport
    lost = target.connection_lost

    async def send_data(data: bytes, addr: tuple[str, int]) -> None:
        if not transport.get_write_buffer_size():
            try:
                fast.sendto(data, addr)
                return
            except OSError:
                pass  # full, or an error for uvloop to report as it would
        transport.sendto(data, addr)

    def connection_lost(exc: Exception | None) -> None:
        fast.close()
        lost(exc)

    target.send_data = send_data
    target.connection_lost = connection_lost
    target._p2p_fast_socket = fast
