"""Transfer transcripts for ``transfer.json``: the sans-I/O transfer protocol driven through
scripted dialogues, with what each side answers, plus the shared error table and limits.

A dialogue is one :class:`~p2pshare.transfer.SenderProtocol` and one
:class:`~p2pshare.transfer.ReceiverProtocol`. Each step is one thing done to one side: a method
called (``call`` with JSON ``args``) or a frame fed to ``receive``; what comes back is recorded
(``frames`` out, ``events``, or a refusal: ``refused`` for a peer's fault, an error every
implementation raises with the same name; ``misuse`` for a caller's mistake) together with a
few fields of the side's state afterwards. Sides never share objects, only frames, so either
side of a dialogue can be replayed on its own: :func:`perform`, :func:`events_json` and
:func:`state_json` are the replay, used to record here and by ``tests/test_vectors.py`` to check
the file; ``web/test/transfer_vectors.test.js`` does the same against ``web/src/transfer.js``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from p2pshare import errors, transfer, transfer_events
from p2pshare import messages as m
from p2pshare.digests import SHA256
from p2pshare.transfer import ReceiverProtocol, SenderProtocol

Json = dict[str, Any]
Side = SenderProtocol | ReceiverProtocol

# -- the replay (shared by the generator and the tests) ---------------------------------------


def frame_json(frame: bytes) -> Json:
    """A frame as the file records it: its bytes, and its message type when it decodes."""
    try:
        kind: str | None = type(m.decode(frame)).__name__
    except errors.ProtocolError:
        kind = None
    return {"hex": frame.hex(), "message": kind}


def entry_json(entry: m.FileEntry) -> Json:
    return {
        "path": entry.path,
        "size": entry.size,
        "mode": entry.mode,
        "mtime": entry.mtime,
        "kind": entry.kind,
    }


def entry_from_json(obj: Json) -> m.FileEntry:
    return m.FileEntry(obj["path"], obj["size"], obj["mode"], obj["mtime"], obj["kind"])


def error_json(error: errors.P2PShareError) -> Json:
    return {"name": error.name, "message": error.message}


def events_json(events: Sequence[transfer_events.Event]) -> list[Json]:
    """Events in the file's terms: ``type`` is the Python class, ``fields`` its data."""
    out: list[Json] = []
    for event in events:
        fields: Json
        if isinstance(event, transfer_events.OfferReceived):
            offer = event.offer
            fields = {
                "files": [entry_json(e) for e in offer.files],
                "compression": list(offer.compression),
                "hashes": list(offer.hashes),
            }
        elif isinstance(event, transfer_events.Accepted):
            have = [[p.index, p.offset, p.sha256] for _, p in sorted(event.have.items())]
            fields = {"window": event.window, "have": have}
        elif isinstance(event, transfer_events.Resumed):
            fields = {"index": event.index, "offset": event.offset}
        elif isinstance(event, transfer_events.ChunkReceived):
            fields = {
                "index": event.index,
                "payload": event.payload.hex(),
                "raw_len": event.raw_len,
            }
        elif isinstance(event, transfer_events.FileEnded):
            fields = {"index": event.index, "digest": event.digest}
        elif isinstance(event, transfer_events.BatchReceived):
            fields = {"files": [[i, payload.hex(), digest] for i, payload, digest in event.files]}
        elif isinstance(event, transfer_events.FileAcked):
            fields = {"index": event.index}
        elif isinstance(event, transfer_events.Finished):
            fields = {}
        else:
            fields = {"error": error_json(event.error)}
        out.append({"type": type(event).__name__, "fields": fields})
    return out


def state_json(side: Side) -> Json:
    """What the file pins of a side's state after each step."""
    if isinstance(side, SenderProtocol):
        return {"credit": side.credit, "current": side.current, "acked": side.acked}
    return {
        "outstanding": side.outstanding,
        "received_all": side.received_all,
        "finished": side.finished,
    }


def new_sides(dialogue: Json) -> tuple[SenderProtocol, ReceiverProtocol]:
    """Both sides of a dialogue, as its ``sender`` and ``receiver`` fields describe them."""
    s, r = dialogue["sender"], dialogue["receiver"]
    offer = m.Offer(
        tuple(entry_from_json(e) for e in s["files"]),
        compression=tuple(s["compression"]),
        hashes=tuple(s["hashes"]),
    )
    return SenderProtocol(offer), ReceiverProtocol(r["max_entries"], r["max_offer_bytes"])


def _prefixes(items: list[list[Any]]) -> list[m.Prefix]:
    return [m.Prefix(index, offset, digest) for index, offset, digest in items]


def _abort(args: Json) -> list[bytes]:
    cls = errors.ERRORS_BY_NAME[args["error"]]
    return [transfer.abort(cls(args["message"], peer_message=args["message"]))]


def _sender_call(side: SenderProtocol, method: str, args: Json) -> list[bytes]:
    b = bytes.fromhex
    calls: dict[str, Callable[[], list[bytes]]] = {
        "start": lambda: list(side.start()),
        "resume": lambda: [side.resume(args["index"], args["offset"])],
        "data": lambda: [side.data(b(args["payload"]))],
        "data_z": lambda: [side.data_z(args["raw_len"], b(args["payload"]))],
        "data_end": lambda: [side.data_end(b(args["payload"]), args["digest"])],
        "end_file": lambda: [side.end_file(args["digest"])],
        "data_batch": lambda: [side.data_batch([(b(p), d) for p, d in args["files"]])],
    }
    return calls[method]()


