"""Regenerate the cross-language test vectors: ``python -m tests.vectors.generate``.

Every value in the JSON files comes from the real Python code (``p2pshare.pake``,
``p2pshare.messages``, ``p2pshare.codec``, ``signal_server.protocol``) with fixed inputs, so the
output is byte-identical from run to run; ``tests/test_vectors.py`` checks that, and checks every
vector in both directions. Intermediate SPAKE2 values are recomputed here from the ``spake2``
0.9 building blocks and cross-checked against :class:`~p2pshare.pake.PakeSession`, so that an
implementation in another language can be debugged one step at a time.

Conventions in the files: byte strings are lowercase hex (keys ending in ``_hex``, and every
``payload``/``hex`` field); big integers (scalars, coordinates) are decimal strings.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import ed25519_basic
from spake2.parameters.ed25519 import ParamsEd25519

from p2pshare import __version__
from p2pshare import messages as m
from p2pshare.codes import words_from_key
from p2pshare.mailbox import APPID, phase_name
from p2pshare.pake import PROTOCOL_ID, PakeSession, Role
from signal_server import protocol as rp
from tests.vectors.reconnect_vectors import build_reconnect
from tests.vectors.transfer_vectors import build_transfer

VECTORS_DIR = Path(__file__).resolve().parent
ID_A = PROTOCOL_ID + b"/sender"
ID_B = PROTOCOL_ID + b"/receiver"
CODE = "7-guitar-ocean"
WRONG_CODE = "7-guitar-violin"
ENTROPY_A = hashlib.sha512(b"p2pshare test vectors: sender entropy").digest()
ENTROPY_B = hashlib.sha512(b"p2pshare test vectors: receiver entropy").digest()
SCALAR_ENTROPY_BYTES = 64
"""spake2 0.9 draws one 64-byte string per side (``random_scalar``): big-endian, mod L."""

Json = dict[str, Any]


def fixed_entropy(data: bytes) -> Callable[[int], bytes]:
    """An entropy source that hands out ``data`` exactly once, for exactly that many bytes.

    Strict on purpose: if a new spake2 draws randomness differently, the vectors fail loudly
    instead of silently meaning something else.
    """
    calls: list[int] = []

    def entropy(n: int) -> bytes:
        if calls or n != len(data):
            raise AssertionError(f"unexpected entropy request for {n} bytes")
        calls.append(n)
        return data

    return entropy


COMPACT_KEYS = frozenset({"fields", "object"})
"""Values under these keys are written on one line (an offer's entries would take thousands)."""
LINE_PER_ITEM_KEYS = frozenset({"steps", "from_peer", "limits", "errors"})
"""Lists under these keys are written one item per line (a dialogue step, a mapping)."""


def _dump(value: Any, indent: int, compact: bool, line_per_item: bool = False) -> str:
    if compact or not isinstance(value, dict | list) or not value:
        return json.dumps(value, ensure_ascii=False)
    if all(
        not isinstance(v, dict | list)
        for v in (value.values() if isinstance(value, dict) else value)
    ) and isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    pad = " " * (indent + 1)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k)}: "
            + _dump(v, indent + 1, k in COMPACT_KEYS, k in LINE_PER_ITEM_KEYS)
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _dump(v, indent + 1, line_per_item) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def render(obj: Json) -> str:
    """The exact text of a vector file: indented, except ``fields``/``object`` values, lists
    of scalars and items of ``steps``/``from_peer``, which stay on one line; stable key
    order; one trailing newline."""
    return _dump(obj, 0, False) + "\n"


# -- pake.json --------------------------------------------------------------------------------


