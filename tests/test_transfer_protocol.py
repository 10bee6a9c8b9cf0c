"""The sans-I/O transfer protocol: happy path, flow control, and a peer that misbehaves."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pshare import messages as m
from p2pshare import transfer
from p2pshare import transfer_events as te
from p2pshare import trial as trials
from p2pshare.errors import DeclinedError, IntegrityError, PeerLostError, ProtocolError


def offer(*sizes: int) -> m.Offer:
    return m.Offer(tuple(m.FileEntry(f"f{i}", s) for i, s in enumerate(sizes)))


def deliver_offer(receiver: transfer.ReceiverProtocol, the_offer: m.Offer) -> list[object]:
    events: list[object] = []
    for frame in the_offer.frames():
        events += receiver.receive(frame)
    return events


def run_transfer(
    data: list[bytes | None],
    window: int,
    chunk: int,
    streams: frozenset[int] = frozenset(),
    combine_end: bool = False,
) -> list[bytes | None]:
    """Drive both state machines against each other and return what the receiver got.

    ``None`` in ``data`` is a directory; indexes in ``streams`` are sent with unknown size.
    """
    entries = tuple(
        m.FileEntry(f"d{i}", 0, kind="dir")
        if blob is None
        else m.FileEntry(f"s{i}", None, kind="stream")
        if i in streams
        else m.FileEntry(f"f{i}", len(blob))
        for i, blob in enumerate(data)
    )
    sender = transfer.SenderProtocol(m.Offer(entries))
    receiver = transfer.ReceiverProtocol()
    received = [event for frame in sender.start() for event in receiver.receive(frame)]
    assert received == [te.OfferReceived(m.Offer(entries))]
    assert sender.receive(receiver.accept(window)[0]) == [te.Accepted(window)]
    got: list[bytes | None] = [None if blob is None else b"" for blob in data]
    if all(blob is None for blob in data):
        assert receiver.received_all
        assert [e for f in receiver.finish() for e in sender.receive(f)] == [te.Finished()]
        return got
    for index, blob in enumerate(data):
        if blob is None:
            continue
        assert sender.current == index
        pos = 0
        digest = hashlib.sha256(blob).hexdigest()
        ended = False
        while pos < len(blob) or (combine_end and not ended):
            n = min(chunk, len(blob) - pos, sender.credit)
            if combine_end and pos + n == len(blob):
                frame, ended = sender.data_end(blob[pos : pos + n], digest), True
            else:
                assert n > 0, "sender starved: credit never returned"
                frame = sender.data(blob[pos : pos + n])
            for event in receiver.receive(frame):
                if isinstance(event, te.FileEnded):
                    assert event == te.FileEnded(index, digest)
                    continue
                assert isinstance(event, te.ChunkReceived)
                current = got[event.index]
                assert current is not None
                got[event.index] = current + event.payload
                grant = receiver.consumed(len(event.payload))
                if grant:
                    assert sender.receive(grant) == []
            pos += n
        if not combine_end:
            ended_events = receiver.receive(sender.end_file(digest))
            assert ended_events == [te.FileEnded(index, digest)]
        for frame in receiver.file_verified(index):
            for event in sender.receive(frame):
                assert isinstance(event, te.FileAcked)
    assert receiver.received_all and not receiver.finished
    finished = [event for frame in receiver.finish() for event in sender.receive(frame)]
    assert finished[-1] == te.Finished() and receiver.finished
    return got


def test_transfer_of_several_files_with_small_window() -> None:
    """Credit returns in quarter windows; everything arrives, in order."""
    data: list[bytes | None] = [b"", None, b"x", bytes(range(256)) * 300]
    assert run_transfer(data, window=4096, chunk=1000) == data


def test_directories_only() -> None:
    """An offer of empty directories finishes without any data."""
    assert run_transfer([None, None], window=10, chunk=10) == [None, None]


def test_stream_of_unknown_size() -> None:
    """A stream's size is only known at its end, and is still checked there."""
    data: list[bytes | None] = [b"streamed " * 1000]
    assert run_transfer(data, window=2048, chunk=500, streams=frozenset({0})) == data


