"""The cross-language vectors in ``tests/vectors/`` against the real code, in both directions."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from p2pshare import codec, transfer, transfer_events
from p2pshare import messages as m
from p2pshare.codes import VERIFY_WORDS, wordlist
from p2pshare.errors import (
    ERRORS_BY_NAME,
    PEER_ERRORS,
    IntegrityError,
    ProtocolError,
    WrongCodeError,
    error_from_peer,
)
from p2pshare.pake import PakeSession, Role
from signal_server import protocol as rp
from tests.vectors import generate, shared_tables, transcripts

VECTORS = Path(generate.__file__).resolve().parent


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


PAKE = load("pake.json")
FRAMES = load("frames.json")
RENDEZVOUS = load("rendezvous.json")
TRANSFER = load("transfer.json")
DIALOGUES = TRANSFER["dialogues"]
EXCHANGES = {e["name"]: e for e in PAKE["exchanges"]}
SAME = EXCHANGES["same code"]
ALL_FRAMES = [
    *FRAMES["frames"],
    *FRAMES["cli_only_frames"],
    *(f for offer in FRAMES["offers"] for f in offer["frames"]),
    FRAMES["compression"]["frame"],
]


def sessions(exchange: dict[str, Any]) -> tuple[PakeSession, PakeSession, bytes, bytes]:
    """Both sides of an exchange with its fixed entropy, started: (sender, receiver, msgs)."""
    a = PakeSession(
        Role.SENDER,
        bytes.fromhex(exchange["sender_password"]["hex"]),
        generate.fixed_entropy(bytes.fromhex(exchange["sender"]["entropy_hex"])),
    )
    b = PakeSession(
        Role.RECEIVER,
        bytes.fromhex(exchange["receiver_password"]["hex"]),
        generate.fixed_entropy(bytes.fromhex(exchange["receiver"]["entropy_hex"])),
    )
    return a, b, a.start(), b.start()


def okm(side: dict[str, Any], purpose: str) -> bytes:
    (item,) = [h for h in side["hkdf"] if h["info_ascii"] == f"p2pshare.v1 {purpose}"]
    return bytes.fromhex(item["okm_hex"])


def finished_pair() -> tuple[PakeSession, PakeSession]:
    a, b, msg_a, msg_b = sessions(SAME)
    a.finish(msg_b)
    b.finish(msg_a)
    return a, b


# -- regeneration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["pake.json", "frames.json", "rendezvous.json", "transfer.json", "reconnect.json"]
)
def test_regenerating_gives_byte_identical_files(name: str) -> None:
    """The committed vectors are exactly what the code produces today (no silent drift)."""
    text = generate.build_all()[name]
    assert text == (VECTORS / name).read_text(encoding="utf-8"), (
        f"{name} differs from the code: if the change is intended, run "
        "`python -m tests.vectors.generate` and tell the other implementations"
    )


# -- pake.json --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXCHANGES))
def test_fixed_entropy_reproduces_the_pake_messages(name: str) -> None:
    """PakeSession with the vector's password and entropy sends exactly the vector's messages."""
    exchange = EXCHANGES[name]
    _, _, msg_a, msg_b = sessions(exchange)
    assert msg_a.hex() == exchange["sender"]["message_hex"]
    assert msg_b.hex() == exchange["receiver"]["message_hex"]
    assert exchange["sender"]["peer_message_hex"] == msg_b.hex()
    assert exchange["receiver"]["peer_message_hex"] == msg_a.hex()


@pytest.mark.parametrize("name", sorted(EXCHANGES))
def test_confirmation_tags_match_the_vectors(name: str) -> None:
    """Each side's confirmation tag is its vector's HKDF output for 'confirm <side>'."""
    exchange = EXCHANGES[name]
    a, b, msg_a, msg_b = sessions(exchange)
    a.finish(msg_b)
    b.finish(msg_a)
    assert a.confirmation() == okm(exchange["sender"], "confirm A")
    assert b.confirmation() == okm(exchange["receiver"], "confirm B")


def test_same_code_confirms_both_ways_and_keys_agree() -> None:
    """With the same code both sides hold one key and accept each other's confirmation."""
    a, b = finished_pair()
    assert SAME["keys_match"]
    assert SAME["sender"]["key_hex"] == SAME["receiver"]["key_hex"]
    assert SAME["sender"]["transcript_hex"] == SAME["receiver"]["transcript_hex"]
    assert SAME["sender"]["shared_element_hex"] == SAME["receiver"]["shared_element_hex"]
    a.verify_confirmation(b.confirmation())
    b.verify_confirmation(a.confirmation())