def _hkdf(ikm: bytes, info: bytes, length: int, salt: bytes | None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _le32(scalar: int) -> str:
    return scalar.to_bytes(32, "little").hex()


def _point(x: int, y: int) -> bytes:
    encoded: bytes = ed25519_basic.encodepoint([x, y])
    return encoded


def _arbitrary_element(seed: bytes) -> Json:
    """spake2's M/N derivation, step by step (``ed25519_basic.arbitrary_element``)."""
    okm = _hkdf(seed, b"SPAKE2 arbitrary element", 48, b"")
    q = ed25519_basic.Q
    y0 = int.from_bytes(okm, "big") % q
    plus = 0
    while True:
        y = (y0 + plus) % q
        x = ed25519_basic.xrecover(y)
        if ed25519_basic.isoncurve([x, y]):
            candidate = ed25519_basic.ElementOfUnknownGroup(
                ed25519_basic.xform_affine_to_extended([x, y])
            )
            multiplied = candidate.scalarmult(8)
            if not ed25519_basic.is_extended_zero(multiplied.XYTZ):
                break
        plus += 1
    element: bytes = multiplied.to_bytes()
    return {
        "seed_ascii": seed.decode(),
        "hkdf_okm_hex": okm.hex(),
        "y_start": str(y0),
        "increments": plus,
        "candidate_hex": _point(x, y).hex(),
        "element_hex": element.hex(),
    }


def _side(role: Role, password: bytes, entropy: bytes, peer_message: bytes) -> Json:
    """One side's intermediate values, computed from spake2's parts (not from PakeSession)."""
    params = ParamsEd25519
    pw_scalar: int = params.group.password_to_scalar(password)
    scalar = int.from_bytes(entropy, "big") % ed25519_basic.L
    mine, theirs = (params.M, params.N) if role is Role.SENDER else (params.N, params.M)
    x_elem = ed25519_basic.Base.scalarmult(scalar)
    blinding = mine.scalarmult(pw_scalar)
    message_elem = x_elem.add(blinding)
    message = role.value.encode() + message_elem.to_bytes()
    inbound = params.group.bytes_to_element(peer_message[1:])
    unblinded = inbound.add(theirs.scalarmult(-pw_scalar))
    k_bytes: bytes = unblinded.scalarmult(scalar).to_bytes()
    x_msg, y_msg = (
        (message[1:], peer_message[1:]) if role is Role.SENDER else (peer_message[1:], message[1:])
    )
    transcript = b"".join(
        [
            hashlib.sha256(password).digest(),
            hashlib.sha256(ID_A).digest(),
            hashlib.sha256(ID_B).digest(),
            x_msg,
            y_msg,
            k_bytes,
        ]
    )
    key = hashlib.sha256(transcript).digest()
    derived = []
    for purpose in (b"confirm A", b"confirm B", b"seal A", b"seal B", b"verify"):
        info = PROTOCOL_ID + b" " + purpose
        derived.append(
            {
                "info_ascii": info.decode(),
                "info_hex": info.hex(),
                "okm_hex": _hkdf(key, info, 32, None).hex(),
            }
        )
    return {
        "role": role.name.lower(),
        "side": role.value,
        "entropy_hex": entropy.hex(),
        "scalar": str(scalar),
        "scalar_le_hex": _le32(scalar),
        "scalar_times_base_hex": x_elem.to_bytes().hex(),
        "password_times_blinding_hex": blinding.to_bytes().hex(),
        "message_element_hex": message_elem.to_bytes().hex(),
        "message_hex": message.hex(),
        "peer_message_hex": peer_message.hex(),
        "peer_unblinded_hex": unblinded.to_bytes().hex(),
        "shared_element_hex": k_bytes.hex(),
        "transcript_hex": transcript.hex(),
        "key_hex": key.hex(),
        "hkdf": derived,
    }


def _password(password: bytes) -> Json:
    okm = _hkdf(password, b"SPAKE2 pw", 48, b"")
    scalar = int.from_bytes(okm, "big") % ed25519_basic.L
    assert scalar == ParamsEd25519.group.password_to_scalar(password)
    return {
        "ascii": password.decode(),
        "hex": password.hex(),
        "hkdf_okm_hex": okm.hex(),
        "scalar": str(scalar),
        "scalar_le_hex": _le32(scalar),
    }


def _okm(side: Json, purpose: str) -> bytes:
    for item in side["hkdf"]:
        if item["info_ascii"].endswith(" " + purpose):
            return bytes.fromhex(item["okm_hex"])
    raise KeyError(purpose)


def _exchange(name: str, code_a: str, code_b: str) -> tuple[Json, PakeSession, PakeSession]:
    a = PakeSession(Role.SENDER, code_a.encode(), fixed_entropy(ENTROPY_A))
    b = PakeSession(Role.RECEIVER, code_b.encode(), fixed_entropy(ENTROPY_B))
    msg_a, msg_b = a.start(), b.start()
    a.finish(msg_b)
    b.finish(msg_a)
    sender = _side(Role.SENDER, code_a.encode(), ENTROPY_A, msg_b)
    receiver = _side(Role.RECEIVER, code_b.encode(), ENTROPY_B, msg_a)
    # Cross-check the step-by-step values against the real session.
    assert sender["message_hex"] == msg_a.hex() and receiver["message_hex"] == msg_b.hex()
    assert _okm(sender, "confirm A") == a.confirmation()
    assert _okm(receiver, "confirm B") == b.confirmation()
    for side, session in ((sender, a), (receiver, b)):
        side["verification_words"] = list(session.verification_words())
        assert side["verification_words"] == list(words_from_key(_okm(side, "verify")))
    exchange = {
        "name": name,
        "sender_password": _password(code_a.encode()),
        "receiver_password": _password(code_b.encode()),
        "sender": sender,
        "receiver": receiver,
        "keys_match": sender["key_hex"] == receiver["key_hex"],
    }
    return exchange, a, b


EXAMPLE_OFFER_SDP = (
    "v=0\r\n"
    "o=- 3911900000 3911900000 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=msid-semantic:WMS *\r\n"
    "m=application 40001 DTLS/SCTP 5000\r\n"
    "c=IN IP4 192.168.1.20\r\n"
    "a=mid:0\r\n"
    "a=sctpmap:5000 webrtc-datachannel 65535\r\n"
    "a=max-message-size:65536\r\n"
    "a=candidate:1 1 UDP 2130706431 192.168.1.20 40001 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:0123456789abcdefghijkl\r\n"
    "a=fingerprint:sha-256 "
    + ":".join(f"{b:02X}" for b in hashlib.sha256(b"offer cert").digest())
    + "\r\n"
    "a=setup:actpass\r\n"
)
EXAMPLE_ANSWER_SDP = (
    EXAMPLE_OFFER_SDP.replace("40001", "40002")
    .replace("192.168.1.20", "192.168.1.30")
    .replace("abcd", "wxyz")
    .replace(
        ":".join(f"{b:02X}" for b in hashlib.sha256(b"offer cert").digest()),
        ":".join(f"{b:02X}" for b in hashlib.sha256(b"answer cert").digest()),
    )
    .replace("a=setup:actpass", "a=setup:active")
)


def sdp_plaintext(kind: str, sdp: str) -> bytes:
    """What the session seals for an SDP (``json.dumps`` with its default separators)."""
    return json.dumps({"type": kind, "sdp": sdp}).encode()


def _sealed(session: PakeSession, key: bytes, counter: int, plaintext: bytes, note: str) -> Json:
    side = session.role.value
    nonce = counter.to_bytes(12, "big")
    aad = PROTOCOL_ID + side.encode()
    sealed = session.seal(plaintext)
    assert sealed == ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)
    return {
        "note": note,
        "sealed_by": session.role.name.lower(),
        "direction": f"{side}->{session.role.peer.value}",
        "counter": counter,
        "key_hex": key.hex(),
        "nonce_hex": nonce.hex(),
        "aad_ascii": aad.decode(),
        "aad_hex": aad.hex(),
        "plaintext_utf8": plaintext.decode(),
        "plaintext_hex": plaintext.hex(),
        "sealed_hex": sealed.hex(),
        "tag_hex": sealed[-16:].hex(),
        "rendezvous_body": base64.urlsafe_b64encode(sealed).decode(),
    }


