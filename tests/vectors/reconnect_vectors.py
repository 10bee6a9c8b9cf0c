"""``reconnect.json``: what a reconnect derives from the session key, and a hello's bytes, for
fixed inputs (docs/protocol.md, "Reconnecting after the path dies"). Built from the code in
:mod:`p2pshare.reconnect`; ``tests/test_vectors.py`` checks the code against the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from p2pshare.pake import Role
from p2pshare.reconnect import ReconnectKeys

SESSION_SECRET = bytes(range(32))
"""Stands in for ``HKDF(K, "p2pshare.v1 reconnect")``."""
SENDER_ENTROPY = bytes(range(100, 128))
RECEIVER_ENTROPY = bytes(range(200, 228))


def fixed(data: bytes) -> Callable[[int], bytes]:
    """Randomness that hands out ``data`` in order (the hello's nonce, then its AEAD nonce)."""
    position = 0

    def take(n: int) -> bytes:
        nonlocal position
        chunk = data[position : position + n]
        position += n
        assert len(chunk) == n, "not enough fixed entropy"
        return chunk

    return take


def build_reconnect() -> dict[str, Any]:
    sender = ReconnectKeys(Role.SENDER, SESSION_SECRET, fixed(SENDER_ENTROPY))
    receiver = ReconnectKeys(Role.RECEIVER, SESSION_SECRET, fixed(RECEIVER_ENTROPY))
    hello_a, nonce_a = sender.hello(0)
    hello_b, nonce_b = receiver.hello(0)
    offer = sender.attempt(0, nonce_a, nonce_b).seal(b'{"type": "offer", "sdp": "v=0"}')
    return {
        "description": (
            "Reconnect (docs/protocol.md): the nameplate of generations 0 and 1, each side's "
            "hello for generation 0 (nonce, then AEAD nonce, from the given entropy), and "
            "the sender's first body sealed under the attempt keys of both nonces."
        ),
        "secret": SESSION_SECRET.hex(),
        "nameplates": [sender.nameplate(0), sender.nameplate(1)],
        "sender_entropy": SENDER_ENTROPY.hex(),
        "receiver_entropy": RECEIVER_ENTROPY.hex(),
        "sender_hello": hello_a.hex(),
        "receiver_hello": hello_b.hex(),
        "sender_nonce": nonce_a.hex(),
        "receiver_nonce": nonce_b.hex(),
        "offer_plaintext": '{"type": "offer", "sdp": "v=0"}',
        "offer_sealed": offer.hex(),
    }