def _receiver_call(side: ReceiverProtocol, method: str, args: Json) -> list[bytes]:
    if method == "accept":
        have = _prefixes(args["have"])
        batch = args.get("batch", False)
        return side.accept(args["window"], args["compression"], have, args["hash"], batch)
    if method == "consumed":
        grant = side.consumed(args["nbytes"])
        return [] if grant is None else [grant]
    if method == "file_verified":
        return side.file_verified(args["index"])
    if method == "finish":
        return side.finish()
    raise KeyError(method)


def perform(side: Side, step: Json) -> Json:
    """Carry out one step on ``side`` and return what the file records for it (the step's
    keys other than ``side``, ``call``, ``args``, ``receive`` and ``page``)."""
    out: Json = {}
    try:
        if "receive" in step:
            out["events"] = events_json(side.receive(bytes.fromhex(step["receive"]["hex"])))
        else:
            method, args = step["call"], step["args"]
            if method == "abort":
                frames = _abort(args)
            elif method == "ping":
                frames = [transfer.ping()]
            elif isinstance(side, SenderProtocol):
                frames = _sender_call(side, method, args)
            else:
                frames = _receiver_call(side, method, args)
            out["frames"] = [frame_json(f) for f in frames]
    except errors.P2PShareError as exc:
        out = {"refused": error_json(exc)}
    except RuntimeError as exc:
        out = {"misuse": str(exc)}
    out["state"] = state_json(side)
    return out


# -- recording --------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(n: int, seed: int = 1) -> bytes:
    """``n`` bytes that differ from file to file (as web/test's ``bytes(n, seed)``)."""
    return bytes((i * seed + 7) & 0xFF for i in range(n))


class Dialogue:
    """Records a dialogue while it is scripted: each call returns what the side returned, and
    fails loudly if the outcome is not the one the script expects."""

    def __init__(
        self,
        name: str,
        note: str,
        files: Sequence[m.FileEntry],
        *,
        compression: tuple[str, ...] = (),
        hashes: tuple[str, ...] = (),
        max_entries: int = transfer.DEFAULT_MAX_OFFER_ENTRIES,
        max_offer_bytes: int = transfer.DEFAULT_MAX_OFFER_BYTES,
        page: dict[str, str] | None = None,
    ) -> None:
        self.json: Json = {
            "name": name,
            "note": note,
            "sender": {
                "files": [entry_json(e) for e in files],
                "compression": list(compression),
                "hashes": list(hashes),
            },
            "receiver": {"max_entries": max_entries, "max_offer_bytes": max_offer_bytes},
        }
        if page:
            self.json["page"] = page
        self.json["steps"] = []
        self.sender, self.receiver = new_sides(self.json)

    def _side(self, name: str) -> Side:
        return self.sender if name == "sender" else self.receiver

    def _record(self, step: Json, expect: str, page: Json | None) -> Json:
        result = perform(self._side(step["side"]), step)
        outcome = next(k for k in ("events", "frames", "refused", "misuse") if k in result)
        assert outcome == expect, f"{self.json['name']}: {step} gave {result}"
        step.update(result)
        if page:
            step["page"] = page
        self.json["steps"].append(step)
        return result

    def call(self, side: str, method: str, expect: str = "frames", **args: Any) -> list[bytes]:
        """``side``'s ``method`` with ``args`` (bytes as hex); the frames it returned."""
        step: Json = {"side": side, "call": method, "args": _args_json(args)}
        result = self._record(step, expect, None)
        return [bytes.fromhex(f["hex"]) for f in result.get("frames", [])]

    def give(
        self, side: str, frames: Sequence[bytes], expect: str = "events", page: Json | None = None
    ) -> list[Json]:
        """Feed ``frames`` to ``side`` one by one; the events of the last."""
        events: list[Json] = []
        for frame in frames:
            result = self._record({"side": side, "receive": frame_json(frame)}, expect, page)
            events = result.get("events", [])
        return events

    def handshake(self, window: int, **accept: Any) -> None:
        """Offer, accept with ``window`` (and ``accept``'s other arguments), accepted."""
        self.give("receiver", self.call("sender", "start"))
        args = {"compression": None, "have": [], "hash": SHA256, **accept}
        self.give("sender", self.call("receiver", "accept", window=window, **args))

    def send_file(self, data: bytes, chunk: int, *, combined: bool = True) -> None:
        """The sender's current file in chunks of at most ``chunk`` (and its credit), each
        consumed at once by the receiver, which returns credit; then the file's end (in the
        last DataEnd when ``combined``, else a FileEnd) and its verification."""
        index = self.sender.current
        pos = self.sender.sent_in_file
        ended = False
        while pos < len(data):
            n = min(chunk, len(data) - pos, self.sender.credit)
            assert n > 0, "the script starved the sender"
            if combined and pos + n == len(data):
                frames = self.call("sender", "data_end", payload=data[pos:], digest=sha(data))
                ended = True
            else:
                frames = self.call("sender", "data", payload=data[pos : pos + n])
            self.give("receiver", frames)
            self.give("sender", self.call("receiver", "consumed", nbytes=n))
            pos += n
        if not ended:
            if combined:
                frames = self.call("sender", "data_end", payload=b"", digest=sha(data))
            else:
                frames = self.call("sender", "end_file", digest=sha(data))
            self.give("receiver", frames)
        self.give("sender", self.call("receiver", "file_verified", index=index))

    def finish(self) -> None:
        self.give("sender", self.call("receiver", "finish"))


def _args_json(args: Json) -> Json:
    out: Json = {}
    for key, value in args.items():
        if isinstance(value, bytes):
            value = value.hex()
        elif key == "have":
            value = [[p.index, p.offset, p.sha256] for p in value]
        out[key] = value
    return out


def file(path: str, data: bytes | None, kind: str = "file", mode: int = 0o644) -> m.FileEntry:
    size = None if data is None else len(data)
    return m.FileEntry(path, size, 0o755 if kind == "dir" else mode, None, kind)