def _invalid_peer_messages(own_message: bytes) -> list[Json]:
    """Bodies the sender (side A, after start) must refuse as a wrong code."""
    q = ed25519_basic.Q
    not_on_curve = next(
        y for y in range(2, 100) if not ed25519_basic.isoncurve([ed25519_basic.xrecover(y), y])
    )
    # Base + the point of order 2 (0, -1): on the curve, order 2L, outside the subgroup.
    mixed = ed25519_basic.Base.add(
        ed25519_basic.ElementOfUnknownGroup(ed25519_basic.xform_affine_to_extended([0, q - 1]))
    )
    cases = [
        (b"", "empty"),
        (b"B" + bytes(31), "32 bytes: too short"),
        (b"B" + bytes(33), "34 bytes: too long"),
        (b"A" + own_message[1:], "side byte A: the sender's own side"),
        (b"C" + own_message[1:], "side byte C: neither side"),
        (b"B" + _point(0, 1), "the identity element"),
        (b"B" + _point(0, q - 1), "the point of order 2"),
        (b"B" + mixed.to_bytes(), "on the curve but outside the prime-order subgroup"),
        (b"B" + not_on_curve.to_bytes(32, "little"), "y coordinate with no point on the curve"),
        (b"B" + own_message[1:], "reflection: the sender's own element with side byte B"),
    ]
    return [{"peer_message_hex": body.hex(), "reason": reason} for body, reason in cases]


def build_pake() -> Json:
    params = ParamsEd25519
    good, a, b = _exchange("same code", CODE, CODE)
    a.verify_confirmation(b.confirmation())
    b.verify_confirmation(a.confirmation())
    key_a, key_b = _okm(good["sender"], "seal A"), _okm(good["sender"], "seal B")
    sealed = [
        _sealed(a, key_a, 0, sdp_plaintext("offer", EXAMPLE_OFFER_SDP), "the sealed offer"),
        _sealed(b, key_b, 0, sdp_plaintext("answer", EXAMPLE_ANSWER_SDP), "the sealed answer"),
        _sealed(
            a,
            key_a,
            1,
            b"second message from A",
            "a second message from A: pins the counter (v1 sessions send one per direction)",
        ),
    ]
    offer = bytes.fromhex(sealed[0]["sealed_hex"])
    second = bytes.fromhex(sealed[2]["sealed_hex"])
    tampered = [
        (bytes([offer[0] ^ 0x01]) + offer[1:], "receiver", "first ciphertext bit flipped"),
        (offer[:-1] + bytes([offer[-1] ^ 0x80]), "receiver", "last tag bit flipped"),
        (offer[:-1], "receiver", "truncated by one byte"),
        (second, "receiver", "A's counter-1 message opened as its first (reordered)"),
        (offer, "sender", "A's own offer opened by A (wrong direction, wrong key)"),
        (offer[:16], "receiver", "shorter than a tag"),
    ]
    wrong, _, _ = _exchange("wrong code", CODE, WRONG_CODE)
    assert not wrong["keys_match"]
    wrong["note"] = (
        "Different passwords: both sides finish SPAKE2 without error but derive different "
        "keys, so each side's expected peer confirmation differs from what the peer sends."
    )
    return {
        "description": (
            "SPAKE2 pairing, key confirmation and sealed signalling of p2pshare.v1 "
            "(docs/protocol.md, 'Pairing'), with fixed randomness. Regenerate with "
            "`python -m tests.vectors.generate`; checked by tests/test_vectors.py."
        ),
        "conventions": (
            "Byte strings are lowercase hex; scalars and coordinates are decimal strings; "
            "'_le_hex' is a 32-byte little-endian scalar; elements are 32-byte Ed25519 "
            "encodings (y little-endian, top bit = x parity)."
        ),
        "construction": {
            "library": "python spake2 0.9 (SPAKE2_A for the sender, SPAKE2_B for the receiver)",
            "group": "Ed25519 prime-order subgroup, order L",
            "L": str(ed25519_basic.L),
            "base_hex": ed25519_basic.Base.to_bytes().hex(),
            "password_to_scalar": (
                "HKDF-SHA256(ikm=password, salt=empty, info='SPAKE2 pw', L=48), read as a "
                "big-endian integer, mod L"
            ),
            "random_scalar": "64 bytes of entropy read as a big-endian integer, mod L",
            "M_and_N": (
                "seed 'M' or 'N': HKDF-SHA256(ikm=seed, salt=empty, "
                "info='SPAKE2 arbitrary element', L=48) read big-endian, mod p = 2^255-19, "
                "gives y; try y, y+1, ... until a point (x, y) with the even x exists; "
                "multiply it by 8 (must not be the identity)"
            ),
            "M": _arbitrary_element(params.M_str),
            "N": _arbitrary_element(params.N_str),
            "sender_message": "'A' || encode(x*G + pw*M)",
            "receiver_message": "'B' || encode(y*G + pw*N)",
            "peer_message_checks": (
                "33 bytes, side byte of the peer; the element decodes, is not the identity, "
                "is in the prime-order subgroup (L*P = identity), and differs from our own "
                "element (reflection); anything else is a wrong code"
            ),
            "shared_element": "sender: x*(Y - pw*N); receiver: y*(X - pw*M)",
            "transcript": (
                "SHA256(password) || SHA256(idA) || SHA256(idB) || X || Y || K, where X and Y "
                "are the 32-byte elements without side bytes (X from the sender) and K the "
                "shared element"
            ),
            "key": "SHA256(transcript)",
            "hkdf": (
                "HKDF-SHA256(ikm=key, salt=none (32 zero bytes), info='p2pshare.v1 ' + "
                "purpose, L=32); purposes 'confirm A', 'confirm B', 'seal A', 'seal B', "
                "'verify'"
            ),
            "confirmation": (
                "each side sends its own 'confirm <side>' and compares the peer's with "
                "'confirm <peer side>' in constant time"
            ),
            "verification_words": (
                "the words shown to compare aloud (--verify): the first 4 bytes of 'verify', "
                "each the index of a word in p2pshare/wordlist.txt (256 words, line order)"
            ),
            "seal": (
                "ChaCha20-Poly1305 (RFC 8439), key 'seal <side of the sealer>', nonce = "
                "number of messages already sealed in that direction as 12 bytes big-endian, "
                "aad = 'p2pshare.v1' || side of the sealer; output ciphertext || 16-byte tag"
            ),
            "sdp_plaintext": (
                'UTF-8 JSON {"type": "offer"|"answer", "sdp": ...} as Python\'s '
                "json.dumps writes it (', ' and ': ' separators, non-ASCII escaped); a reader "
                "accepts any JSON object with those two string fields"
            ),
        },
        "protocol_id_ascii": PROTOCOL_ID.decode(),
        "idA_ascii": ID_A.decode(),
        "idA_hex": ID_A.hex(),
        "idB_ascii": ID_B.decode(),
        "idB_hex": ID_B.hex(),
        "exchanges": [good, wrong],
        "sealed": sealed,
        "tampered": [
            {"opened_by": who, "reason": reason, "sealed_hex": body.hex()}
            for body, who, reason in tampered
        ],
        "invalid_peer_messages": _invalid_peer_messages(
            bytes.fromhex(good["sender"]["message_hex"])
        ),
    }