def test_wrong_code_confirmation_tags_differ_and_are_refused() -> None:
    """With different codes the keys and tags differ, and both sides raise WrongCodeError."""
    wrong = EXCHANGES["wrong code"]
    assert not wrong["keys_match"]
    assert okm(wrong["receiver"], "confirm B") != okm(wrong["sender"], "confirm B")
    a, b, msg_a, msg_b = sessions(wrong)
    a.finish(msg_b)
    b.finish(msg_a)
    with pytest.raises(WrongCodeError):
        a.verify_confirmation(b.confirmation())
    with pytest.raises(WrongCodeError):
        b.verify_confirmation(a.confirmation())


def test_verification_words_come_from_the_verify_key() -> None:
    """Both sides of an exchange show the vector's words (--verify), the first bytes of
    'verify' mapped through the word list; with a wrong code the two sides' words differ."""
    for exchange in EXCHANGES.values():
        a, b, msg_a, msg_b = sessions(exchange)
        a.finish(msg_b)
        b.finish(msg_a)
        for side, session in ((exchange["sender"], a), (exchange["receiver"], b)):
            assert list(session.verification_words()) == side["verification_words"]
            assert side["verification_words"] == [
                wordlist()[byte] for byte in okm(side, "verify")[:VERIFY_WORDS]
            ]
    assert SAME["sender"]["verification_words"] == SAME["receiver"]["verification_words"]
    wrong = EXCHANGES["wrong code"]
    assert wrong["sender"]["verification_words"] != wrong["receiver"]["verification_words"]


def test_intermediate_values_chain_into_the_key() -> None:
    """The documented steps (scalars, elements, transcript) really give the key and tags."""
    for side in (SAME["sender"], SAME["receiver"]):
        transcript = bytes.fromhex(side["transcript_hex"])
        assert len(transcript) == 6 * 32
        assert hashlib.sha256(transcript).hexdigest() == side["key_hex"]
        assert transcript[-32:].hex() == side["shared_element_hex"]
        assert side["message_hex"][2:] == side["message_element_hex"]
        assert int(side["scalar"]) == int.from_bytes(bytes.fromhex(side["scalar_le_hex"]), "little")
    password = SAME["sender_password"]
    assert transcript[:32] == hashlib.sha256(bytes.fromhex(password["hex"])).digest()
    # With the right password the peer's unblinded element is the peer's scalar times G.
    assert SAME["sender"]["peer_unblinded_hex"] == SAME["receiver"]["scalar_times_base_hex"]
    assert SAME["receiver"]["peer_unblinded_hex"] == SAME["sender"]["scalar_times_base_hex"]


def test_sealed_messages_match_and_open() -> None:
    """seal() reproduces every sealed vector from its plaintext, and the peer opens it."""
    a, b = finished_pair()
    by_side = {"sender": (a, b), "receiver": (b, a)}
    for vector in PAKE["sealed"]:
        sealer, opener = by_side[vector["sealed_by"]]
        plaintext = bytes.fromhex(vector["plaintext_hex"])
        sealed = sealer.seal(plaintext)
        assert sealed.hex() == vector["sealed_hex"], vector["note"]
        assert base64.urlsafe_b64decode(vector["rendezvous_body"]) == sealed
        assert opener.open(sealed) == plaintext
        assert vector["nonce_hex"] == vector["counter"].to_bytes(12, "big").hex()


def test_sdp_plaintexts_are_what_the_session_seals() -> None:
    """The sealed offer and answer carry {"type", "sdp"} JSON in the session's own spelling."""
    offer, answer = PAKE["sealed"][0], PAKE["sealed"][1]
    for vector, kind in ((offer, "offer"), (answer, "answer")):
        obj = json.loads(vector["plaintext_utf8"])
        assert obj["type"] == kind
        assert generate.sdp_plaintext(kind, obj["sdp"]).hex() == vector["plaintext_hex"]


