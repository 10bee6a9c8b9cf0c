"""p2pshare: send files peer to peer over WebRTC, paired by a short code."""

from __future__ import annotations

__version__ = "0.1.0"