@given(
    data=st.lists(st.one_of(st.none(), st.binary(max_size=3000)), min_size=1, max_size=5),
    window=st.integers(1, 5000),
    chunk=st.integers(1, 2000),
    combine_end=st.booleans(),
)
def test_any_sizes_window_and_chunking(
    data: list[bytes | None], window: int, chunk: int, combine_end: bool
) -> None:
    """For any entries, window, chunk size and end framing the transfer is byte-exact."""
    assert run_transfer(data, window, chunk, combine_end=combine_end) == data


def test_small_files_cost_one_message_each_and_acks_are_batched() -> None:
    """600 tiny files: one DataEnd each, and three cumulative acks (256, 512, the last)."""
    files = [bytes([i % 256]) * 10 for i in range(600)]
    sender = transfer.SenderProtocol(offer(*(len(f) for f in files)))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    sender.receive(receiver.accept(1 << 20)[0])
    acks = []
    for i, blob in enumerate(files):
        events = receiver.receive(sender.data_end(blob, hashlib.sha256(blob).hexdigest()))
        assert [type(e) for e in events] == [
            te.ChunkReceived,
            te.FileEnded,
        ]
        for frame in receiver.file_verified(i):
            acks += sender.receive(frame)
    for frame in receiver.finish():
        acks += sender.receive(frame)
    assert acks == [
        te.FileAcked(255),
        te.FileAcked(511),
        te.FileAcked(599),
        te.Finished(),
    ]


def test_compression_is_negotiated_and_counted_uncompressed() -> None:
    """zstd only when offered and accepted; credit and sizes count uncompressed bytes."""
    sender = transfer.SenderProtocol(m.Offer((m.FileEntry("a", 100_000),), compression=("zstd",)))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    sender.receive(receiver.accept(150_000, "zstd")[0])
    assert sender.compression == receiver.compression == "zstd"
    [event] = receiver.receive(sender.data_z(60_000, b"frame"))
    assert event == te.ChunkReceived(0, b"frame", 60_000)
    assert sender.credit == 90_000 and receiver.outstanding == 90_000
    with pytest.raises(IntegrityError, match="more bytes"):
        receiver.receive(m.encode(m.DataZ(50_000, b"frame")))


def test_compression_not_offered_is_not_used() -> None:
    """A receiver cannot pick a codec the sender did not offer, nor get DataZ unasked."""
    sender = transfer.SenderProtocol(offer(10))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    sender.receive(receiver.accept(100, "zstd")[0])
    assert sender.compression is None and receiver.compression is None
    with pytest.raises(ProtocolError, match="compression"):
        receiver.receive(m.encode(m.DataZ(5, b"x")))
    picky = transfer.SenderProtocol(offer(10))
    picky.start()
    with pytest.raises(ProtocolError, match="did not offer"):
        picky.receive(m.encode(m.Accept(100, "zstd")))


def test_large_manifest_is_sent_in_batches() -> None:
    """10,000 entries do not fit one message: the offer arrives in several, all under 64 KiB."""
    big = m.Offer(tuple(m.FileEntry(f"dir/file-{i:05}.txt", 1024) for i in range(10_000)))
    frames = list(big.frames())
    assert len(frames) > 1 and all(len(f) <= 64 * 1024 for f in frames)
    receiver = transfer.ReceiverProtocol()
    events = [e for f in frames for e in receiver.receive(f)]
    assert events == [te.OfferReceived(big)]


def test_more_entries_than_declared_are_refused() -> None:
    """Entries past the declared count are refused, in the head or in a later batch."""
    entry = {"path": "x", "size": 1, "mode": 420}
    receiver = transfer.ReceiverProtocol()
    with pytest.raises(ProtocolError, match="more entries"):
        receiver.receive(
            m.frame(m.Offer.TYPE, {"v": 1, "count": 1, "total": 2, "files": [entry, entry]})
        )
    receiver = transfer.ReceiverProtocol()
    receiver.receive(m.frame(m.Offer.TYPE, {"v": 1, "count": 2, "total": 2, "files": [entry]}))
    with pytest.raises(ProtocolError, match="more entries"):
        receiver.receive(m.frame(m.OfferMore.TYPE, {"files": [entry, entry]}))
    # A complete offer takes no more batches.
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, offer(1, 2))
    with pytest.raises(ProtocolError):
        receiver.receive(m.frame(m.OfferMore.TYPE, {"files": [entry]}))