# -- frames.json ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def message_fields(message: Any) -> Json:
    """The decoded fields of a message, as JSON (bytes as hex, tuples as lists)."""
    if isinstance(message, m.Offer):  # not a dataclass: its entries are a Manifest
        return {
            "files": [dataclasses.asdict(entry) for entry in message.files],
            "version": message.version,
            "compression": list(message.compression),
            "hashes": list(message.hashes),
        }
    fields: Json = _jsonable(dataclasses.asdict(message))
    if isinstance(message, m.Accept) and not message.batch:
        # Written only when true, as on the wire: the page's decoder has no such field.
        del fields["batch"]
    return fields


def message_from_fields(type_name: str, fields: Json) -> Any:
    """Rebuild a message (or an :class:`~p2pshare.messages.Offer`) from its JSON fields."""
    cls = getattr(m, type_name)
    kwargs: Json = {}
    for key, value in fields.items():
        if key == "files":
            kwargs[key] = tuple(m.FileEntry(**entry) for entry in value)
        elif key == "prefixes":
            kwargs[key] = tuple(m.Prefix(**prefix) for prefix in value)
        elif key == "records":
            kwargs[key] = tuple(
                m.BatchRecord(**{**r, "payload": bytes.fromhex(r["payload"])}) for r in value
            )
        elif key == "payload":
            kwargs[key] = bytes.fromhex(value)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _frame_vector(name: str, frame: bytes) -> Json:
    decoded = m.decode(frame)
    kind = type(decoded)
    return {
        "name": name,
        "type": kind.__name__,
        "type_byte": frame[0],
        "hex": frame.hex(),
        "fields": message_fields(decoded),
    }


SHA_OF_HELLO = hashlib.sha256(b"hello").hexdigest()


def _compressible(n: int) -> bytes:
    lines = (f"{i:05d} the quick brown fox jumps over the lazy dog\n" for i in range(n))
    return "".join(lines).encode()


def _control_frames() -> list[Json]:
    prefix = m.Prefix(3, 1_048_576, hashlib.sha256(b"prefix").hexdigest())
    messages: list[tuple[str, Any]] = [
        ("accept", m.Accept(8 * 1024 * 1024)),
        ("accept with zstd and prefixes", m.Accept(8 * 1024 * 1024, "zstd", 2)),
        ("accept with zstd and blake3", m.Accept(16 * 1024 * 1024, "zstd", 0, "blake3")),
        ("have", m.Have((m.Prefix(0, 4096, SHA_OF_HELLO), prefix))),
        ("resume", m.Resume(3, 1_048_576)),
        ("resume from the start", m.Resume(0, 0)),
        ("abort", m.Abort("declined", "the receiver declined the transfer")),
        ("abort with non-ASCII", m.Abort("interrupted", "arrêté — Ctrl-C")),
        ("credit", m.Credit(2 * 1024 * 1024)),
        ("file end", m.FileEnd(0, 5, SHA_OF_HELLO)),
        ("file ack", m.FileAck(41)),
        ("done", m.Done()),
        ("ping", m.Ping()),
        ("data", m.Data(b"hello")),
        ("empty data", m.Data(b"")),
        ("data end", m.DataEnd(1, 5, SHA_OF_HELLO, b"hello")),
        ("empty data end", m.DataEnd(2, 0, hashlib.sha256(b"").hexdigest(), b"")),
    ]
    return [_frame_vector(name, m.encode(message)) for name, message in messages]


