"""The error table and the limits of ``transfer.json``: what both clients must agree on besides
the dialogues, read from the Python code. The page's copies (``web/src``: ``errors.js``
``KNOWN_NAMES``, ``seal.js`` ``PEER_ERRORS``, ``ui.js`` ``MESSAGES``, and each limit's export)
are checked against them by ``web/test/transfer_vectors.test.js``; where the page deliberately
differs, the entry says so and why.
"""

from __future__ import annotations

import importlib
from typing import Any

from p2pshare import errors

Json = dict[str, Any]

# -- errors -----------------------------------------------------------------------------------

NEVER_SENT = {
    errors.P2PShareError.name: "the fallback name itself: whatever is not known goes out as it",
    errors.PeerStoppedError.name: (
        "only ever what the peer told us (error_from_peer), and a peer's error is never "
        "reported back to it"
    ),
}


def _text(cls: type[errors.P2PShareError]) -> str:
    return " ".join((cls.__doc__ or cls.name).split())


def _error(error: errors.P2PShareError) -> Json:
    return {"name": error.name, "message": error.message}


def error_table() -> Json:
    table = [
        {
            "name": cls.name,
            "class": cls.__name__,
            "exit_code": cls.exit_code,
            "text": _text(cls),
            "local": cls.local,
            "peer_may_report": cls.name in errors.PEER_ERRORS,
        }
        for cls in errors.ERRORS_BY_NAME.values()
    ]
    said = "the other side: because"
    from_peer = [
        {"name": name, "message": said, "becomes": _error(errors.error_from_peer(name, said))}
        for name in [*errors.ERRORS_BY_NAME, "reboot"]
    ]
    return {
        "note": (
            "errors.py: 'text' is the class docstring on one line, what a user reads when "
            "there is nothing more specific (the page shows the same words: web/src/ui.js "
            "MESSAGES). 'local': the message describes this machine, so an Abort carries "
            "'text' instead (for_peer). 'peer_may_report': a peer's Abort with this name "
            "keeps it; any other name becomes peer-stopped (from_peer shows each case: "
            "error_from_peer, web/src/seal.js PeerError). 'abort_names': what a side puts in "
            "an Abort when it stops (web/src/errors.js KNOWN_NAMES; anything else goes out "
            "as 'error')."
        ),
        "errors": table,
        "abort_names": sorted(set(errors.ERRORS_BY_NAME) - set(NEVER_SENT)),
        "never_in_an_abort": NEVER_SENT,
        "from_peer": from_peer,
    }


# -- limits -----------------------------------------------------------------------------------