def test_offer_total_must_match() -> None:
    """The declared total is checked against the entries."""
    receiver = transfer.ReceiverProtocol()
    head = {"v": 1, "count": 1, "total": 5, "files": [{"path": "a", "size": 4, "mode": 420}]}
    with pytest.raises(ProtocolError, match="total"):
        receiver.receive(m.frame(m.Offer.TYPE, head))


def test_stream_size_is_checked_at_its_end() -> None:
    """A FileEnd whose size differs from the bytes that came is refused, stream or not."""
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, m.Offer((m.FileEntry("s", None, kind="stream"),)))
    receiver.accept(100)
    receiver.receive(m.encode(m.Data(b"abc")))
    with pytest.raises(IntegrityError):
        receiver.receive(m.encode(m.FileEnd(0, 4, "0" * 64)))


def accepted_receiver(*sizes: int, window: int = 100) -> transfer.ReceiverProtocol:
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, offer(*sizes))
    receiver.accept(window)
    return receiver


def test_more_bytes_than_declared_is_an_integrity_error() -> None:
    """A sender cannot push past the size it declared."""
    receiver = accepted_receiver(3)
    receiver.receive(m.encode(m.Data(b"abc")))
    with pytest.raises(IntegrityError, match="more bytes"):
        receiver.receive(m.encode(m.Data(b"d")))


def test_fewer_bytes_than_declared_is_an_integrity_error() -> None:
    """A file that ends early is refused."""
    receiver = accepted_receiver(3)
    receiver.receive(m.encode(m.Data(b"ab")))
    with pytest.raises(IntegrityError, match="fewer bytes"):
        receiver.receive(m.encode(m.FileEnd(0, 2, "0" * 64)))


def test_data_beyond_credit_is_refused() -> None:
    """A sender that ignores flow control is stopped before it can fill memory."""
    receiver = accepted_receiver(1000, window=10)
    with pytest.raises(ProtocolError, match="flow control"):
        receiver.receive(m.encode(m.Data(b"x" * 11)))


@pytest.mark.parametrize(
    "frame",
    [
        m.encode(m.Data(b"early")),  # data before accept
        m.encode(m.FileEnd(0, 0, "0" * 64)),
        m.encode(m.Accept(5)),  # receiver-only message
        m.encode(m.Done()),
    ],
)
def test_out_of_order_messages_before_accept_are_refused(frame: bytes) -> None:
    """Before the user accepted, only an offer (or abort or ping) is acceptable."""
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, offer(5))
    with pytest.raises(ProtocolError):
        receiver.receive(frame)


def test_second_offer_is_refused() -> None:
    """An offer cannot be swapped after the user saw the first one."""
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, offer(5))
    with pytest.raises(ProtocolError):
        receiver.receive(next(offer(6).frames()))


def test_file_end_for_the_wrong_file_is_refused() -> None:
    receiver = accepted_receiver(0, 0)
    with pytest.raises(ProtocolError, match="out of order"):
        receiver.receive(m.encode(m.FileEnd(1, 0, "0" * 64)))


def test_sender_refuses_done_before_acks_and_unknown_acks() -> None:
    """The sender only finishes after every file was acknowledged in order."""
    sender = transfer.SenderProtocol(offer(0))
    sender.start()
    sender.receive(m.encode(m.Accept(10)))
    with pytest.raises(ProtocolError):
        sender.receive(m.encode(m.FileAck(0)))  # not sent yet
    sender.end_file(hashlib.sha256(b"").hexdigest())
    with pytest.raises(ProtocolError):
        sender.receive(m.encode(m.Done()))
    assert sender.receive(m.encode(m.FileAck(0))) == [te.FileAcked(0)]
    assert sender.receive(m.encode(m.Done())) == [te.Finished()]


