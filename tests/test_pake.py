"""PAKE, key confirmation and sealing, with fixed randomness for reproducible vectors."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest

from p2pshare.errors import ProtocolError, WrongCodeError
from p2pshare.pake import PakeSession, Role


def fixed_entropy(seed: bytes) -> Callable[[int], bytes]:
    counter = itertools.count()

    def entropy(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + str(next(counter)).encode()).digest()
        return out[:n]

    return entropy


def pair(
    code_a: bytes = b"7-guitar-ocean", code_b: bytes = b"7-guitar-ocean"
) -> tuple[PakeSession, PakeSession]:
    a = PakeSession(Role.SENDER, code_a, fixed_entropy(b"a"))
    b = PakeSession(Role.RECEIVER, code_b, fixed_entropy(b"b"))
    msg_a, msg_b = a.start(), b.start()
    a.finish(msg_b)
    b.finish(msg_a)
    return a, b


def test_vectors_pin_the_key_schedule() -> None:
    """Fixed randomness gives fixed messages, tags and ciphertexts (interoperability)."""
    a = PakeSession(Role.SENDER, b"7-guitar-ocean", fixed_entropy(b"a"))
    b = PakeSession(Role.RECEIVER, b"7-guitar-ocean", fixed_entropy(b"b"))
    msg_a, msg_b = a.start(), b.start()
    assert msg_a.hex() == "417f24ac3c2de68c202a575b08c581963b1b4a5a19ebd53bf30b9045ca90310c73"
    assert msg_b.hex() == "427d7ebe4eec3a779c1fa2d3c258443bf2fc3be4afb813dbe8ea3561d303878719"
    a.finish(msg_b)
    b.finish(msg_a)
    assert a.confirmation().hex() == (
        "21c84b05544a937df7d02fcc48a1b4f0b72d917c5422d24b63a92c9922a498d8"
    )
    assert a.seal(b"hello").hex() == "9c66d969703a1674d7ef8fdce0ea6378de28055cf5"


def test_same_code_confirms_and_seals_both_ways() -> None:
    """Both sides confirm each other and open each other's sealed messages in order."""
    a, b = pair()
    a.verify_confirmation(b.confirmation())
    b.verify_confirmation(a.confirmation())
    assert b.open(a.seal(b"offer")) == b"offer"
    assert b.open(a.seal(b"second")) == b"second"
    assert a.open(b.seal(b"answer")) == b"answer"


def test_wrong_code_fails_confirmation_on_both_sides() -> None:
    """Different codes give different keys: each side rejects the other's confirmation."""
    a, b = pair(code_b=b"7-guitar-oceans")
    with pytest.raises(WrongCodeError):
        a.verify_confirmation(b.confirmation())
    with pytest.raises(WrongCodeError):
        b.verify_confirmation(a.confirmation())


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"B",
        b"B" + b"\x00" * 31,
        b"B" + b"\x00" * 33,
        b"A" + b"\x01" * 32,
        b"C" + b"\x01" * 32,
        b"B" + b"\xff" * 32,
    ],
)
def test_malformed_pake_messages_are_a_wrong_code(message: bytes) -> None:
    """Wrong length, wrong side byte or an invalid point never crash: WrongCodeError."""
    a = PakeSession(Role.SENDER, b"7-guitar-ocean")
    a.start()
    with pytest.raises(WrongCodeError):
        a.finish(message)


def test_tampered_replayed_or_reordered_sealed_messages_are_refused() -> None:
    """The AEAD with counter nonces catches any change to the relayed stream."""
    a, b = pair()
    first, second = a.seal(b"one"), a.seal(b"two")
    flipped = bytes([first[0] ^ 1]) + first[1:]
    with pytest.raises(ProtocolError):
        b.open(flipped)
    with pytest.raises(ProtocolError):
        b.open(second)  # out of order
    assert b.open(first) == b"one"
    with pytest.raises(ProtocolError):
        b.open(first)  # replay
    # A message sealed in one direction does not open in the other.
    with pytest.raises(ProtocolError):
        a.open(a.seal(b"mine"))
