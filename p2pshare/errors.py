"""Every way a transfer can fail, as one tree with stable names and exit codes.

::

    P2PShareError                      exit 1   unexpected
    ├── BadCodeError                   exit 2   the code is not of the form 7-word-word
    ├── SignallingError                exit 3   rendezvous server unreachable or refused us
    │   ├── NoSuchCodeError            exit 4
    │   ├── CrowdedError               exit 5
    │   └── ServerRefusedError         exit 3   the server's operator says no (its text)
    ├── WrongCodeError                 exit 6   key confirmation failed
    ├── PeerLostError                  exit 7   the peer left or stopped answering
    │   └── PeerStoppedError                    the peer stopped, for a reason of its own
    ├── ConnectError                   exit 8   ICE or DTLS did not complete in time
    ├── DeclinedError                  exit 9
    ├── IntegrityError                 exit 10  hash or size mismatch, protocol violation
    │   ├── ProtocolError
    │   └── UnsafeNameError            exit 12  a name the receiver will not write
    ├── LocalFileError                 exit 11  not found, not readable, not writable
    │   └── DiskFullError
    └── InterruptedTransferError       exit 130 Ctrl-C (or the peer's Ctrl-C)

The docstring of each class is what a user reads when the error has no more specific message.
The CLI catches only :class:`P2PShareError`, prints its message on one line and exits with
``exit_code``; ``name`` is what ``--json`` reports and what an ``Abort`` carries to the peer.
Adapters in ``rendezvous.py`` and ``webrtc.py`` translate websockets and aiortc exceptions into
these at the boundary.

An error the *peer* reports is untrusted: :func:`error_from_peer` maps only the names a peer can
legitimately send (``PEER_ERRORS``) to their classes; any other name (``wrong-code``,
``no-such-code``, unknown ones) becomes :class:`PeerStoppedError`, so a peer cannot choose a
local meaning, or an exit code, it did not earn.
"""

from __future__ import annotations

from typing import ClassVar


class P2PShareError(Exception):
    """Something went wrong."""

    name: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    local: ClassVar[bool] = False
    """The message describes this machine (its paths, advice for its user): the peer is told
    only ``peer_message``, or the class's generic text."""

    def __init__(
        self, message: str | None = None, *, remote: bool = False, peer_message: str | None = None
    ) -> None:
        super().__init__(message if message is not None else self.generic())
        self.remote = remote
        """True when the peer reported this error to us (so we do not report it back)."""
        self.peer_message = peer_message
        """What the peer is told, when it differs from what our user reads."""

    @classmethod
    def generic(cls) -> str:
        """The class docstring as one line: the text when there is nothing more specific."""
        text = " ".join((cls.__doc__ or cls.name).split())
        return text[:1].lower() + text[1:]

    @property
    def message(self) -> str:
        return str(self.args[0])

    def for_peer(self) -> str:
        """The text an Abort carries to the peer: never our paths or our user's options."""
        if self.peer_message is not None:
            return self.peer_message
        return self.generic() if self.local else self.message


class BadCodeError(P2PShareError):
    """That is not a p2pshare code: codes look like 7-guitar-ocean."""

    name = "bad-code"
    exit_code = 2


class SignallingError(P2PShareError):
    """Could not reach the rendezvous server, or it refused the request."""

    name = "server-error"
    exit_code = 3


class NoSuchCodeError(SignallingError):
    """No such code: nobody is waiting on it (check for typos; codes are single use)."""

    name = "no-such-code"
    exit_code = 4


class CrowdedError(SignallingError):
    """Crowded: two other people are already using this code."""

    name = "crowded"
    exit_code = 5


class ServerRefusedError(SignallingError):
    """The rendezvous server refuses service; its operator's message says why. Try again
    later, use another server (--server), or stay on the local network (P2PSHARE_PUBLIC=0)."""

    name = "server-refused"


class WrongCodeError(P2PShareError):
    """Wrong code (or someone tried to guess it): key confirmation failed. Nothing was sent;
    ask for a new code."""

    name = "wrong-code"
    exit_code = 6


class PeerLostError(P2PShareError):
    """The other side left or stopped answering."""

    name = "peer-lost"
    exit_code = 7
    path_died: bool = True
    """False when the peer is reachable but does not go on (it grants no credit): reconnecting
    would not help (reconnect.py)."""


class PeerStoppedError(PeerLostError):
    """The other side stopped the transfer."""

    name = "peer-stopped"


class ConnectError(P2PShareError):
    """Could not connect to the other side (no working network path was found)."""

    name = "connect-failed"
    exit_code = 8


class DeclinedError(P2PShareError):
    """The transfer was declined."""

    name = "declined"
    exit_code = 9
    local = True


class IntegrityError(P2PShareError):
    """Integrity failure: the data received does not match what was sent."""

    name = "integrity"
    exit_code = 10


class ProtocolError(IntegrityError):
    """The other side broke the p2pshare protocol."""

    name = "protocol"


class UnsafeNameError(IntegrityError):
    """A file name that is not safe to write on the receiving side (rename it and send
    again)."""

    name = "unsafe-name"
    exit_code = 12


class LocalFileError(P2PShareError):
    """A local file could not be read or written."""

    name = "file-error"
    exit_code = 11
    local = True


class DiskFullError(LocalFileError):
    """Disk full: not enough free space to receive."""

    name = "disk-full"


class InterruptedTransferError(P2PShareError):
    """Interrupted."""

    name = "interrupted"
    exit_code = 130


ERRORS_BY_NAME: dict[str, type[P2PShareError]] = {
    cls.name: cls
    for cls in (
        P2PShareError,
        BadCodeError,
        SignallingError,
        NoSuchCodeError,
        CrowdedError,
        ServerRefusedError,
        WrongCodeError,
        PeerLostError,
        PeerStoppedError,
        ConnectError,
        DeclinedError,
        IntegrityError,
        ProtocolError,
        UnsafeNameError,
        LocalFileError,
        DiskFullError,
        InterruptedTransferError,
    )
}


PEER_ERRORS: frozenset[str] = frozenset(
    cls.name
    for cls in (
        DeclinedError,
        IntegrityError,
        ProtocolError,
        UnsafeNameError,
        LocalFileError,
        DiskFullError,
        InterruptedTransferError,
        PeerLostError,
    )
)
"""The error names a peer may report in an Abort and have mapped to their own class."""


def error_from_peer(name: str, message: str) -> P2PShareError:
    """Rebuild an error the peer reported (``message`` already made printable by the caller).

    The peer's Ctrl-C is, for us, a peer that left: we were not interrupted. A name outside
    :data:`PEER_ERRORS` is not believed: it becomes :class:`PeerStoppedError`.
    """
    if name == InterruptedTransferError.name:
        return PeerLostError("the other side cancelled the transfer", remote=True)
    if name == UnsafeNameError.name:
        return UnsafeNameError(f"{message}; rename it and send again", remote=True)
    if name not in PEER_ERRORS:
        return PeerStoppedError(message, remote=True)
    return ERRORS_BY_NAME[name](message, remote=True)