@pytest.mark.parametrize("vector", PAKE["tampered"], ids=lambda v: v["reason"])
def test_tampered_sealed_messages_fail_to_open(vector: dict[str, Any]) -> None:
    """Every altered, reordered or misdirected sealed message raises ProtocolError."""
    a, b = finished_pair()
    opener = {"sender": a, "receiver": b}[vector["opened_by"]]
    with pytest.raises(ProtocolError):
        opener.open(bytes.fromhex(vector["sealed_hex"]))


@pytest.mark.parametrize("vector", PAKE["invalid_peer_messages"], ids=lambda v: v["reason"])
def test_invalid_peer_pake_messages_are_a_wrong_code(vector: dict[str, Any]) -> None:
    """The sender refuses each malformed or hostile PAKE body as a wrong code."""
    a, _, _, _ = sessions(SAME)
    with pytest.raises(WrongCodeError):
        a.finish(bytes.fromhex(vector["peer_message_hex"]))


# -- frames.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", ALL_FRAMES, ids=lambda v: v["name"])
def test_frames_decode_to_their_fields(vector: dict[str, Any]) -> None:
    """decode() of each frame gives the vector's message type and fields."""
    message = m.decode(bytes.fromhex(vector["hex"]))
    assert type(message).__name__ == vector["type"]
    assert getattr(type(message), "TYPE", None) == vector["type_byte"]
    assert generate.message_fields(message) == vector["fields"]


@pytest.mark.parametrize(
    "vector",
    [v for v in ALL_FRAMES if v["type"] not in ("OfferHead", "OfferMore")],
    ids=lambda v: v["name"],
)
def test_messages_encode_to_their_frames(vector: dict[str, Any]) -> None:
    """encode() of the message built from the vector's fields gives the vector's bytes."""
    message = generate.message_from_fields(vector["type"], vector["fields"])
    assert m.encode(message).hex() == vector["hex"]


@pytest.mark.parametrize("offer", FRAMES["offers"], ids=lambda v: v["name"])
def test_offers_encode_to_their_frames(offer: dict[str, Any]) -> None:
    """Offer.frames() splits each offer into exactly the vector's Offer/OfferMore frames."""
    message = generate.message_from_fields("Offer", offer["fields"])
    assert [f.hex() for f in message.frames()] == [f["hex"] for f in offer["frames"]]
    decoded = [m.decode(bytes.fromhex(f["hex"])) for f in offer["frames"]]
    entries = [e for d in decoded for e in getattr(d, "files", ())]
    assert tuple(entries) == message.files


def test_the_big_offer_spans_offermore_frames() -> None:
    """At least one vector crosses the 48 KiB batch limit, so OfferMore is pinned too."""
    types = {f["type"] for offer in FRAMES["offers"] for f in offer["frames"]}
    assert types == {"OfferHead", "OfferMore"}


def test_every_message_type_has_a_vector() -> None:
    """Each frame type of messages.py appears in frames.json, encoded and decoded."""
    seen = {v["type"] for v in ALL_FRAMES}
    expected = {cls.__name__ for cls in get_args(m.Message)}
    assert expected <= seen


@pytest.mark.parametrize(
    "vector", FRAMES["invalid"] + FRAMES["cli_only_invalid"], ids=lambda v: v["reason"]
)
def test_invalid_frames_are_rejected(vector: dict[str, Any]) -> None:
    """decode() refuses each invalid frame with ProtocolError."""
    with pytest.raises(ProtocolError):
        m.decode(bytes.fromhex(vector["hex"]))


def test_compressed_frame_decompresses_to_the_raw_bytes() -> None:
    """The DataZ vector carries the zstd frame, and it yields exactly the raw bytes."""
    vector = FRAMES["compression"]
    message = m.decode(bytes.fromhex(vector["frame"]["hex"]))
    assert isinstance(message, m.DataZ)
    assert message.raw_len == vector["raw_len"]
    assert message.payload.hex() == vector["zstd_frame_hex"]
    assert codec.decompress(message.payload, message.raw_len).hex() == vector["raw_hex"]


