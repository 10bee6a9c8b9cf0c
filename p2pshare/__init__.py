"""p2pshare: send files peer to peer over WebRTC, paired by a short code.

The library API::

    import p2pshare

    def on_event(event: p2pshare.SessionEvent) -> None:
        if isinstance(event, p2pshare.CodeReady):
            print("code:", event.code)

    result = await p2pshare.send("report.pdf", p2pshare.Settings(server=URL),
                                 on_event=on_event)       # CodeReady, Connected, Progress...
    result = await p2pshare.receive("7-guitar-ocean", p2pshare.Settings(server=URL))

Errors are subclasses of :class:`p2pshare.errors.P2PShareError` (also exported here).
The package ships ``py.typed``: type checkers read its annotations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
_EVENTS = (
    "CodeReady",
    "Connected",
    "Notice",
    "OfferSummary",
    "Progress",
    "SessionEvent",
    "TransferResult",
    "Verification",
)
__all__ = [
    "CodeReady",
    "Connected",
    "IceConfig",
    "Notice",
    "OfferSummary",
    "P2PShareError",
    "Progress",
    "SessionEvent",
    "Settings",
    "TransferResult",
    "Verification",
    "__version__",
    "receive",
    "send",
]

if TYPE_CHECKING:
    from p2pshare.config import IceConfig, Settings
    from p2pshare.errors import P2PShareError
    from p2pshare.events import (
        CodeReady,
        Connected,
        Notice,
        OfferSummary,
        Progress,
        SessionEvent,
        TransferResult,
        Verification,
    )
    from p2pshare.session import receive, send


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that the pure modules (codes, files, transfer...) can be imported
    # without pulling in aiortc.
    if name in ("send", "receive"):
        from p2pshare import session

        return getattr(session, name)
    if name in _EVENTS:
        from p2pshare import events

        return getattr(events, name)
    if name in ("Settings", "IceConfig"):
        from p2pshare import config

        return getattr(config, name)
    if name == "P2PShareError":
        from p2pshare.errors import P2PShareError

        return P2PShareError
    raise AttributeError(f"module 'p2pshare' has no attribute {name!r}")
