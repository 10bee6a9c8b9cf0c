"""The dialogues of ``transfer.json``: scripts that drive the transfer protocol through every
path (offer, accept, decline, resume, credit, each data message, file ends, acks, aborts, and
each refusal), recorded by :mod:`tests.vectors.transcripts`. Where the page (``web/src``)
deliberately differs, the dialogue or step says so in a ``page`` field, with the reason.
"""

from __future__ import annotations

from typing import Any

import blake3
import zstandard

from p2pshare import messages as m
from p2pshare import transfer
from p2pshare.digests import BLAKE3, SHA256
from tests.vectors import shared_tables
from tests.vectors.transcripts import Dialogue, blob, file, sha

Json = dict[str, Any]
KIB = 1024

NO_FLAGS = "the page has no command-line options to suggest"
NO_COMPRESSION = (
    "the page never compresses: it has no zstd (its sender offers no codec, its receiver "
    "accepts none); the receiving class still follows the rules, so its side is replayed"
)
NO_BLAKE3 = (
    "the page hashes with SHA-256 only (no BLAKE3 in the browser build): its sender offers no "
    "other hash and its receiver never names one"
)

NO_BATCH = (
    "the page never asks for DataBatch (its receiver's Accept has no 'batch', its sender "
    "sends DataEnd only): batches are between command-line clients"
)


# -- dialogues --------------------------------------------------------------------------------


def _small_file() -> Json:
    data = b"hello"
    d = Dialogue(
        "one small file in one DataEnd",
        "The shortest transfer: the whole file and its end in one DataEnd; the receiver "
        "acknowledges the last file only in finish(), with Done.",
        [m.FileEntry("hello.txt", len(data), 0o644, 1700000000.0)],
    )
    d.handshake(64 * KIB)
    d.send_file(data, 64 * KIB)
    d.finish()
    return d.json


def _tree_with_credit() -> Json:
    a, b = blob(20, 3), blob(9, 5)
    d = Dialogue(
        "a directory, files and an empty file, with credit",
        "Window 8: data never exceeds the credit; the receiver grants consumed bytes back in "
        "batches of at least a quarter window; a file of at least a quarter window is "
        "acknowledged at once; a directory carries no data; FileEnd after Data, and DataEnd.",
        [file("album", b"", "dir"), file("album/a.bin", a), file("album/empty", b""), file("b", b)],
    )
    d.handshake(8)
    d.send_file(a, 8, combined=False)
    d.send_file(b"", 8, combined=False)
    d.send_file(b, 3)
    d.finish()
    return d.json


def _stream_and_text() -> Json:
    text = b"hello world"
    streamed = b"streamed bytes"
    d = Dialogue(
        "a stream of unknown size and a text",
        "A stream has no declared size (the offer's total is null): it ends when the sender "
        "says so, with the size it sent, and is acknowledged at once; a text is a small entry.",
        [file("stdin", None, "stream"), file("message.txt", text, "text")],
    )
    d.handshake(64)
    for piece in (streamed[:9], streamed[9:]):
        d.give("receiver", d.call("sender", "data", payload=piece))
    d.give("receiver", d.call("sender", "end_file", digest=sha(streamed)))
    d.give("sender", d.call("receiver", "file_verified", index=0))
    d.send_file(text, 64)
    d.finish()
    return d.json


def _directories_only() -> Json:
    d = Dialogue(
        "directories only",
        "Nothing carries data: once accepted, everything is received; finish() sends Done "
        "without a FileAck.",
        [file("a", b"", "dir"), file("a/b", b"", "dir")],
    )
    d.handshake(64)
    d.finish()
    return d.json


def _many_files() -> Json:
    count = transfer.ACK_EVERY_FILES + 2
    d = Dialogue(
        f"{count} empty files acknowledged cumulatively",
        f"Small files are acknowledged {transfer.ACK_EVERY_FILES} at a time (one FileAck for "
        "the latest); the last acknowledgement comes with Done.",
        [file(f"f{i}", b"") for i in range(count)],
    )
    d.handshake(64)
    for _ in range(count):
        d.send_file(b"", 64)
    d.finish()
    return d.json


