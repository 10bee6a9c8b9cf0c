"""p2pshare: send files peer to peer over WebRTC, paired by a short code.

The library API::

    import p2pshare

    result = await p2pshare.send("report.pdf", p2pshare.Settings(server=URL),
                                 on_event=print)          # CodeReady, Connected, Progress...
    result = await p2pshare.receive("7-guitar-ocean", p2pshare.Settings(server=URL))

Errors are subclasses of :class:`p2pshare.errors.P2PShareError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "receive", "send"]

if TYPE_CHECKING:
    from p2pshare.config import Settings
    from p2pshare.session import receive, send


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that the pure modules (codes, files, transfer...) can be imported
    # without pulling in aiortc.
    if name in ("send", "receive"):
        from p2pshare import session

        return getattr(session, name)
    if name == "Settings":
        from p2pshare.config import Settings

        return Settings
    raise AttributeError(f"module 'p2pshare' has no attribute {name!r}")