def test_abort_from_peer_becomes_its_error_and_interrupt_means_peer_left() -> None:
    """The peer's reason arrives as our error type, marked remote and made printable."""
    sender = transfer.SenderProtocol(offer(1))
    sender.start()
    [event] = sender.receive(m.encode(m.Abort("declined", "exists\x1b[31m")))
    assert isinstance(event, te.PeerAborted)
    assert isinstance(event.error, DeclinedError) and event.error.remote
    assert "\x1b" not in event.error.message
    [event] = sender.receive(m.encode(m.Abort("interrupted", "ctrl-c")))
    assert isinstance(event, te.PeerAborted) and isinstance(event.error, PeerLostError)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\x01not json",
        b"\x01[]",
        b'\x01{"v":1}',
        b'\x01{"v":2,"files":[]}',
        b'\x01{"v":1,"files":[{"path":"a","size":-1}],"total":0}',
        b'\x01{"v":1,"files":[{"path":"a","size":1}],"total":2}',
        b'\x01{"v":1,"files":[{"path":"a","size":true}],"total":1}',
        b'\x05{"index":0,"sha256":"XYZ"}',
        b'\x04{"bytes":0}',
        b"\x02\xff\xfe",
        b"\x11" + b"\x00" * 20,
        b"\x11" + b"\x00" * 4 + b"\xff" * 40,
    ],
)
def test_malformed_frames_are_protocol_errors(frame: bytes) -> None:
    """Garbage on the data channel is a ProtocolError, never a crash."""
    with pytest.raises(ProtocolError):
        m.decode(frame)


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_else(frame: bytes) -> None:
    """Whatever arrives, decoding either succeeds or raises ProtocolError."""
    with contextlib.suppress(ProtocolError):
        m.decode(frame)


@given(
    st.sampled_from(list(range(1, 9))),
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
        max_size=4,
    ),
)
def test_decode_of_arbitrary_json_objects(kind: int, obj: dict[str, object]) -> None:
    """Control messages with arbitrary fields are validated, not trusted."""
    import json

    with contextlib.suppress(ProtocolError):
        m.decode(bytes([kind]) + json.dumps(obj).encode())


# -- resuming ----------------------------------------------------------------------------------


def offered(*sizes: int) -> tuple[transfer.SenderProtocol, transfer.ReceiverProtocol]:
    sender = transfer.SenderProtocol(offer(*sizes))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    return sender, receiver


def test_resume_sends_only_the_rest_and_costs_no_credit() -> None:
    """A prefix the receiver has is announced with Have; the sender resumes after it; sizes
    count the whole file, credit only what is sent."""
    sender, receiver = offered(1000, 500)
    prefix = m.Prefix(0, 600, "a" * 64)
    frames = receiver.accept(100, have=[prefix])
    assert len(frames) == 2
    assert sender.receive(frames[0]) == []  # nothing may be sent before the Have arrives
    assert sender.receive(frames[1]) == [te.Accepted(100, {0: prefix})]
    assert receiver.receive(sender.resume(0, 600)) == [te.Resumed(0, 600)]
    assert sender.current_remaining == 400 and sender.credit == 100
    receiver.receive(sender.data(b"x" * 100))
    grant = receiver.consumed(100)
    assert grant is not None
    sender.receive(grant)
    receiver.receive(sender.data(b"x" * 100))
    assert receiver.received_in_file == 800


def test_resume_at_zero_when_the_prefix_does_not_match() -> None:
    """Offset 0 (the sender's prefix differed): every byte is sent again, never spliced."""
    sender, receiver = offered(10)
    for frame in receiver.accept(100, have=[m.Prefix(0, 4, "b" * 64)]):
        sender.receive(frame)
    assert receiver.receive(sender.resume(0, 0)) == [te.Resumed(0, 0)]
    digest = hashlib.sha256(b"0123456789").hexdigest()
    events = receiver.receive(sender.data_end(b"0123456789", digest))
    assert events[-1] == te.FileEnded(0, digest)


def test_a_whole_file_already_there_is_skipped() -> None:
    """A prefix as long as the file: Resume then an empty DataEnd with the whole hash."""
    sender, receiver = offered(10, 3)
    for frame in receiver.accept(100, have=[m.Prefix(0, 10, "c" * 64)]):
        sender.receive(frame)
    receiver.receive(sender.resume(0, 10))
    assert receiver.receive(sender.data_end(b"", "d" * 64)) == [te.FileEnded(0, "d" * 64)]
    assert sender.current == 1 and sender.credit == 100