def _cli_only_frames() -> list[Json]:
    """Frames only the command-line client speaks: the page never asks for batches."""
    empty = hashlib.sha256(b"").hexdigest()
    messages: list[tuple[str, Any]] = [
        ("accept with batches", m.Accept(1024 * 1024, "zstd", 0, "blake3", True)),
        (
            "data batch of two files and an empty one",
            m.DataBatch(
                (
                    m.BatchRecord(4, 5, SHA_OF_HELLO, b"hello"),
                    m.BatchRecord(5, 0, empty, b""),
                    m.BatchRecord(6, 3, hashlib.sha256(b"abc").hexdigest(), b"abc"),
                )
            ),
        ),
    ]
    return [_frame_vector(name, m.encode(message)) for name, message in messages]


def _offers() -> list[Json]:
    small = m.Offer(
        (
            m.FileEntry("photos/été.jpg", 5, 0o644, 1_700_000_000.25),
            m.FileEntry("photos", 0, 0o755, 1_700_000_000.0, "dir"),
            m.FileEntry("notes.txt", 0, 0o600),
        ),
        compression=("zstd",),
        hashes=("blake3",),
    )
    stream = m.Offer((m.FileEntry("stdin", None, 0o644, None, "stream"),))
    text = m.Offer((m.FileEntry("message.txt", 11, 0o644, None, "text"),))
    big = m.Offer(
        tuple(
            m.FileEntry(f"tree/dir-{i // 100:02d}/file-{i:04d}.bin", i, 0o644) for i in range(1100)
        ),
        compression=("zstd",),
    )
    offers = [
        ("offer of a file, a directory and an empty file", small),
        ("offer of a stream (size unknown)", stream),
        ("offer of a text message", text),
        ("offer of 1100 entries: Offer then OfferMore (48 KiB batches)", big),
    ]
    return [
        {
            "name": name,
            "fields": message_fields(offer),
            "frames": [
                _frame_vector(f"{name}, frame {i}", f) for i, f in enumerate(offer.frames())
            ],
        }
        for name, offer in offers
    ]


def _compression() -> Json:
    raw = _compressible(120)
    compressed = zstandard.ZstdCompressor(level=1).compress(raw)
    frame = m.encode(m.DataZ(len(raw), compressed))
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(1024 * 1024))
    bad = [
        (m.DataZ(len(raw) + 1, compressed), "the frame yields one byte less than raw_len"),
        (m.DataZ(len(raw) - 1, compressed), "the frame yields one byte more than raw_len"),
        (m.DataZ(4096, bomb), "1 MiB of zeros claimed as 4096 bytes (a decompression bomb)"),
        (m.DataZ(16, b"not a zstd frame"), "not a zstd frame"),
        (m.DataZ(len(raw), compressed[:-8]), "a truncated zstd frame"),
    ]
    return {
        "codec": "zstd",
        "note": (
            "Senders use zstd level 1 (python-zstandard defaults: content size written, no "
            "checksum); any valid zstd frame that yields exactly raw_len bytes is accepted, "
            "so another compressor need not reproduce these bytes."
        ),
        "libzstd_version": zstandard.ZSTD_VERSION,
        "level": 1,
        "raw_len": len(raw),
        "raw_hex": raw.hex(),
        "zstd_frame_hex": compressed.hex(),
        "frame": _frame_vector("compressed data", frame),
        "invalid": [
            {"hex": m.encode(message).hex(), "reason": reason, "error": "IntegrityError"}
            for message, reason in bad
        ],
    }


def _body(type_byte: int, text: str) -> str:
    return (bytes([type_byte]) + text.encode()).hex()


