"""ICE servers for the welcome message, with short-lived TURN credentials. Pure.

coturn's ``use-auth-secret`` scheme (the "TURN REST API"): the username is the expiry time as
a Unix timestamp, a colon and a label; the password is base64(HMAC-SHA1(secret, username)).
coturn recomputes it from the shared secret, so the secret never leaves the server and a
credential stops working at its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

TURN_LABEL = "p2pshare"


def turn_credentials(
    secret: str, ttl_s: int, now: float, label: str = TURN_LABEL
) -> tuple[str, str]:
    username = f"{int(now) + ttl_s}:{label}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(
    stun: Sequence[str],
    turn: Sequence[str],
    secret: str | None,
    ttl_s: int,
    now: float,
    label: str = TURN_LABEL,
) -> list[dict[str, Any]]:
    """The RTCIceServer list a client gets: STUN as is, TURN with fresh credentials.

    coturn counts ``user-quota`` per username: a ``label`` of its own per connection gives
    each client its own allocation quota (with one fixed label, every client served in the
    same second would share one)."""
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": list(stun)})
    if turn and secret:
        username, credential = turn_credentials(secret, ttl_s, now, label)
        servers.append({"urls": list(turn), "username": username, "credential": credential})
    return servers