def test_the_receiver_refuses_a_resume_it_did_not_offer() -> None:
    """Data before the Resume of a listed entry, another offset, or an unlisted entry."""
    _, receiver = offered(10, 10)
    receiver.accept(100, have=[m.Prefix(0, 4, "a" * 64)])
    with pytest.raises(ProtocolError, match="before the resume"):
        receiver.receive(m.encode(m.Data(b"abc")))
    _, receiver = offered(10, 10)
    receiver.accept(100, have=[m.Prefix(0, 4, "a" * 64)])
    with pytest.raises(ProtocolError, match="did not offer"):
        receiver.receive(m.encode(m.Resume(0, 5)))
    _, receiver = offered(10, 10)
    receiver.accept(100)
    with pytest.raises(ProtocolError, match="unexpected Resume"):
        receiver.receive(m.encode(m.Resume(0, 0)))


@pytest.mark.parametrize(
    "entries",
    [
        [[0, 11, "a" * 64]],  # longer than the file
        [[1, 1, "a" * 64], [0, 1, "a" * 64]],  # out of order
        [[2, 1, "a" * 64]],  # past the offer
        [[0, 0, "a" * 64]],  # an empty prefix
        [[0, 1, "A" * 64]],  # not a hash
        [[0, 1]],
    ],
)
def test_the_sender_refuses_bad_prefixes(entries: list[list[object]]) -> None:
    """A receiver's Have is checked against the offer like any untrusted message."""
    sender, _ = offered(10, 10)
    sender.receive(m.encode(m.Accept(100, None, len(entries))))
    with pytest.raises(ProtocolError):
        sender.receive(m.frame(m.Have.TYPE, {"entries": entries}))


def test_prefixes_only_for_regular_files_and_not_more_than_declared() -> None:
    sender = transfer.SenderProtocol(m.Offer((m.FileEntry("s", None, kind="stream"),)))
    sender.start()
    sender.receive(m.encode(m.Accept(100, None, 1)))
    with pytest.raises(ProtocolError, match="does not fit"):
        sender.receive(m.encode(m.Have((m.Prefix(0, 1, "a" * 64),))))
    sender, _ = offered(10, 10)
    sender.receive(m.encode(m.Accept(100, None, 1)))
    with pytest.raises(ProtocolError, match="more prefixes"):
        sender.receive(m.encode(m.Have((m.Prefix(0, 1, "a" * 64), m.Prefix(1, 1, "a" * 64)))))


def test_many_prefixes_travel_in_batches_under_64_kib() -> None:
    """1,200 files already there (a big directory, resent): three Have messages."""
    sizes = [2**40] * 1200
    sender, receiver = offered(*sizes)
    have = [m.Prefix(i, 2**40 - 1, hashlib.sha256(bytes(i)).hexdigest()) for i in range(1200)]
    frames = receiver.accept(100, have=have)
    assert len(frames) == 4 and all(len(f) < 64 * 1024 for f in frames)
    events = [e for f in frames for e in sender.receive(f)]
    assert events == [te.Accepted(100, {p.index: p for p in have})]


@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    cuts=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=5, max_size=5),
    window=st.integers(1, 200),
)
def test_resume_property(sizes: list[int], cuts: list[tuple[float, bool]], window: int) -> None:
    """Whatever the receiver holds and whether it matches, each file ends up whole: the
    receiver's bytes plus what is sent add up to the declared size, within the credit."""
    blobs = [bytes([i]) * n for i, n in enumerate(sizes)]
    sender, receiver = offered(*sizes)
    have = [
        m.Prefix(i, max(1, int(n * cut)), "e" * 64)
        for i, (n, (cut, _)) in enumerate(zip(sizes, cuts, strict=False))
        if n and cut > 0.3
    ]
    for frame in receiver.accept(window, have=have):
        sender.receive(frame)
    starts = {}
    for prefix in have:
        starts[prefix.index] = prefix.offset if cuts[prefix.index][1] else 0
        events = receiver.receive(sender.resume(prefix.index, starts[prefix.index]))
        assert events == [te.Resumed(prefix.index, starts[prefix.index])]
    for index, blob in enumerate(blobs):
        pos = starts.get(index, 0)
        assert sender.current == index and sender.current_remaining == len(blob) - pos
        while pos < len(blob):
            n = min(len(blob) - pos, sender.credit)
            assert n > 0, "sender starved: credit never returned"
            [chunk] = receiver.receive(sender.data(blob[pos : pos + n]))
            assert isinstance(chunk, te.ChunkReceived)
            pos += n
            grant = receiver.consumed(n)
            if grant is not None:
                sender.receive(grant)
        digest = hashlib.sha256(blob).hexdigest()
        assert receiver.receive(sender.end_file(digest)) == [te.FileEnded(index, digest)]