def _batch() -> Json:
    a, b = blob(5, 3), blob(7, 5)
    d = Dialogue(
        "small files in one DataBatch",
        "A receiver that asks for batches (Accept 'batch': true) may get several whole "
        "entries in one DataBatch: each record is checked as a DataEnd (order, size, credit) "
        "and the receiver verifies and acknowledges them as files of their own. A directory "
        "carries no record; an empty file is a record without payload.",
        [file("d", b"", "dir"), file("d/a", a), file("d/empty", b""), file("b", b)],
        page={"sender": NO_BATCH, "receiver": NO_BATCH},
    )
    d.handshake(64, batch=True)
    files = [[a.hex(), sha(a)], ["", sha(b"")], [b.hex(), sha(b)]]
    d.give("receiver", d.call("sender", "data_batch", files=files))
    d.give("sender", d.call("receiver", "consumed", nbytes=len(a) + len(b)))
    for index in (1, 2, 3):
        d.give("sender", d.call("receiver", "file_verified", index=index))
    d.finish()
    return d.json


def _compression() -> Json:
    raw = b"p2pshare " * 1000
    frame = zstandard.ZstdCompressor(level=1).compress(raw)
    tail = blob(10)
    d = Dialogue(
        "zstd agreed: DataZ, then raw Data",
        "Credit and sizes count the raw bytes of a DataZ, never its compressed size; a file "
        "may mix DataZ and Data; DataEnd has no compressed form.",
        [file("log.txt", raw + tail)],
        compression=("zstd",),
        page={"sender": NO_COMPRESSION},
    )
    d.handshake(64 * KIB, compression="zstd")
    d.give("receiver", d.call("sender", "data_z", raw_len=len(raw), payload=frame))
    d.give("receiver", d.call("sender", "data_end", payload=tail, digest=sha(raw + tail)))
    d.give("sender", d.call("receiver", "file_verified", index=0))
    d.finish()
    return d.json


def _compression_declined() -> Json:
    data = blob(10)
    d = Dialogue(
        "zstd offered, not chosen",
        "The receiver names no codec: the transfer goes raw; the sender cannot frame a DataZ "
        "and the receiver refuses one.",
        [file("a.bin", data)],
        compression=("zstd",),
        page={"sender": NO_COMPRESSION},
    )
    d.handshake(64)
    zstd_magic = b"\x28\xb5\x2f\xfd"
    d.call("sender", "data_z", expect="misuse", raw_len=10, payload=zstd_magic)
    d.give("receiver", [m.encode(m.DataZ(10, zstd_magic))], expect="refused")
    return d.json


def _blake3() -> Json:
    data = b"hashed with BLAKE3"
    d = Dialogue(
        "BLAKE3 chosen",
        "The receiver picks a hash the sender offered: Accept names it, and every digest "
        "(FileEnd, DataEnd, Have) is of that hash.",
        [file("a.txt", data)],
        hashes=(BLAKE3,),
        page={"sender": NO_BLAKE3, "receiver": NO_BLAKE3},
    )
    d.handshake(64, hash=BLAKE3)
    digest = blake3.blake3(data).hexdigest()
    d.give("receiver", d.call("sender", "data_end", payload=data, digest=digest))
    d.give("sender", d.call("receiver", "file_verified", index=0))
    d.finish()
    return d.json


def _blake3_not_chosen() -> Json:
    data = b"hashed with SHA-256"
    d = Dialogue(
        "BLAKE3 offered, SHA-256 kept",
        "What the page's receiver does with a CLI's offer: it names no hash, so both sides "
        "use SHA-256.",
        [file("a.txt", data)],
        hashes=(BLAKE3,),
        page={"sender": NO_BLAKE3},
    )
    d.handshake(64)
    d.send_file(data, 64)
    d.finish()
    return d.json