def _invalid_frames() -> list[Json]:
    entry = '{"path":"a","size":1,"mode":420}'

    def offer(files: str, extra: str = "") -> str:
        return _body(0x01, '{"v":1,"count":1,"total":1,"files":[' + files + "]" + extra + "}")

    h = hashlib.sha256(b"x").hexdigest()
    too_many = ",".join(["0"] * (m.HAVE_BATCH + 1))  # the count is checked first
    cases: list[tuple[str, str] | tuple[str, str, str]] = [
        ("", "empty message"),
        ("00", "unknown type 0x00"),
        (_body(0x0C, "{}"), "unknown type 0x0c"),
        (_body(0xFF, "{}"), "unknown type 0xff"),
        (_body(0x02, '{"window":1'), "bad JSON: unterminated object"),
        (_body(0x02, ""), "bad JSON: no body"),
        ("02ff", "body is not UTF-8"),
        (_body(0x02, "[1]"), "JSON body is an array, not an object"),
        (_body(0x07, "null"), "JSON body is null"),
        (_body(0x08, '"ping"'), "JSON body is a string"),
        (_body(0x02, "{}"), "Accept without window"),
        (_body(0x02, '{"window":0}'), "Accept window 0 (minimum 1)"),
        (_body(0x02, '{"window":2147483649}'), "Accept window above 2^31"),
        (_body(0x02, '{"window":"65536"}'), "Accept window is a string"),
        (_body(0x02, '{"window":true}'), "Accept window is a boolean"),
        (
            _body(0x02, '{"window":65536.0}'),
            "Accept window is a float",
            "JSON.parse cannot tell 65536.0 from 65536; a decoder needs the lexeme to refuse it",
        ),
        (_body(0x02, '{"window":65536,"compression":"gzip"}'), "Accept with an unknown codec"),
        (_body(0x02, '{"window":65536,"have":-1}'), "Accept have negative"),
        (_body(0x02, '{"window":65536,"hash":"md5"}'), "Accept with an unknown hash"),
        (_body(0x04, '{"bytes":0}'), "Credit of 0 bytes"),
        (_body(0x04, '{"bytes":-5}'), "Credit negative"),
        (_body(0x04, '{"bytes":null}'), "Credit bytes null"),
        (
            _body(0x05, '{"index":0,"size":5,"sha256":"' + SHA_OF_HELLO.upper() + '"}'),
            "FileEnd sha256 in uppercase hex",
        ),
        (
            _body(0x05, '{"index":0,"size":5,"sha256":"' + SHA_OF_HELLO[:-1] + '"}'),
            "FileEnd sha256 of 63 digits",
        ),
        (_body(0x05, '{"index":0,"size":5,"sha256":"' + "g" * 64 + '"}'), "FileEnd sha256 not hex"),
        (
            _body(0x05, '{"index":10000001,"size":5,"sha256":"' + SHA_OF_HELLO + '"}'),
            "FileEnd index above 10,000,000",
        ),
        (
            _body(0x05, '{"index":0,"size":4611686018427387905,"sha256":"' + SHA_OF_HELLO + '"}'),
            "FileEnd size above 2^62",
            "above 2^53: JSON.parse rounds it to 2^62 exactly; "
            "compare the lexeme or use a BigInt parser",
        ),
        (_body(0x06, '{"index":-1}'), "FileAck index negative"),
        (_body(0x06, '{"index":"0"}'), "FileAck index is a string"),
        (_body(0x0B, '{"index":0,"offset":-1}'), "Resume offset negative"),
        (_body(0x0A, '{"entries":[]}'), "Have with no entries"),
        (
            _body(0x0A, '{"entries":[' + too_many + "]}"),
            f"Have with {m.HAVE_BATCH + 1} entries (at most {m.HAVE_BATCH})",
        ),
        (_body(0x0A, '{"entries":[[0,1]]}'), "Have entry of two items"),
        (_body(0x0A, '{"entries":[[0,0,"' + h + '"]]}'), "Have offset 0 (minimum 1)"),
        (_body(0x0A, '{"entries":[[0,1,"' + h.upper() + '"]]}'), "Have sha256 in uppercase hex"),
        (_body(0x0A, '{"entries":{"0":[0,1,"' + h + '"]}}'), "Have entries is an object"),
        (
            _body(0x03, '{"error":"' + "x" * 65 + '","message":""}'),
            "Abort error name over 64 characters",
        ),
        (
            _body(0x03, '{"error":"declined","message":"' + "x" * 1025 + '"}'),
            "Abort message over 1024 characters",
        ),
        (_body(0x03, '{"error":"declined"}'), "Abort without message"),
        (
            _body(0x01, '{"v":2,"count":1,"total":1,"files":[' + entry + "]}"),
            "Offer of protocol version 2",
        ),
        (_body(0x01, '{"count":1,"total":1,"files":[' + entry + "]}"), "Offer without version"),
        (_body(0x01, '{"v":1,"count":0,"total":0,"files":[]}'), "Offer of 0 entries"),
        (
            _body(0x01, '{"v":1,"count":1,"total":1,"files":' + entry + "}"),
            "Offer files is an object",
        ),
        (offer(entry, ',"compression":"zstd"'), "Offer compression is a string, not a list"),
        (offer(entry, ',"hash":"blake3"'), "Offer hash is a string, not a list"),
        (
            offer(entry, ',"compression":[' + ",".join(['"zstd"'] * 9) + "]"),
            "Offer with 9 codecs (at most 8)",
        ),
        (
            offer(entry, ',"compression":["' + "z" * 17 + '"]'),
            "Offer codec name over 16 characters",
        ),
        (offer('{"path":"a","size":1,"mode":420,"kind":"link"}'), "entry of unknown kind"),
        (offer('{"path":"a","size":1,"mode":420,"kind":"stream"}'), "stream entry with a size"),
        (offer('{"path":"a","size":1,"mode":420,"kind":"dir"}'), "directory entry of size 1"),
        (offer('{"path":"a","size":1048577,"mode":420,"kind":"text"}'), "text entry over 1 MiB"),
        (offer('{"path":"a","size":-1,"mode":420}'), "entry size negative"),
        (offer('{"path":"a","mode":420}'), "file entry without size"),
        (offer('{"path":"a","size":1,"mode":4096}'), "entry mode above 0o7777"),
        (offer('{"path":1,"size":1,"mode":420}'), "entry path is a number"),
        (
            offer('{"path":"' + "a" * 4097 + '","size":1,"mode":420}'),
            "entry path over 4096 characters",
        ),
        (offer('{"path":"a","size":1,"mode":420,"mtime":-1}'), "entry mtime negative"),
        (offer('{"path":"a","size":1,"mode":420,"mtime":1099511627776}'), "entry mtime at 2^40"),
        (offer('{"path":"a","size":1,"mode":420,"mtime":true}'), "entry mtime is a boolean"),
        (
            offer('{"path":"a","size":1,"mode":420,"mtime":NaN}'),
            "entry mtime NaN (Python's JSON reader accepts the token)",
        ),
        (offer('"a"'), "entry is a string"),
        (_body(0x09, '{"files":null}'), "OfferMore files null"),
        ("12000001", "DataZ header truncated (3 of 4 bytes)"),
        ("1200000000" + "28b52ffd", "DataZ raw_len 0"),
        ("1200100001" + "28b52ffd", "DataZ raw_len 1 MiB + 1"),
        ("11" + "00" * 43, "DataEnd header truncated (43 of 44 bytes)"),
        ("11" + "00989681" + "00" * 8 + "00" * 32, "DataEnd index 10,000,001"),
        ("11" + "00000000" + "4000000000000001" + "00" * 32, "DataEnd size 2^62 + 1"),
        ("13", "DataBatch without a record"),
        ("13" + "00" * 47, "DataBatch record header truncated (47 of 48 bytes)"),
        ("13" + "00" * 44 + "00000002" + "61", "DataBatch record longer than the frame"),
        ("13" + "00989681" + "00" * 44, "DataBatch record index 10,000,001"),
    ]
    out = []
    for case in cases:
        vector = {"hex": case[0], "reason": case[1]}
        if len(case) == 3:
            vector["note"] = case[2]
        out.append(vector)
    return out