def test_every_resume_comes_before_any_data() -> None:
    """With two prefixes, the sender cannot send data (nor resume out of order) before both
    verdicts went out: the receiver decides what it cannot do before writing a byte."""
    sender, receiver = offered(10, 10, 10)
    have = [m.Prefix(0, 4, "a" * 64), m.Prefix(2, 5, "b" * 64)]
    for frame in receiver.accept(100, have=have):
        sender.receive(frame)
    with pytest.raises(RuntimeError):
        sender.resume(2, 5)
    receiver.receive(sender.resume(0, 4))
    with pytest.raises(RuntimeError):
        sender.data(b"x")
    with pytest.raises(ProtocolError, match="before the resume"):
        receiver.receive(m.encode(m.Data(b"x")))


# -- decisions the session used to make -------------------------------------------------------


def zstd_offered(*sizes: int) -> tuple[transfer.SenderProtocol, transfer.ReceiverProtocol]:
    entries = tuple(m.FileEntry(f"f{i}", s) for i, s in enumerate(sizes))
    sender = transfer.SenderProtocol(m.Offer(entries, compression=("zstd",)))
    receiver = transfer.ReceiverProtocol()
    for frame in sender.start():
        receiver.receive(frame)
    sender.receive(receiver.accept(1000, "zstd")[0])
    return sender, receiver


def test_the_protocol_picks_the_message_for_each_chunk() -> None:
    """Raw chunks go as Data, a raw last chunk (even empty) as one DataEnd; a compressed chunk
    as DataZ, and a compressed last one as DataZ then FileEnd (DataEnd is never compressed)."""
    sender, receiver = zstd_offered(10, 10, 0)
    plan = [
        (sender.chunk(b"01234"), [m.Data]),
        (sender.chunk(b"56789", digest="a" * 64), [m.DataEnd]),
        (sender.chunk(b"zstd", raw_len=6), [m.DataZ]),
        (sender.chunk(b"zs", raw_len=4, digest="b" * 64), [m.DataZ, m.FileEnd]),
        (sender.chunk(b"", digest="c" * 64), [m.DataEnd]),
    ]
    events: list[te.Event] = []
    for frames, kinds in plan:
        assert [type(m.decode(f)) for f in frames] == kinds
        events += [e for f in frames for e in receiver.receive(f)]
    assert [e for e in events if isinstance(e, te.FileEnded)] == [
        te.FileEnded(0, "a" * 64),
        te.FileEnded(1, "b" * 64),
        te.FileEnded(2, "c" * 64),
    ]
    assert sender.current is None and sender.credit == receiver.outstanding == 1000 - 20


def test_a_compressed_chunk_needs_agreed_compression() -> None:
    """Without an agreed codec the sender refuses to frame a compressed chunk at all."""
    sender, _ = offered(10)
    sender.receive(m.encode(m.Accept(100)))
    with pytest.raises(RuntimeError, match="compression"):
        sender.chunk(b"zstd", raw_len=10)


def test_compression_is_used_only_where_it_pays() -> None:
    """Small chunks are not tried; a chunk goes compressed only if that saves 10%; after one
    that does not, the rest of the file is not tried again."""
    trial = trials.CompressionTrial()
    assert not trial.worth_trying(trials.COMPRESS_MIN_BYTES - 1)
    assert trial.worth_trying(trials.COMPRESS_MIN_BYTES)
    assert trial.use_compressed(10_000, 9_000)
    assert trial.worth_trying(10_000)
    assert not trial.use_compressed(10_000, 9_001)
    assert not trial.worth_trying(65_536)
    assert trials.CompressionTrial().worth_trying(65_536)  # the next file tries again