def _resume() -> Json:
    part, whole, changed, new = blob(12, 3), blob(6, 5), blob(8, 7), blob(4, 9)
    have = [
        m.Prefix(0, 5, sha(part[:5])),
        m.Prefix(1, 6, sha(whole)),
        m.Prefix(2, 3, sha(b"old")),
    ]
    d = Dialogue(
        "resume with Have",
        "The receiver holds prefixes of three entries (Accept counts them, Have lists them); "
        "the sender answers each with Resume before any data: its own prefix matched (the "
        "offset: only the rest is sent, FileEnd still gives the whole size and digest), or "
        "0 (afresh). Data before the last Resume is a caller's mistake.",
        [file("part", part), file("whole", whole), file("changed", changed), file("new", new)],
    )
    d.handshake(64, have=have)
    d.call("sender", "data", expect="misuse", payload=part[5:])
    for index, offset in ((0, 5), (1, 6), (2, 0)):
        d.give("receiver", d.call("sender", "resume", index=index, offset=offset))
    d.send_file(part, 64, combined=False)
    d.send_file(whole, 64)
    d.send_file(changed, 64)
    d.send_file(new, 64)
    d.finish()
    return d.json


def _decline() -> Json:
    d = Dialogue(
        "the receiver declines",
        "The receiver's user says no: it aborts with 'declined' (a local error: the peer is "
        "told the generic text); the sender's event carries the peer's words, prefixed.",
        [file("a.txt", b"x")],
    )
    d.give("receiver", d.call("sender", "start"))
    d.give(
        "sender",
        d.call("receiver", "abort", error="declined", message="the transfer was declined."),
    )
    d.give("sender", [m.encode(m.Credit(1))], expect="refused")
    return d.json


def _too_many_entries() -> Json:
    d = Dialogue(
        "an offer of more entries than the receiver takes",
        "The declared count is checked on the first frame, before any entry is kept.",
        [file(f"f{i}", b"x") for i in range(3)],
        max_entries=2,
    )
    frames = d.call("sender", "start")
    page = {"message": "not accepted: the offer has 3 entries, more than 2", "why": NO_FLAGS}
    d.give("receiver", frames, expect="refused", page=page)
    return d.json


def _offer_too_big() -> Json:
    d = Dialogue(
        "an offer larger than the receiver takes",
        "The offer's frames are counted as they come, whatever the sender declares.",
        [file(f"a-rather-long-name-{i}.txt", b"x") for i in range(3)],
        max_offer_bytes=100,
    )
    frames = d.call("sender", "start")
    page = {"message": "not accepted: the offer is larger than 100 bytes of names", "why": NO_FLAGS}
    d.give("receiver", frames, expect="refused", page=page)
    return d.json


def _offer_too_big_in_frames() -> Json:
    head = m.frame(
        m.Offer.TYPE, {"v": 1, "count": 2, "total": 2, "files": [file("a", b"x").to_json()]}
    )
    more = m.frame(m.OfferMore.TYPE, {"files": [file("b", b"y").to_json()]})
    limit = len(head) + len(more) - 1
    d = Dialogue(
        "an offer whose frames together are larger than the receiver takes",
        "The limit counts every frame of the offer, not each frame alone.",
        [],
        max_offer_bytes=limit,
    )
    d.give("receiver", [head])
    message = f"not accepted: the offer is larger than {limit} bytes of names"
    d.give("receiver", [more], expect="refused", page={"message": message, "why": NO_FLAGS})
    return d.json


def _offer_in_frames() -> Json:
    head = m.frame(
        m.Offer.TYPE, {"v": 1, "count": 3, "total": 3, "files": [file("a", b"x").to_json()]}
    )
    more = m.frame(
        m.OfferMore.TYPE, {"files": [file("b", b"yy").to_json(), file("c", b"", "dir").to_json()]}
    )
    d = Dialogue(
        "an offer in two frames",
        "Entries may follow the first frame in OfferMore frames (a sender batches them by "
        "size): the offer is complete when the declared count has arrived.",
        [],
    )
    d.give("receiver", [head, more])
    return d.json