def build_frames() -> Json:
    return {
        "description": (
            "Frames of the peer protocol on the data channel (docs/protocol.md, 'Transfer "
            "messages'): each is one binary data-channel message. Regenerate with "
            "`python -m tests.vectors.generate`; checked by tests/test_vectors.py."
        ),
        "conventions": (
            "hex: the whole frame, type byte first; after it, Data/DataZ/DataEnd carry a "
            "binary header and bytes, every other type one UTF-8 JSON object. fields: the "
            "decoded message, defaults filled in (Python dataclass fields of "
            "p2pshare/messages.py; bytes as hex). Encoding is "
            "compact JSON (',' and ':'), UTF-8 without \\u escapes for non-ASCII, keys in the "
            "order shown, floats as Python writes them (an integral mtime is 1700000000.0): "
            "a decoder must accept any JSON, an encoder matches these bytes if it writes the "
            "same way. An Offer is several frames: offers[].fields is what the sender "
            "encodes, offers[].frames what goes on the wire (Offer, then OfferMore). Text "
            "(string) data-channel messages are always refused. cli_only_frames and "
            "cli_only_invalid: what only the command-line client speaks (DataBatch, and "
            "Accept's 'batch', which a receiver sets only to get batches: the page never "
            "does, so its decoder knows neither); Accept's 'batch' appears in fields only "
            "when true, as on the wire."
        ),
        "protocol_version": m.PROTOCOL_VERSION,
        "limits": {
            "MAX_FILE_BYTES": m.MAX_FILE_BYTES,
            "MAX_ENTRIES": m.MAX_ENTRIES,
            "MAX_TEXT_CHARS": m.MAX_TEXT_CHARS,
            "MAX_TEXT_BYTES": m.MAX_TEXT_BYTES,
            "MAX_DATAZ_RAW_BYTES": m.MAX_DATAZ_RAW_BYTES,
            "OFFER_BATCH_BYTES": m.OFFER_BATCH_BYTES,
            "HAVE_BATCH": m.HAVE_BATCH,
        },
        "frames": _control_frames(),
        "cli_only_frames": _cli_only_frames(),
        "cli_only_invalid": [
            {
                "hex": _body(0x02, '{"window":1,"batch":1}'),
                "reason": "Accept batch is not a boolean (the page reads no 'batch')",
            }
        ],
        "offers": _offers(),
        "compression": _compression(),
        "invalid": _invalid_frames(),
    }


# -- rendezvous.json --------------------------------------------------------------------------


def build_rendezvous(pake: Json) -> Json:
    exchange = pake["exchanges"][0]
    sealed = pake["sealed"]

    def b64(hex_bytes: str) -> str:
        return base64.urlsafe_b64encode(bytes.fromhex(hex_bytes)).decode()

    def client(obj: Json) -> str:
        # RendezvousClient writes json.dumps(message) with the default separators.
        return json.dumps(obj)

    def server(obj: Json) -> str:
        return rp.encode(obj)

    bodies = {
        "pake_a": b64(exchange["sender"]["message_hex"]),
        "pake_b": b64(exchange["receiver"]["message_hex"]),
        "confirm_a": b64(_okm(exchange["sender"], "confirm A").hex()),
        "confirm_b": b64(_okm(exchange["receiver"], "confirm B").hex()),
        "offer": sealed[0]["rendezvous_body"],
        "answer": sealed[1]["rendezvous_body"],
    }
    ice = [{"urls": ["stun:stun.example.net:3478"]}]
    s, r = "sender", "receiver"
    steps: list[tuple[str, str, str]] = [
        ("server", s, server(rp.welcome_msg(ice))),
        (s, "server", client({"type": "allocate"})),
        ("server", s, server(rp.allocated_msg("7"))),
        (s, "server", client({"type": "send", "body": bodies["pake_a"]})),
        ("server", r, server(rp.welcome_msg(ice))),
        (r, "server", client({"type": "claim", "nameplate": "7"})),
        ("server", r, server(rp.claimed_msg("7"))),
        ("server", s, server(rp.paired_msg())),
        ("server", r, server(rp.paired_msg())),
        ("server", r, server(rp.relayed_msg(bodies["pake_a"]))),
        (r, "server", client({"type": "send", "body": bodies["pake_b"]})),
        ("server", s, server(rp.relayed_msg(bodies["pake_b"]))),
        (s, "server", client({"type": "send", "body": bodies["confirm_a"]})),
        (r, "server", client({"type": "send", "body": bodies["confirm_b"]})),
        ("server", r, server(rp.relayed_msg(bodies["confirm_a"]))),
        ("server", s, server(rp.relayed_msg(bodies["confirm_b"]))),
        (s, "server", client({"type": "send", "body": bodies["offer"]})),
        ("server", r, server(rp.relayed_msg(bodies["offer"]))),
        (r, "server", client({"type": "send", "body": bodies["answer"]})),
        ("server", s, server(rp.relayed_msg(bodies["answer"]))),
        (s, "server", '{"type":"bye"}'),
        (r, "server", '{"type":"bye"}'),
    ]
    server_messages = [
        ("welcome", rp.welcome_msg(ice)),
        (
            "welcome with TURN",
            rp.welcome_msg(
                [
                    {
                        "urls": ["turn:turn.example.net:3478?transport=udp"],
                        "username": "1764390000:p2pshare",
                        "credential": "c2VjcmV0LWhtYWM=",
                    }
                ]
            ),
        ),
        ("allocated", rp.allocated_msg("7")),
        ("claimed", rp.claimed_msg("7")),
        ("paired", rp.paired_msg()),
        ("message", rp.relayed_msg(bodies["pake_b"])),
        ("peer-left", rp.peer_left_msg()),
        ("error", rp.error_msg(rp.CROWDED, "two peers already use that nameplate")),
    ]
    client_messages: list[tuple[str, Json]] = [
        ("allocate", {"type": "allocate"}),
        ("claim", {"type": "claim", "nameplate": "7"}),
        ("claim, creating the room", {"type": "claim", "nameplate": "7", "create": True}),
        ("send", {"type": "send", "body": bodies["pake_a"]}),
        ("bye", {"type": "bye"}),
    ]
    invalid = [
        ("not json", "message is not valid JSON"),
        ('["allocate"]', "not an object"),
        ('{"type":"join"}', "unknown type"),
        ('{"nameplate":"7"}', "no type"),
        ('{"type":"claim"}', "claim without nameplate"),
        ('{"type":"claim","nameplate":7}', "nameplate is a number"),
        ('{"type":"claim","nameplate":"07"}', "nameplate with a leading zero"),
        ('{"type":"claim","nameplate":"1000000"}', "nameplate above 999999"),
        ('{"type":"claim","nameplate":"7","create":1}', "create is not a boolean"),
        ('{"type":"send","body":null}', "send without a string body"),
    ]
    return {
        "description": (
            "Rendezvous protocol p2pshare.v1 (docs/protocol.md, section 1): one JSON object "
            "per WebSocket text frame. Relayed bodies are bytes, base64url with padding "
            "(RFC 4648 section 5). The transcript is the pairing of pake.json's 'same code' "
            "exchange and its sealed offer and answer. Regenerate with "
            "`python -m tests.vectors.generate`; checked by tests/test_vectors.py."
        ),
        "conventions": (
            "text: a frame exactly as the Python client or server writes it (the client "
            "uses json.dumps defaults, the server compact separators); whitespace and key "
            "order are free on input. object: the same frame parsed."
        ),
        "subprotocol": rp.SUBPROTOCOL,
        "bodies_base64url": bodies,
        "transcript": [{"from": f, "to": t, "text": text} for f, t, text in steps],
        "client_messages": [
            {"name": name, "text": client(obj), "object": obj} for name, obj in client_messages
        ],
        "server_messages": [
            {"name": name, "text": server(obj), "object": obj} for name, obj in server_messages
        ],
        "invalid_client_messages": [
            {"text": text, "reason": reason, "error": "bad-request"} for text, reason in invalid
        ],
        "mailbox": _mailbox(bodies),
    }


