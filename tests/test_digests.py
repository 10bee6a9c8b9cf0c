"""The file hash: BLAKE3 where both sides offer it, SHA-256 otherwise (p2pshare.digests)."""

from __future__ import annotations

import hashlib

import blake3
import pytest

from p2pshare import digests, transfer
from p2pshare import messages as m
from p2pshare.errors import ProtocolError


def test_each_name_gives_its_hash() -> None:
    for name, reference in (("sha256", hashlib.sha256), ("blake3", blake3.blake3)):
        running = digests.new(name)
        running.update(b"hello ")
        copied = running.copy()
        running.update(b"world")
        assert running.hexdigest() == reference(b"hello world").hexdigest()
        assert copied.hexdigest() == reference(b"hello ").hexdigest()
    with pytest.raises(ValueError, match="unknown hash"):
        digests.new("md5")


def test_blake3_is_offered_and_chosen_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert digests.supported() == ("blake3",)
    assert digests.choose(("blake3",)) == "blake3"
    assert digests.choose(()) == "sha256"  # the page, or a p2pshare before BLAKE3
    assert digests.choose(("xxh3",)) == "sha256"  # unknown names are not picked
    monkeypatch.setenv("P2PSHARE_HASH", "sha256")
    assert digests.supported() == ()
    assert digests.choose(("blake3",)) == "sha256"


def _offered(hashes: tuple[str, ...]) -> tuple[transfer.SenderProtocol, transfer.ReceiverProtocol]:
    sender = transfer.SenderProtocol(m.Offer((m.FileEntry("a", 10),), hashes=hashes))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    assert receiver.offer is not None and receiver.offer.hashes == hashes
    return sender, receiver


def test_blake3_is_agreed_in_offer_and_accept() -> None:
    sender, receiver = _offered(("blake3",))
    [accept] = receiver.accept(100, hash="blake3")
    assert m.decode(accept) == m.Accept(100, hash="blake3")
    sender.receive(accept)
    assert sender.hash == receiver.hash == "blake3"


def test_a_hash_not_offered_is_not_used() -> None:
    """A receiver cannot pick a hash the sender did not offer (it gets SHA-256, and Accept
    names none); a sender refuses an Accept that names one it did not offer."""
    sender, receiver = _offered(())
    [accept] = receiver.accept(100, hash="blake3")
    assert m.decode(accept) == m.Accept(100)
    sender.receive(accept)
    assert sender.hash == receiver.hash == "sha256"
    picky, _ = _offered(())
    with pytest.raises(ProtocolError, match="hash we did not offer"):
        picky.receive(m.encode(m.Accept(100, hash="blake3")))
    with pytest.raises(ProtocolError, match="unknown hash"):
        m.decode(m.frame(m.Accept.TYPE, {"window": 100, "hash": "md5"}))
