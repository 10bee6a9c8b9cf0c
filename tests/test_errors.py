"""The error tree: stable names, exit codes, and what a peer's Abort may and may not mean."""

from __future__ import annotations

import pytest

from p2pshare import errors
from p2pshare.errors import (
    ERRORS_BY_NAME,
    PEER_ERRORS,
    P2PShareError,
    PeerLostError,
    PeerStoppedError,
    UnsafeNameError,
    error_from_peer,
)


def _all_subclasses(cls: type[P2PShareError]) -> set[type[P2PShareError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _all_subclasses(sub)
    return found


def test_every_error_class_is_registered_under_a_unique_name() -> None:
    """Each P2PShareError subclass defined in errors.py has its own name, registered."""
    classes = {c for c in _all_subclasses(P2PShareError) if c.__module__ == errors.__name__}
    names = [c.name for c in classes]
    assert len(names) == len(set(names))
    assert set(ERRORS_BY_NAME.values()) == classes
    assert all(ERRORS_BY_NAME[c.name] is c for c in classes)


def test_every_error_has_an_exit_code_and_user_text() -> None:
    """Exit codes are documented integers; the default message is the docstring, one line."""
    for cls in ERRORS_BY_NAME.values():
        assert isinstance(cls.exit_code, int) and 1 <= cls.exit_code <= 255
        assert cls().message and "\n" not in cls().message
    assert UnsafeNameError.exit_code == 12


def test_no_error_is_defined_outside_errors_py() -> None:
    """Errors live in one tree, in one module (files.py re-exports UnsafeNameError)."""
    import p2pshare.files

    assert p2pshare.files.UnsafeNameError is UnsafeNameError
    strays = [c for c in _all_subclasses(P2PShareError) if c.__module__ != errors.__name__]
    assert strays == []


@pytest.mark.parametrize("name", sorted(PEER_ERRORS - {"interrupted"}))
def test_names_a_peer_may_send_map_back_to_their_class(name: str) -> None:
    """An error the receiver can send comes back, on the sender, as the same class."""
    rebuilt = error_from_peer(name, "the other side: x")
    assert type(rebuilt) is ERRORS_BY_NAME[name]
    assert rebuilt.remote


def test_peer_cancel_is_a_peer_that_left() -> None:
    """The peer's Ctrl-C is not ours: it maps to exit 7, not 130."""
    rebuilt = error_from_peer("interrupted", "x")
    assert type(rebuilt) is PeerLostError and rebuilt.exit_code == 7


@pytest.mark.parametrize(
    "name", ["wrong-code", "no-such-code", "crowded", "bad-code", "error", "", "nonsense"]
)
def test_a_peer_cannot_choose_an_unearned_meaning(name: str) -> None:
    """Names outside PEER_ERRORS become 'the peer stopped' (exit 7), never exit 1, 4 or 6."""
    rebuilt = error_from_peer(name, "the other side: pretend")
    assert type(rebuilt) is PeerStoppedError and rebuilt.exit_code == 7


def test_the_peer_is_never_told_our_paths_or_our_options() -> None:
    """Local errors go to the peer as their peer text, or the class's generic text."""
    from p2pshare.errors import DeclinedError, LocalFileError, ProtocolError

    local = LocalFileError("/home/alice/out/x: permission denied")
    assert local.for_peer() == "a local file could not be read or written."
    declined = DeclinedError(
        "/home/alice/out/a.txt already exists; pass --overwrite to replace it",
        peer_message="declined: 'a.txt' already exists on the receiving side",
    )
    assert declined.for_peer() == "declined: 'a.txt' already exists on the receiving side"
    assert ProtocolError("bad frame").for_peer() == "bad frame"
