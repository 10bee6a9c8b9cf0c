"""The file hash: BLAKE3 where both sides offer it, SHA-256 otherwise (p2pshare.digests)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from p2pshare import digests, transfer
from p2pshare import messages as m
from p2pshare.errors import IntegrityError, ProtocolError
from p2pshare.events import TransferResult
from p2pshare.files import check_offer
from p2pshare.layout import plan
from p2pshare.sinks import StreamSink
from p2pshare.sources import Chunk, Reader, collect, read_ahead
from p2pshare.tree import Tree


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


def test_blake3_is_offered_and_chosen_unless_turned_off() -> None:
    """BLAKE3 is offered and picked when both sides have it, SHA-256 otherwise or when tuned."""
    assert digests.supported() == ("blake3",)
    assert digests.choose(("blake3",)) == "blake3"
    assert digests.choose(()) == "sha256"  # the page, or a p2pshare before BLAKE3
    assert digests.choose(("xxh3",)) == "sha256"  # unknown names are not picked
    assert digests.supported("sha256") == ()  # Tuning.hash, P2PSHARE_HASH=sha256
    assert digests.choose(("blake3",), "sha256") == "sha256"


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


async def test_the_sender_hashes_with_the_agreed_hash(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "a.bin").write_bytes(data)
    worker = read_ahead(Reader(collect([tmp_path / "a.bin"]), 64 * 1024), hash="blake3")
    chunks = [p async for p in worker]
    assert isinstance(chunks[-1], Chunk)
    assert chunks[-1].digest == blake3.blake3(data).hexdigest()


def test_a_blake3_receive_refuses_a_sha256_digest(tmp_path: Path) -> None:
    """What a sender that offered BLAKE3 and then sent SHA-256 digests gets: an integrity
    failure naming BLAKE3, and no file; the BLAKE3 digest is accepted."""
    data = b"hello world"
    sink = StreamSink(None, "blake3")
    sink.write(data)
    with pytest.raises(IntegrityError, match="BLAKE3"):
        sink.finish(0, hashlib.sha256(data).hexdigest())
    offer = m.Offer((m.FileEntry("a.txt", len(data)), m.FileEntry("b.txt", len(data))))
    out = tmp_path / "out"
    tree = Tree(plan(out, offer, check_offer(offer), overwrite=False), offer, "blake3")
    try:
        tree.make_dirs()
        tree.begin(0)
        tree.write(data)
        with pytest.raises(IntegrityError, match="BLAKE3"):
            tree.finish(0, hashlib.sha256(data).hexdigest())
        tree.begin(1)
        tree.write(data)
        assert tree.finish(1, blake3.blake3(data).hexdigest()) == blake3.blake3(data).hexdigest()
    finally:
        tree.close()
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_the_result_keeps_sha256_for_older_callers() -> None:
    by_sha = TransferResult(5, 0.1, 1, "ab" * 32, None, 5)
    by_blake3 = TransferResult(5, 0.1, 1, "cd" * 32, None, 5, hash="blake3")
    assert by_sha.sha256 == "ab" * 32 and by_blake3.sha256 is None
    assert by_blake3.digest == "cd" * 32