def _aborts() -> Json:
    d = Dialogue(
        "aborts and pings",
        "Pings are answered by nothing, at any time; an Abort stops either side at any time. "
        "Its name is believed only if a peer may report it (interrupted: the peer left; "
        "unknown or local-only names: the peer stopped); its words are made printable.",
        [file("a.bin", blob(100))],
    )
    d.give("receiver", d.call("sender", "ping"))
    d.give("sender", d.call("receiver", "ping"))
    d.handshake(64)
    d.give("receiver", d.call("sender", "data", payload=blob(40)))
    d.give("receiver", d.call("sender", "abort", error="interrupted", message="interrupted."))
    for name, message in [
        ("disk-full", "disk full: not enough free space to receive."),
        ("unsafe-name", "cannot write 'CON'"),
        ("file-error", "a local file could not be read or written."),
        ("integrity", "hash mismatch"),
        ("protocol", "unexpected Data message"),
        ("declined", "no thanks\x1b[2J\u202e"),
        ("peer-lost", "gone"),
        ("wrong-code", "you typed the wrong code"),
        ("no-such-code", "no"),
        ("error", "something"),
        ("reboot", "an unknown name"),
    ]:
        d.give("sender", [m.encode(m.Abort(name, message))])
    return d.json


def _refusal(
    name: str,
    note: str,
    files: list[m.FileEntry],
    script: Any,
    **kwargs: Any,
) -> Json:
    d = Dialogue("refused: " + name, note, files, **kwargs)
    script(d)
    return d.json


UNASKED = {
    "message": "unknown message type 19",
    "why": "the page's decoder knows no DataBatch: it refuses the type itself",
}