def _mailbox(bodies: dict[str, str]) -> Json:
    """The same pairing carried by a magic-wormhole mailbox server (docs/protocol.md,
    "Pairing through a mailbox server"): our n-th message in phase phase_name(n), its bytes
    in hex."""

    def hexed(name: str) -> str:
        return base64.urlsafe_b64decode(bodies[name]).hex()

    def add(index: int, name: str) -> Json:
        return {"type": "add", "phase": phase_name(index), "body": hexed(name)}

    s, r = "sender", "receiver"
    sender_side, receiver_side = "0a1b2c3d4e", "5f6a7b8c9d"
    transcript: list[tuple[str, Json]] = [
        (
            s,
            {
                "type": "bind",
                "appid": APPID,
                "side": sender_side,
                "client_version": ["p2pshare", __version__],
            },
        ),
        (s, {"type": "allocate"}),
        (s, {"type": "claim", "nameplate": "7"}),
        (s, {"type": "open", "mailbox": "mailbox-id-from-claimed"}),
        (s, add(0, "pake_a")),
        (
            r,
            {
                "type": "bind",
                "appid": APPID,
                "side": receiver_side,
                "client_version": ["p2pshare", __version__],
            },
        ),
        (r, {"type": "claim", "nameplate": "7"}),
        (r, {"type": "open", "mailbox": "mailbox-id-from-claimed"}),
        (r, {"type": "ping", "ping": 1}),
        (r, {"type": "release"}),
        (r, add(0, "pake_b")),
        (s, {"type": "release"}),
        (s, add(1, "confirm_a")),
        (r, add(1, "confirm_b")),
        (s, add(2, "offer")),
        (r, add(2, "answer")),
        (s, {"type": "close", "mood": "happy"}),
        (r, {"type": "close", "mood": "happy"}),
    ]
    return {
        "description": (
            "The pairing above through a mailbox server: the client messages each side sends "
            "(json.dumps defaults), in order. The server answers allocate with allocated, "
            "claim with claimed {mailbox}, ping with pong, close with closed, and delivers "
            "every add as message {side, phase, body} to both sides (the echo is ignored). "
            "A receiver's ping after open: the mailbox's backlog arrives before the pong, so "
            "no message from another side by then means nobody holds the nameplate."
        ),
        "appid": APPID,
        "phases": [
            {"index": i, "phase": phase_name(i), "carries": what}
            for i, what in enumerate(
                ["SPAKE2 message", "key confirmation", "sealed 0 (offer or answer)", "sealed 1"]
            )
        ],
        "transcript": [{"from": f, "text": json.dumps(obj)} for f, obj in transcript],
    }


# -- files ------------------------------------------------------------------------------------


def build_all() -> dict[str, str]:
    """File name → exact text of every vector file."""
    pake = build_pake()
    return {
        "pake.json": render(pake),
        "frames.json": render(build_frames()),
        "rendezvous.json": render(build_rendezvous(pake)),
        "transfer.json": render(build_transfer()),
        "reconnect.json": render(build_reconnect()),
    }


def main() -> None:
    for name, text in build_all().items():
        (VECTORS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS_DIR / name} ({len(text)} characters)", file=sys.stderr)


if __name__ == "__main__":
    main()