LIMITS = """
credit window | p2pshare.transfer:DEFAULT_WINDOW_BYTES | bytes | transfer.js
files per cumulative ack | p2pshare.transfer:ACK_EVERY_FILES | files | transfer.js
entries a receiver takes | p2pshare.transfer:DEFAULT_MAX_OFFER_ENTRIES | entries | transfer.js
offer bytes a receiver takes | p2pshare.transfer:DEFAULT_MAX_OFFER_BYTES | bytes | transfer.js
protocol version | p2pshare.messages:PROTOCOL_VERSION | - | frames.js
entries in an offer | p2pshare.messages:MAX_ENTRIES | entries | frames.js
file size | p2pshare.messages:MAX_FILE_BYTES | bytes | frames.js
text field | p2pshare.messages:MAX_TEXT_CHARS | characters | frames.js
text entry | p2pshare.messages:MAX_TEXT_BYTES | bytes | frames.js
DataZ raw length | p2pshare.messages:MAX_DATAZ_RAW_BYTES | bytes | frames.js
offer frame batch | p2pshare.messages:OFFER_BATCH_BYTES | bytes | frames.js
prefixes per Have | p2pshare.messages:HAVE_BATCH | prefixes | frames.js
DataEnd overhead | p2pshare.messages:DATA_END_OVERHEAD | bytes | frames.js
message size if none advertised | p2pshare.webrtc:DEFAULT_MAX_MESSAGE_BYTES | bytes | webrtc.js
least message size a peer may say | p2pshare.webrtc:MIN_PEER_MESSAGE_BYTES | bytes | webrtc.js
silent peer | p2pshare.config:Settings.peer_timeout_s | s | wire.js PEER_TIMEOUT_MS
ping interval | p2pshare.config:Settings.ping_interval_s | s | wire.js PING_INTERVAL_MS
wait for the peer to read Abort | p2pshare.wire:GOODBYE_WAIT_S | s | wire.js GOODBYE_WAIT_MS
connect to the peer | p2pshare.config:Settings.connect_timeout_s | s | pairing.js CONNECT_TIMEOUT_MS
rendezvous connect | p2pshare.rendezvous:CONNECT_TIMEOUT_S | s | rendezvous.js CONNECT_TIMEOUT_MS
rendezvous body | p2pshare.rendezvous:MAX_BODY_BYTES | bytes | rendezvous.js
rendezvous frame | p2pshare.rendezvous:MAX_FRAME_BYTES | bytes | rendezvous.js
ICE servers taken | p2pshare.rendezvous:MAX_ICE_SERVERS | servers | rendezvous.js
URLs per ICE server | p2pshare.rendezvous:MAX_ICE_URLS | URLs | rendezvous.js
ICE field | p2pshare.rendezvous:MAX_ICE_FIELD_CHARS | characters | rendezvous.js
sealed offer or answer | p2pshare.pairing:MAX_SEALED_JSON_BYTES | bytes | seal.js
PAKE message | p2pshare.pake:PAKE_MESSAGE_BYTES | bytes | pake.js
confirmation tag | p2pshare.pake:CONFIRM_BYTES | bytes | pake.js
words in a code | p2pshare.codes:DEFAULT_WORDS | words | codes.js
verification words | p2pshare.codes:VERIFY_WORDS | words | codes.js
name component | p2pshare.files:MAX_COMPONENT_BYTES | bytes | names.js
path | p2pshare.files:MAX_PATH_BYTES | bytes | names.js
path depth | p2pshare.files:MAX_DEPTH | components | names.js
printed name | p2pshare.files:MAX_PRINT_CHARS | characters | names.js
reserved name prefix | p2pshare.files:RESERVED_PREFIX | - | names.js
"""
"""One limit a line: what it is | its Python source (``module:attribute``) | unit (``-``: none) |
the page's module, and its export when the name differs (times: s in Python, ms in the page)."""

WINDOW_WHY = (
    "browser memory: the page keeps what it receives in memory until it is stored (a Blob, "
    "or the download stream), and the credit is what it may have to hold; the CLI's 16 MiB "
    "is a throughput choice measured on a veth (1 GiB: 3.26 s at 8 MiB, 3.09 s at 16 MiB; "
    "commit ee550e0, docs/performance.md)"
)
PAGE_DIFFERS: dict[str, tuple[Any, str]] = {
    "p2pshare.transfer:DEFAULT_WINDOW_BYTES": (8 * 1024 * 1024, WINDOW_WHY),
}
"""The page's own value where it deliberately differs, and why."""


def python_value(source: str) -> Any:
    """The value a ``module:attribute[.attribute]`` names (a dataclass field's default)."""
    module, _, path = source.partition(":")
    value: Any = importlib.import_module(module)
    for part in path.split("."):
        value = getattr(value, part)
    return value


def limits() -> list[Json]:
    out = []
    for line in LIMITS.strip().splitlines():
        name, source, unit, page = (column.strip() for column in line.split("|"))
        unit = "" if unit == "-" else unit
        module, _, export = page.partition(" ")
        value = python_value(source)
        export = export or source.rpartition(":")[2]
        page_value, why = PAGE_DIFFERS.get(source, (None, None))
        if why is None:
            page_value = round(value * 1000) if unit == "s" else value
        entry: Json = {"name": name, "python": source, "unit": unit, "value": value}
        entry["page"] = {"module": module, "export": export, "value": page_value}
        if why is not None:
            entry["page"]["why"] = why
        out.append(entry)
    return out