@pytest.mark.parametrize("vector", FRAMES["compression"]["invalid"], ids=lambda v: v["reason"])
def test_bad_compressed_frames_fail_integrity(vector: dict[str, Any]) -> None:
    """A DataZ frame that decodes but yields other than raw_len bytes is an IntegrityError."""
    message = m.decode(bytes.fromhex(vector["hex"]))
    assert isinstance(message, m.DataZ)
    with pytest.raises(IntegrityError):
        codec.decompress(message.payload, message.raw_len)


# -- rendezvous.json --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RENDEZVOUS["server_messages"], ids=lambda v: v["name"])
def test_server_messages_are_the_servers_bytes(vector: dict[str, Any]) -> None:
    """The server writes each message exactly as the vector's text."""
    assert rp.encode(vector["object"]) == vector["text"]
    assert json.loads(vector["text"]) == vector["object"]


@pytest.mark.parametrize("vector", RENDEZVOUS["client_messages"], ids=lambda v: v["name"])
def test_client_messages_parse_on_the_server(vector: dict[str, Any]) -> None:
    """The server accepts each client message and reads the vector's fields from it."""
    parsed = rp.parse_client_message(vector["text"])
    assert json.loads(vector["text"]) == vector["object"]
    assert type(parsed).__name__.lower() == vector["object"]["type"]
    for key, value in vector["object"].items():
        if key != "type":
            assert getattr(parsed, key) == value


@pytest.mark.parametrize("vector", RENDEZVOUS["invalid_client_messages"], ids=lambda v: v["reason"])
def test_invalid_client_messages_are_bad_requests(vector: dict[str, Any]) -> None:
    """The server refuses each invalid client message as a bad-request."""
    with pytest.raises(rp.BadRequest):
        rp.parse_client_message(vector["text"])


def test_transcript_bodies_are_the_pake_and_sealed_bytes() -> None:
    """Bodies relayed in the transcript decode (base64url) to pake.json's bytes, in order."""
    bodies = [
        base64.urlsafe_b64decode(json.loads(step["text"])["body"])
        for step in RENDEZVOUS["transcript"]
        if step["from"] == "sender" and json.loads(step["text"])["type"] == "send"
    ]
    assert [b.hex() for b in bodies] == [
        SAME["sender"]["message_hex"],
        okm(SAME["sender"], "confirm A").hex(),
        PAKE["sealed"][0]["sealed_hex"],
    ]
    for step in RENDEZVOUS["transcript"]:
        if step["from"] == "server":
            assert rp.encode(json.loads(step["text"])) == step["text"]
        else:
            rp.parse_client_message(step["text"])


# -- transfer.json ----------------------------------------------------------------------------

OUTCOMES = ("events", "frames", "refused", "misuse", "state")


@pytest.mark.parametrize("dialogue", DIALOGUES, ids=lambda d: d["name"])
def test_dialogues_replay_step_by_step(dialogue: dict[str, Any]) -> None:
    """Both sides of each dialogue, fed the recorded calls and frames on fresh protocol
    objects, answer exactly as recorded: frames, events, refusals, state."""
    sender, receiver = transcripts.new_sides(dialogue)
    for number, step in enumerate(dialogue["steps"]):
        side = sender if step["side"] == "sender" else receiver
        expected = {k: v for k, v in step.items() if k in OUTCOMES}
        assert transcripts.perform(side, step) == expected, f"step {number}: {step}"


def _steps() -> list[dict[str, Any]]:
    return [step for d in DIALOGUES for step in d["steps"]]


def _raised(exception: str) -> set[str]:
    """The literal messages transfer.py raises ``exception`` with."""
    pattern = exception + r'\(\s*"([^"{}]+)"\s*\)'
    return set(re.findall(pattern, inspect.getsource(transfer)))


