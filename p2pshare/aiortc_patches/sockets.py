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
    return min(got) if got else None
