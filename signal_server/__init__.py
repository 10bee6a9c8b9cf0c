"""p2pshare-signal: the rendezvous server that pairs two p2pshare peers by nameplate.

It relays opaque, sealed blobs between exactly two peers and nothing else. It never imports the
p2pshare client or aiortc, so it can be deployed on its own with only ``websockets`` installed.
"""

from __future__ import annotations

__version__ = "0.1.0"