def test_every_refusal_and_mistake_of_transfer_py_has_a_dialogue() -> None:
    """Each literal ProtocolError, IntegrityError and RuntimeError message in transfer.py
    (a peer refused, a caller's mistake) is what some recorded step ends with."""
    refused = {s["refused"]["message"] for s in _steps() if "refused" in s}
    misuse = {s["misuse"] for s in _steps() if "misuse" in s}
    assert _raised("ProtocolError") | _raised("IntegrityError") <= refused
    assert _raised("RuntimeError") <= misuse
    assert {"declined", "protocol", "integrity"} == {
        s["refused"]["name"] for s in _steps() if "refused" in s
    }


def test_every_event_and_message_type_occurs() -> None:
    """The dialogues produce every event class of transfer_events.py and carry every message type
    of messages.py, so a replaying implementation meets each one."""
    events = {e["type"] for s in _steps() for e in s.get("events", [])}
    assert events == {cls.__name__ for cls in get_args(transfer_events.Event)}
    frames = [s["receive"] for s in _steps() if "receive" in s]
    frames += [f for s in _steps() for f in s.get("frames", [])]
    assert {f["message"] for f in frames} >= {cls.__name__ for cls in get_args(m.Message)}


def test_page_differences_name_a_side_and_a_reason() -> None:
    """Where the page deliberately differs the file says which side or words, and why."""
    for dialogue in DIALOGUES:
        assert set(dialogue.get("page", {})) <= {"sender", "receiver"}
        assert all(len(why) > 20 for why in dialogue.get("page", {}).values())
        for step in dialogue["steps"]:
            if "page" in step:
                assert "refused" in step and set(step["page"]) == {"message", "why"}
    window = TRANSFER["limits"][0]
    assert window["python"].endswith(":DEFAULT_WINDOW_BYTES")
    assert window["value"] == transfer.DEFAULT_WINDOW_BYTES != window["page"]["value"]
    assert "ee550e0" in window["page"]["why"]


@pytest.mark.parametrize("limit", TRANSFER["limits"], ids=lambda v: v["name"])
def test_limits_are_the_code_s(limit: dict[str, Any]) -> None:
    """Each shared limit is the value its Python source holds; the page's is the same (in
    ms for times) unless the entry says why not."""
    value = shared_tables.python_value(limit["python"])
    assert value == limit["value"]
    page = limit["page"]
    if "why" not in page:
        assert page["value"] == (round(value * 1000) if limit["unit"] == "s" else value)


def test_error_table_is_errors_py() -> None:
    """Every error of errors.py is in the table with its exit code, words and peer rules, and
    error_from_peer maps each name as from_peer says."""
    table = {e["name"]: e for e in TRANSFER["errors"]["errors"]}
    assert set(table) == set(ERRORS_BY_NAME)
    for name, cls in ERRORS_BY_NAME.items():
        assert table[name]["exit_code"] == cls.exit_code
        assert table[name]["text"][:1].lower() + table[name]["text"][1:] == cls.generic()
        assert table[name]["peer_may_report"] == (name in PEER_ERRORS)
    for case in TRANSFER["errors"]["from_peer"]:
        error = error_from_peer(case["name"], case["message"])
        assert {"name": error.name, "message": error.message} == case["becomes"]


# -- reconnect.json ---------------------------------------------------------------------------


def test_reconnect_vectors_open_with_the_code() -> None:
    """Each side opens the other's hello from reconnect.json, the attempt keys of both nonces
    open the sealed offer, and the nameplates are where the code says."""
    from p2pshare.pake import Role
    from p2pshare.reconnect import ReconnectKeys

    table = load("reconnect.json")
    secret = bytes.fromhex(table["secret"])
    sender, receiver = ReconnectKeys(Role.SENDER, secret), ReconnectKeys(Role.RECEIVER, secret)
    assert [sender.nameplate(0), receiver.nameplate(1)] == table["nameplates"]
    nonce_a = receiver.open_hello(bytes.fromhex(table["sender_hello"]), 0)
    nonce_b = sender.open_hello(bytes.fromhex(table["receiver_hello"]), 0)
    assert nonce_a is not None and nonce_a.hex() == table["sender_nonce"]
    assert nonce_b is not None and nonce_b.hex() == table["receiver_nonce"]
    sealer = receiver.attempt(0, nonce_b, nonce_a)
    assert sealer.open(bytes.fromhex(table["offer_sealed"])) == table["offer_plaintext"].encode()
