"""What :func:`p2pshare.aiortc_patches.apply` installed, for the parts to read.

One mutable record, written once by ``apply`` (from the :class:`~p2pshare.config.Tuning` of
the first peer connection) and read by ``sctp_changes``, ``large`` and ``sockets``, which
therefore never import the package that installs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import rtcsctptransport


@dataclass
class Installed:
    applied: bool | None = None
    """None: ``apply`` not called yet; then whether the touches are installed."""
    sctp: bool = False
    """Whether the SCTP throughput changes (and large packets) are installed."""
    rto_min_s: float = rtcsctptransport.SCTP_RTO_MIN
    rto_min_forced: bool = False
    """``Tuning.sctp_rto_min_s`` was set: it holds for every association."""
    send_without_gil: bool = True
    udp_segments: bool = True
    linux_calls: bool = True
    """False: no forced socket buffers and no UDP segments, as where Linux's calls are missing."""


INSTALLED = Installed()