def test_compression_waits_for_a_lagging_channel() -> None:
    """A chunk is compressed only with COMPRESS_WHEN_AHEAD pieces already waiting: when the
    channel waits for the reader, compressing would slow the transfer down."""
    trial = trials.CompressionTrial()
    assert not trial.worth_trying(65_536, ahead=trials.COMPRESS_WHEN_AHEAD - 1)
    assert trial.worth_trying(65_536, ahead=trials.COMPRESS_WHEN_AHEAD)
    assert trial.worth_trying(65_536, ahead=trials.COMPRESS_WHEN_AHEAD + 100)


def test_done_waits_for_finish() -> None:
    """The last file's acknowledgement and Done are only sent by finish(), which the receiver
    calls once everything (directories included) is in place, and never before every file was
    verified."""
    sender, receiver = offered(3, 4)
    receiver.accept(100)
    sender.receive(m.encode(m.Accept(100)))
    assert not receiver.received_all
    with pytest.raises(RuntimeError):
        receiver.finish()
    receiver.receive(sender.data_end(b"abc", "a" * 64))
    assert receiver.file_verified(0) == []  # small: acknowledged later, cumulatively
    receiver.receive(sender.data_end(b"defg", "b" * 64))
    with pytest.raises(RuntimeError):
        receiver.finish()  # file 1 arrived but is not verified yet
    assert receiver.file_verified(1) == []
    assert receiver.received_all and not receiver.finished
    frames = receiver.finish()
    assert [m.decode(f) for f in frames] == [m.FileAck(1), m.Done()]
    assert [e for f in frames for e in sender.receive(f)] == [
        te.FileAcked(1),
        te.Finished(),
    ]
    assert receiver.finished
    with pytest.raises(RuntimeError):
        receiver.finish()


def test_an_offer_without_data_finishes_once_accepted() -> None:
    """Directories only: nothing to receive, so Done may go as soon as the offer is accepted
    (and the directories are made), not before."""
    receiver = transfer.ReceiverProtocol()
    deliver_offer(receiver, m.Offer((m.FileEntry("d", 0, kind="dir"),)))
    assert not receiver.received_all
    receiver.accept(100)
    assert receiver.received_all
    assert [m.decode(f) for f in receiver.finish()] == [m.Done()]


def test_the_sender_lists_held_prefixes_in_sending_order() -> None:
    """One slot per entry that carries data (directories have none), in offer order."""
    entries = (m.FileEntry("a", 10), m.FileEntry("d", 0, kind="dir"), m.FileEntry("d/b", 10))
    sender = transfer.SenderProtocol(m.Offer(entries))
    sender.start()
    prefix = m.Prefix(2, 4, "a" * 64)
    sender.receive(m.encode(m.Accept(100, None, 1)))
    sender.receive(m.encode(m.Have((prefix,))))
    assert sender.held_prefixes == [None, prefix]


def _offer_frames(count: int, name_chars: int = 8) -> list[bytes]:
    entries = tuple(m.FileEntry(f"{i:0{name_chars}d}", 1) for i in range(count))
    return list(transfer.SenderProtocol(m.Offer(entries)).start())


def test_an_offer_declaring_too_many_entries_is_declined_on_its_first_message() -> None:
    """The declared count is checked before any entry is collected."""
    frames = _offer_frames(1_001)
    receiver = transfer.ReceiverProtocol(max_entries=1_000)
    with pytest.raises(DeclinedError, match="1,001 entries, more than 1,000"):
        receiver.receive(frames[0])
    accepted = transfer.ReceiverProtocol(max_entries=1_001)
    assert [e for f in frames for e in accepted.receive(f)][-1] == te.OfferReceived(
        m.Offer(tuple(m.FileEntry(f"{i:08d}", 1) for i in range(1_001)))
    )


def test_an_offer_over_the_byte_cap_is_declined_while_it_arrives() -> None:
    """Messages are counted as they come: the receiver never holds more than the cap."""
    frames = _offer_frames(3_000, name_chars=200)
    assert len(frames) > 3
    cap = len(frames[0]) + len(frames[1]) + 10
    receiver = transfer.ReceiverProtocol(max_offer_bytes=cap)
    assert receiver.receive(frames[0]) == [] and receiver.receive(frames[1]) == []
    with pytest.raises(DeclinedError, match="larger than"):
        receiver.receive(frames[2])
