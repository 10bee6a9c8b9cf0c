"""SPAKE2 on the code, key confirmation, and sealing of signalling messages. No I/O.

::

    sender (A)                      server                       receiver (B)
      │── pake: "A"+X ────────────────>│──────────────────────────────>│
      │<───────────────────────────────│<──────────────── pake: "B"+Y ─│
      │   K = SPAKE2(code)             │              K = SPAKE2(code) │
      │── confirm: HKDF(K,"confirm A") >│─────────────────────────────>│  mismatch on
      │<───────────────────────────────│< confirm: HKDF(K,"confirm B") │  either side:
      │                                │                               │  WrongCodeError
      │── seal(k_A→B, offer SDP) ─────>│──────────────────────────────>│
      │<───────────────────────────────│<──────── seal(k_B→A, answer) ─│

Each direction has its own ChaCha20-Poly1305 key and an implicit message counter as nonce, so
a relayed message that is dropped, replayed, reordered or altered fails to open. The SDP
carries the DTLS fingerprints, so sealing it makes the DTLS session end to end.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from p2pshare.codes import words_from_key
from p2pshare.errors import ProtocolError, WrongCodeError

PROTOCOL_ID = b"p2pshare.v1"
PAKE_MESSAGE_BYTES = 33
"""One side byte (``A`` or ``B``) and an Ed25519 point of 32 bytes."""
CONFIRM_BYTES = 32
_SIDE_BYTES = {b"A", b"B"}


class Role(Enum):
    SENDER = "A"
    RECEIVER = "B"

    @property
    def peer(self) -> Role:
        return Role.RECEIVER if self is Role.SENDER else Role.SENDER


def _hkdf(key: bytes, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=PROTOCOL_ID + b" " + purpose
    ).derive(key)


class PakeSession:
    """One side of the key agreement, then a pair of sealing directions.

    ``entropy`` stands in for :func:`os.urandom` only in tests, where fixed randomness makes
    the messages reproducible (``tests/vectors/pake.json``); production code never passes it.
    """

    def __init__(
        self, role: Role, password: bytes, entropy: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.role = role
        ids = {"idA": PROTOCOL_ID + b"/sender", "idB": PROTOCOL_ID + b"/receiver"}
        cls = SPAKE2_A if role is Role.SENDER else SPAKE2_B
        self._spake = cls(password, entropy_f=entropy, **ids)
        self._key: bytes | None = None
        self._sealer: Sealer | None = None

    def start(self) -> bytes:
        """The PAKE message to send to the peer."""
        message: bytes = self._spake.start()
        return message

    def finish(self, peer_message: bytes) -> None:
        """Derive the shared key from the peer's PAKE message; malformed input is a wrong code.

        The message is checked before SPAKE2 sees it, and anything SPAKE2 raises is reported as
        a wrong code: the peer (or the server) may have sent anything.
        """
        expected_side = self.role.peer.value.encode()
        if len(peer_message) != PAKE_MESSAGE_BYTES or peer_message[:1] != expected_side:
            raise WrongCodeError()
        try:
            key: bytes = self._spake.finish(peer_message)
        except Exception as exc:  # the library raises assorted types on bad points
            raise WrongCodeError() from exc
        self._key = key
        self._sealer = Sealer(self.role, key)

    def _require_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("finish() must be called first")
        return self._key

    def confirmation(self) -> bytes:
        """Proof that we hold the key, to send to the peer."""
        return _hkdf(self._require_key(), b"confirm " + self.role.value.encode())

    def verify_confirmation(self, peer_confirmation: bytes) -> None:
        expected = _hkdf(self._require_key(), b"confirm " + self.role.peer.value.encode())
        if not hmac.compare_digest(expected, peer_confirmation):
            raise WrongCodeError()

    def verification_words(self) -> tuple[str, ...]:
        """A few words both sides derive from the shared key (``--verify``): if the two people
        read out the same words, nobody sits in the middle. Derived with HKDF under its own
        label, so showing them reveals nothing about the sealing keys."""
        return words_from_key(_hkdf(self._require_key(), b"verify"))

    def derive(self, purpose: bytes) -> bytes:
        """A 32-byte secret for ``purpose`` (HKDF under its own label): the key itself, and
        everything else derived from it, cannot be recovered from it (reconnect.py)."""
        return _hkdf(self._require_key(), purpose)

    def seal(self, plaintext: bytes) -> bytes:
        if self._sealer is None:
            raise RuntimeError("finish() must be called first")
        return self._sealer.seal(plaintext)

    def open(self, sealed: bytes) -> bytes:
        """Open the peer's next sealed message; any tampering raises :class:`ProtocolError`."""
        if self._sealer is None:
            raise RuntimeError("finish() must be called first")
        return self._sealer.open(sealed)


class Seals(Protocol):
    """What sealed signalling needs: our role, and the two sealing directions."""

    @property
    def role(self) -> Role: ...

    def seal(self, plaintext: bytes) -> bytes: ...

    def open(self, sealed: bytes) -> bytes: ...


class Sealer:
    """The two sealing directions derived from ``key`` (the PAKE's, or a reconnect
    attempt's): one ChaCha20-Poly1305 key per side, counter nonces from 0."""

    def __init__(self, role: Role, key: bytes) -> None:
        self.role = role
        mine, theirs = role.value.encode(), role.peer.value.encode()
        self._seal_key = ChaCha20Poly1305(_hkdf(key, b"seal " + mine))
        self._open_key = ChaCha20Poly1305(_hkdf(key, b"seal " + theirs))
        self._send_counter = 0
        self._recv_counter = 0

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return counter.to_bytes(12, "big")

    def seal(self, plaintext: bytes) -> bytes:
        nonce = self._nonce(self._send_counter)
        self._send_counter += 1
        aad = PROTOCOL_ID + self.role.value.encode()
        return self._seal_key.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes) -> bytes:
        """Open the peer's next sealed message; any tampering raises :class:`ProtocolError`."""
        nonce = self._nonce(self._recv_counter)
        aad = PROTOCOL_ID + self.role.peer.value.encode()
        try:
            plaintext = self._open_key.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise ProtocolError(
                "a signalling message was altered in transit "
                "(the rendezvous server may be tampering)"
            ) from None
        self._recv_counter += 1
        return plaintext
