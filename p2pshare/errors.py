"""Every way a transfer can fail, as one tree with stable names and exit codes.

::

    P2PShareError                      exit 1   unexpected
    ├── BadCodeError                   exit 2   the code is not of the form 7-word-word
    ├── SignallingError                exit 3   rendezvous server unreachable or refused us
    │   ├── NoSuchCodeError            exit 4
    │   └── CrowdedError               exit 5
    ├── WrongCodeError                 exit 6   key confirmation failed
    ├── PeerLostError                  exit 7   the peer left or stopped answering
    ├── ConnectError                   exit 8   ICE or DTLS did not complete in time
    ├── DeclinedError                  exit 9
    ├── IntegrityError                 exit 10  hash or size mismatch, protocol violation
    │   └── ProtocolError
    ├── LocalFileError                 exit 11  not found, not readable, not writable
    │   └── DiskFullError
    └── InterruptedTransferError       exit 130 Ctrl-C (or the peer's Ctrl-C)

The docstring of each class is what a user reads when the error has no more specific message.
The CLI catches only :class:`P2PShareError`, prints its message on one line and exits with
``exit_code``; ``name`` is what ``--json`` reports. Adapters in ``rendezvous.py`` and
``webrtc.py`` translate websockets and aiortc exceptions into these at the boundary.
"""

from __future__ import annotations

from typing import ClassVar


class P2PShareError(Exception):
    """Something went wrong."""

    name: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None, *, remote: bool = False) -> None:
        if message is None:
            text = " ".join((self.__doc__ or self.name).split())
            message = text[:1].lower() + text[1:]
        super().__init__(message)
        self.remote = remote
        """True when the peer reported this error to us (so we do not report it back)."""

    @property
    def message(self) -> str:
        return str(self.args[0])


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


class WrongCodeError(P2PShareError):
    """Wrong code (or someone tried to guess it): key confirmation failed. Nothing was sent;
    ask for a new code."""

    name = "wrong-code"
    exit_code = 6


class PeerLostError(P2PShareError):
    """The other side left or stopped answering."""

    name = "peer-lost"
    exit_code = 7


class ConnectError(P2PShareError):
    """Could not connect to the other side (no working network path was found)."""

    name = "connect-failed"
    exit_code = 8


class DeclinedError(P2PShareError):
    """The transfer was declined."""

    name = "declined"
    exit_code = 9


class IntegrityError(P2PShareError):
    """Integrity failure: the data received does not match what was sent."""

    name = "integrity"
    exit_code = 10


class ProtocolError(IntegrityError):
    """The other side broke the p2pshare protocol."""

    name = "protocol"


class LocalFileError(P2PShareError):
    """A local file could not be read or written."""

    name = "file-error"
    exit_code = 11


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
        WrongCodeError,
        PeerLostError,
        ConnectError,
        DeclinedError,
        IntegrityError,
        ProtocolError,
        LocalFileError,
        DiskFullError,
        InterruptedTransferError,
    )
}


def error_from_peer(name: str, message: str) -> P2PShareError:
    """Rebuild an error the peer reported, by its stable name (unknown names: generic).

    The peer's Ctrl-C is, for us, a peer that left: we were not interrupted.
    """
    if name == InterruptedTransferError.name:
        return PeerLostError("the other side cancelled the transfer", remote=True)
    return ERRORS_BY_NAME.get(name, P2PShareError)(message, remote=True)
