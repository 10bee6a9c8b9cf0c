"""What a transfer tells its caller: the events passed to ``on_event``, the offer a receiver
is asked to confirm, and the result. Importable without aiortc (the CLI's reporters use it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p2pshare.webrtc import NetworkPath


@dataclass(frozen=True)
class CodeReady:
    """The sender's code is ready to be read out; ``server`` is set when the receiver must be
    told which rendezvous server to use (the sender's embedded one)."""

    code: str
    server: str | None
    advertised: bool = False
    """The embedded server is advertised on the local network (mDNS): a receiver there
    finds it with the code alone."""
    public: str | None = None
    """The public mailbox's host when the code is open there too: a receiver anywhere
    finds the sender with the code alone."""
    rendezvous: str | None = None
    """Which rendezvous carries the code, for the user ("relay.magic-wormhole.io, public,
    and this network")."""
    mailbox: bool = False
    """The rendezvous is a mailbox server, which serves no browser page."""


@dataclass(frozen=True)
class Verification:
    """Words derived from the session key, the same on both sides unless someone sits in
    the middle: for two people to compare aloud (``--verify``)."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class Connected:
    """The data channel to the peer is open; ``path`` says how (None if unknown)."""

    path: NetworkPath | None = None


@dataclass(frozen=True)
class Reconnecting:
    """The path to the peer died mid-transfer; both sides look for each other again under
    the same session (an attempt starts ``elapsed_s`` after the loss, within ``budget_s``)."""

    elapsed_s: float
    attempt: int
    budget_s: float


@dataclass(frozen=True)
class Reconnected:
    """A new connection to the same peer is open; the transfer resumes over it."""

    path: NetworkPath | None
    elapsed_s: float
    """From the loss being noticed to the new channel open."""
    attempt: int


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    """None while the size is unknown (a stream from stdin)."""


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the transfer (a skipped symlink)."""

    message: str


@dataclass(frozen=True)
class OfferSummary:
    """What the receiver is asked to accept. Names are already made printable."""

    files: int
    dirs: int
    total_bytes: int | None
    names: tuple[str, ...]
    """The top-level names (at most 10), printable."""
    destination: Path | None
    """Where it goes; None for a text message or --output -."""
    is_text: bool = False
    found_bytes: int = 0
    """Bytes already on disk from an earlier attempt (checked with the sender before use)."""


@dataclass(frozen=True)
class TransferResult:
    bytes: int
    """The size of everything transferred, including data the receiver already had."""
    seconds: float
    files: int
    digest: str | None
    """The file's digest (of :attr:`hash`) when exactly one file was transferred."""
    path: Path | None
    sent: int
    """Bytes that crossed the network this time (before compression); less than ``bytes``
    when an interrupted transfer was resumed."""
    text: str | None = None
    hash: str = "sha256"
    """The hash both sides used: ``sha256``, or ``blake3`` between two p2pshare CLIs."""

    @property
    def sha256(self) -> str | None:
        """The digest when the hash was SHA-256 (the only one before BLAKE3), else None."""
        return self.digest if self.hash == "sha256" else None

    @property
    def resumed(self) -> int:
        """Bytes the receiver already had (checked, not sent again)."""
        return self.bytes - self.sent


@dataclass(frozen=True)
class ForReceiver:
    """``send --many``: ``event`` concerns receiver number ``receiver`` (1, 2, ... in the
    order they joined) only."""

    receiver: int
    event: SessionEvent
    label: str = ""
    """Who, as far as known: ``receiver 3, 192.0.2.7, direct`` once connected."""


@dataclass(frozen=True)
class ReceiverOutcome:
    """How one receiver of ``send --many`` ended."""

    receiver: int
    label: str
    """``receiver 3, 192.0.2.7, direct``: who, for people telling receivers apart."""
    bytes: int
    seconds: float
    result: str
    """``done``, ``wrong-code``, or the name of the error that stopped it."""
    message: str | None = None
    sent: int = 0
    """Bytes that crossed the network to it, over every connection (a reconnect adds what
    was in flight when its path died)."""


@dataclass(frozen=True)
class ReceiverDone:
    outcome: ReceiverOutcome


@dataclass(frozen=True)
class CodeBurned:
    """A receiver failed key confirmation: the sender admits nobody else on this code."""

    served: int
    """Receivers that had finished by then."""


@dataclass(frozen=True)
class ManyResult:
    """What ``send --many`` did: every receiver that proved the code (or failed to), and why
    the sender stopped: ``count`` (N finished), ``burned``, ``timeout``, ``interrupted``, or
    ``server`` (the rendezvous room ended)."""

    receivers: tuple[ReceiverOutcome, ...]
    stopped: str

    @property
    def served(self) -> int:
        return sum(1 for r in self.receivers if r.result == "done")


SessionEvent = (
    CodeReady
    | Connected
    | Progress
    | Notice
    | Verification
    | Reconnecting
    | Reconnected
    | ForReceiver
    | ReceiverDone
    | CodeBurned
)
EventSink = Callable[[SessionEvent], None]
Confirm = Callable[[OfferSummary], Awaitable[bool]]
ConfirmWords = Callable[[Verification, str], Awaitable[bool]]
"""Asked by a sender (``--verify``) once the key is agreed, before anything of the transfer
leaves, not even the offer: given the security words and who they are shared with ("the
receiver", or a receiver's label with ``--many``), True to go on. False stops the transfer
(:class:`~p2pshare.errors.DeclinedError`)."""
ResolveExisting = Callable[[tuple[Path, ...], Path | None, OfferSummary], Awaitable[str]]
"""Asked when files of the offer already exist here (and nothing said --overwrite): given
them, for a single file a free name to save it as instead, and the offer (so that a person
sees what is offered before choosing), returns ``"overwrite"``, ``"rename"`` or
``"cancel"``."""


def ignore(event: SessionEvent) -> None:
    """The default ``on_event``: nothing to report to."""