def _receiver_refusals() -> list[Json]:
    one = [file("a", b"abc")]
    two = [file("a", b"abc"), file("b", b"de")]

    def data(payload: bytes) -> list[bytes]:
        return [m.encode(m.Data(payload))]

    def end(index: int, size: int, digest: str) -> list[bytes]:
        return [m.encode(m.FileEnd(index, size, digest))]

    def before_offer(d: Dialogue) -> None:
        d.give("receiver", data(b"x"), expect="refused")

    def total(d: Dialogue) -> None:
        head = {"v": 1, "count": 1, "total": 9, "files": [file("a", b"x").to_json()]}
        d.give("receiver", [m.frame(m.Offer.TYPE, head)], expect="refused")

    def extra_entries(d: Dialogue) -> None:
        d.give("receiver", [m.frame(m.Offer.TYPE, {"v": 1, "count": 1, "total": 1, "files": []})])
        more = {"files": [file("a", b"x").to_json(), file("b", b"").to_json()]}
        d.give("receiver", [m.frame(m.OfferMore.TYPE, more)], expect="refused")

    def more_first(d: Dialogue) -> None:
        more = {"files": [file("a", b"x").to_json()]}
        d.give("receiver", [m.frame(m.OfferMore.TYPE, more)], expect="refused")

    def second_offer(d: Dialogue) -> None:
        frames = d.call("sender", "start")
        d.give("receiver", frames)
        d.give("receiver", frames, expect="refused")

    def accepted(d: Dialogue, window: int = 64) -> None:
        d.handshake(window)

    def too_many_bytes(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", data(b"abcd"), expect="refused")

    def too_few_bytes(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", data(b"ab"))
        d.give("receiver", end(0, 2, sha(b"ab")), expect="refused")

    def wrong_size_claim(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", data(b"abc"))
        d.give("receiver", end(0, 4, sha(b"abc")), expect="refused")

    def wrong_entry(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", end(1, 2, sha(b"de")), expect="refused")

    def over_credit(d: Dialogue) -> None:
        accepted(d, window=2)
        d.give("receiver", data(b"ab"))
        d.give("receiver", data(b"c"), expect="refused")

    def empty_data(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", data(b""), expect="refused")

    def resume_first(d: Dialogue) -> None:
        d.handshake(64, have=[m.Prefix(0, 2, sha(b"ab"))])
        d.give("receiver", data(b"c"), expect="refused")

    def resume_offset(d: Dialogue) -> None:
        d.handshake(64, have=[m.Prefix(0, 2, sha(b"ab"))])
        d.give("receiver", [m.encode(m.Resume(0, 1))], expect="refused")

    def past_the_offer(d: Dialogue) -> None:
        accepted(d)
        d.send_file(b"abc", 64)
        d.give("receiver", data(b"x"), expect="refused")

    def batch(*records: tuple[int, bytes]) -> list[bytes]:
        return [
            m.encode(m.DataBatch(tuple(m.BatchRecord(i, len(p), sha(p), p) for i, p in records)))
        ]

    def batch_unasked(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", batch((0, b"abc"), (1, b"de")), expect="refused", page=UNASKED)

    def batch_over_credit(d: Dialogue) -> None:
        d.handshake(4, batch=True)
        d.give("receiver", batch((0, b"abc"), (1, b"de")), expect="refused")

    def batch_out_of_order(d: Dialogue) -> None:
        d.handshake(64, batch=True)
        d.give("receiver", batch((1, b"de"), (0, b"abc")), expect="refused")

    def batch_wrong_size(d: Dialogue) -> None:
        d.handshake(64, batch=True)
        d.give("receiver", batch((0, b"abcd"), (1, b"de")), expect="refused")

    def batch_past_the_offer(d: Dialogue) -> None:
        d.handshake(64, batch=True)
        d.give("receiver", batch((0, b"abc"), (1, b"de"), (2, b"")), expect="refused")

    def undecodable(d: Dialogue) -> None:
        accepted(d)
        d.give("receiver", [b"\x0c{}"], expect="refused")

    def after_done(d: Dialogue) -> None:
        accepted(d)
        d.send_file(b"abc", 64)
        d.finish()
        d.give("receiver", [transfer.ping()])
        d.give("receiver", data(b"x"), expect="refused")

    return [
        _refusal("data before any offer", "Only an offer may come first.", one, before_offer),
        _refusal("a total that does not add up", "The offer's total is checked.", one, total),
        _refusal("more entries than declared", "The count is a promise.", one, extra_entries),
        _refusal("OfferMore first", "OfferMore continues an offer.", one, more_first),
        _refusal("a second offer", "One offer per transfer.", one, second_offer),
        _refusal("more bytes than declared", "Sizes are exact.", one, too_many_bytes),
        _refusal("a file ended early", "Sizes are exact.", one, too_few_bytes),
        _refusal("an end claiming another size", "FileEnd is checked.", one, wrong_size_claim),
        _refusal("an end for the next entry", "Entries come in order.", two, wrong_entry),
        _refusal("data beyond the credit", "Flow control is enforced.", one, over_credit),
        _refusal("an empty Data", "Data carries bytes.", one, empty_data),
        _refusal("data before Resume", "Every listed prefix first.", one, resume_first),
        _refusal("a resume at another offset", "Resume: the prefix or 0.", one, resume_offset),
        _refusal("data past the last entry", "Nothing after the last entry.", one, past_the_offer),
        _refusal("a frame that does not decode", "Unknown types are refused.", one, undecodable),
        _refusal("data after Done", "The transfer is over.", one, after_done),
        _refusal(
            "a batch the receiver did not ask for",
            "DataBatch only after Accept 'batch': true (the page never asks).",
            two,
            batch_unasked,
        ),
        _refusal(
            "a batch beyond the credit",
            "Each record within the credit.",
            two,
            batch_over_credit,
            page={"receiver": NO_BATCH},
        ),
        _refusal(
            "a batch with an entry out of order",
            "Records in entry order.",
            two,
            batch_out_of_order,
            page={"receiver": NO_BATCH},
        ),
        _refusal(
            "a batch record of the wrong size",
            "Record sizes are exact.",
            two,
            batch_wrong_size,
            page={"receiver": NO_BATCH},
        ),
        _refusal(
            "a batch past the last entry",
            "Nothing after the last entry.",
            two,
            batch_past_the_offer,
            page={"receiver": NO_BATCH},
        ),
    ]


def _sender_refusals() -> list[Json]:
    one = [file("a", b"abc")]
    two = [file("a", b"abc"), file("b", b"de")]
    digest = sha(b"ab")

    def accept(d: Dialogue, **fields: Any) -> None:
        d.call("sender", "start")
        d.give("sender", [m.encode(m.Accept(**{"window": 64, **fields}))], expect="refused")

    def codec(d: Dialogue) -> None:
        accept(d, compression="zstd")

    def digest_name(d: Dialogue) -> None:
        accept(d, hash=BLAKE3)

    def extra_prefixes(d: Dialogue) -> None:
        d.call("sender", "start")
        d.give("sender", [m.encode(m.Accept(64, have=1))])
        have = m.Have((m.Prefix(0, 2, digest), m.Prefix(1, 1, sha(b"d"))))
        d.give("sender", [m.encode(have)], expect="refused")

    def prefixes(d: Dialogue, *items: m.Prefix) -> None:
        d.call("sender", "start")
        d.give("sender", [m.encode(m.Accept(64, have=len(items)))])
        d.give("sender", [m.encode(m.Have(items))], expect="refused")

    def unordered(d: Dialogue) -> None:
        prefixes(d, m.Prefix(1, 1, sha(b"d")), m.Prefix(0, 2, digest))

    def past(d: Dialogue) -> None:
        prefixes(d, m.Prefix(2, 1, digest))

    def too_long(d: Dialogue) -> None:
        prefixes(d, m.Prefix(0, 4, digest))

    def have_first(d: Dialogue) -> None:
        d.call("sender", "start")
        d.give("sender", [m.encode(m.Have((m.Prefix(0, 2, digest),)))], expect="refused")

    def ack_unsent(d: Dialogue) -> None:
        d.handshake(64)
        d.give("sender", [m.encode(m.FileAck(0))], expect="refused")

    def done_early(d: Dialogue) -> None:
        d.handshake(64)
        d.give("receiver", d.call("sender", "data_end", payload=b"abc", digest=sha(b"abc")))
        d.give("sender", [m.encode(m.Done())], expect="refused")

    def credit_first(d: Dialogue) -> None:
        d.call("sender", "start")
        d.give("sender", [m.encode(m.Credit(10))], expect="refused")

    def second_accept(d: Dialogue) -> None:
        d.handshake(64)
        d.give("sender", [m.encode(m.Accept(64))], expect="refused")

    return [
        _refusal("a codec not offered", "The receiver picks among the offer.", one, codec),
        _refusal("a hash not offered", "The receiver picks among the offer.", one, digest_name),
        _refusal("more prefixes than declared", "Accept counts them.", two, extra_prefixes),
        _refusal("prefixes out of order", "Prefixes come in entry order.", two, unordered),
        _refusal("a prefix past the offer", "Prefixes name entries.", two, past),
        _refusal("a prefix longer than its entry", "Prefixes fit.", two, too_long),
        _refusal("Have before Accept", "Have follows Accept.", one, have_first),
        _refusal("an ack of an unsent file", "Acks follow data.", one, ack_unsent),
        _refusal("Done before the last ack", "Done comes last.", two, done_early),
        _refusal("credit before Accept", "Accept comes first.", one, credit_first),
        _refusal("a second Accept", "One Accept per transfer.", one, second_accept),
    ]


def _misuse() -> Json:
    d = Dialogue(
        "a caller's mistakes",
        "Calls that break the protocol's rules on our own side raise at once (RuntimeError, "
        "an Error in JavaScript) and change nothing: they are bugs, never a peer's doing.",
        [file("a", b"abcd"), file("b", b"e")],
    )
    d.call("receiver", "accept", expect="misuse", window=64, compression=None, have=[], hash=SHA256)
    d.handshake(2)
    d.call("sender", "data", expect="misuse", payload=b"abc")
    d.call("sender", "end_file", expect="misuse", digest=sha(b"abcd"))
    d.call("sender", "data_end", expect="misuse", payload=b"ab", digest=sha(b"abcd"))
    d.call("sender", "resume", expect="misuse", index=0, offset=2)
    d.call("receiver", "finish", expect="misuse")
    d.call("receiver", "file_verified", expect="misuse", index=0)
    return d.json


def _batch_misuse() -> Json:
    a, b = b"abcd", b"e"
    d = Dialogue(
        "a caller's mistakes with batches",
        "data_batch takes whole entries only (not a part of one), at least one, within the "
        "credit (4: 'abcd' and 'e' do not fit together); anything else raises and changes "
        "nothing.",
        [file("a", a), file("b", b)],
        page={"sender": NO_BATCH, "receiver": NO_BATCH},
    )
    whole = [[a.hex(), sha(a)], [b.hex(), sha(b)]]
    d.handshake(4, batch=True)
    d.call("sender", "data_batch", expect="misuse", files=[[a[:2].hex(), sha(a)]])
    d.call("sender", "data_batch", expect="misuse", files=whole)
    d.call("sender", "data_batch", expect="misuse", files=[])
    return d.json


def _batch_unasked_misuse() -> Json:
    a = b"abcd"
    d = Dialogue(
        "a batch for a receiver that did not ask",
        "data_batch raises when the receiver's Accept had no 'batch' (the page's case).",
        [file("a", a)],
        page={"sender": NO_BATCH},
    )
    d.handshake(4)
    d.call("sender", "data_batch", expect="misuse", files=[[a.hex(), sha(a)]])
    return d.json


def dialogues() -> list[Json]:
    return [
        _small_file(),
        _tree_with_credit(),
        _stream_and_text(),
        _directories_only(),
        _many_files(),
        _batch(),
        _compression(),
        _compression_declined(),
        _blake3(),
        _blake3_not_chosen(),
        _resume(),
        _decline(),
        _too_many_entries(),
        _offer_too_big(),
        _offer_too_big_in_frames(),
        _offer_in_frames(),
        _aborts(),
        _misuse(),
        _batch_misuse(),
        _batch_unasked_misuse(),
        *_receiver_refusals(),
        *_sender_refusals(),
    ]


def build_transfer() -> Json:
    return {
        "description": (
            "The transfer protocol (docs/protocol.md, 'Transfer messages'; p2pshare/transfer.py"
            ", web/src/transfer.js) as recorded dialogues, the error table (p2pshare/errors.py)"
            " and the limits both clients share. Regenerate with `python -m "
            "tests.vectors.generate`; checked by tests/test_vectors.py and replayed by "
            "web/test/transfer_vectors.test.js."
        ),
        "conventions": (
            "A dialogue's sender is SenderProtocol(Offer(files, compression, hashes)), its "
            "receiver ReceiverProtocol(max_entries, max_offer_bytes). Each step acts on one "
            "side: 'call' names a method (Python's name; args as JSON, bytes as hex, 'have' as "
            "[index, offset, digest] triples; 'abort' and 'ping' are transfer.abort/ping, "
            "'consumed' returning nothing gives no frames), 'receive' feeds one frame. The "
            "outcome is 'frames' (hex, with the decoded message type), 'events' (type: the "
            "Python event class; fields), 'refused' (a peer's fault: the error name and "
            "message) or 'misuse' (a caller's mistake: the message); 'state' is what the side "
            "holds afterwards. The two sides share only frames: each can be replayed alone. "
            "'page' on a dialogue names a side the page does not replay and why; on a step, "
            "the page's own words and why. mtime is a float in Python (1700000000.0)."
        ),
        "limits": shared_tables.limits(),
        "errors": shared_tables.error_table(),
        "dialogues": dialogues(),
    }
