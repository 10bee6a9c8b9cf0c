"""A transfer that survives a network change (issue 28): when the data path dies, both sides
keep the session key and the transfer's state, meet again on the rendezvous server that paired
them, prove the key, build a new peer connection and resume (docs/protocol.md, "Reconnecting").

::

    sender                         rendezvous server                    receiver
      │ path dead (silence deadline, consent failure, channel closed)     │ likewise
      │ claim(nameplate from R, generation g) ──>│<── claim(same) ─────────│
      │── hello: sealed {g, nonce_A} ───────────>│────────────────────────>│  no key, other g,
      │<─────────────────────────────────────────│<── hello {g, nonce_B} ──│  or a nonce seen
      │── offer, sealed under S(g, nonce_A, nonce_B) ──────────────────────>│  before: ignored
      │<──────────────────────────────────────────────── sealed answer ────│
      │═══════════ new RTCPeerConnection: ICE, DTLS, SCTP ══════════════════│
      │═══════ transfer again from its Offer: the receiver's Have resumes ══│

:class:`ReconnectKeys` is the pure part (no I/O; the tests' vectors and hostile cases reach
it directly); :class:`Reconnector` runs the transfer, and the attempts after a loss within
the budget (``Settings.reconnect_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2pshare.config import Settings
from p2pshare.errors import P2PShareError, PeerLostError, ServerRefusedError
from p2pshare.events import EventSink, Reconnected, Reconnecting, TransferResult
from p2pshare.pake import PROTOCOL_ID, PakeSession, Role, Sealer
from p2pshare.wire import telling_peer

if TYPE_CHECKING:
    from p2pshare.channel import Channel
    from p2pshare.places import Place
    from p2pshare.rendezvous import Relay
    from p2pshare.webrtc import PeerLink

logger = logging.getLogger(__name__)

T = TypeVar("T")

SECRET_LABEL = b"reconnect"
NAMEPLATES = 999_999
"""Our server's nameplates are 1 to 999999 (``wire.NAMEPLATE_RE``)."""
NONCE_BYTES = 16
AEAD_NONCE_BYTES = 12
MAX_HELLO_BYTES = 512
BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
"""Pauses between attempts; the last repeats until the budget is spent."""


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=PROTOCOL_ID + b" " + info
    ).derive(key)


class ReconnectKeys:
    """Everything a reconnect derives from the session key, for one side. No I/O.

    ``secret`` is ``HKDF(K, "p2pshare.v1 reconnect")`` (:meth:`from_pake`). Hellos are
    accepted at most once per nonce, so a replayed one is ignored like a forged one.
    """

    def __init__(
        self, role: Role, secret: bytes, entropy: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.role = role
        self._secret = secret
        self._entropy = entropy
        self._seen: set[bytes] = set()

    @classmethod
    def from_pake(cls, pake: PakeSession) -> ReconnectKeys:
        return cls(pake.role, pake.derive(SECRET_LABEL))

    def nameplate(self, generation: int) -> str:
        """Where both sides meet for this generation: a number neither the code nor the key
        can be recovered from."""
        digest = _hkdf(self._secret, b"reconnect nameplate " + str(generation).encode())
        return str(1 + int.from_bytes(digest, "big") % NAMEPLATES)

    def _hello_aead(self, role: Role) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(_hkdf(self._secret, b"reconnect hello " + role.value.encode()))

    @staticmethod
    def _aad(role: Role, generation: int) -> bytes:
        return PROTOCOL_ID + b" reconnect " + role.value.encode() + str(generation).encode()

    def hello(self, generation: int) -> tuple[bytes, bytes]:
        """Our hello for ``generation`` and the fresh nonce it carries."""
        nonce = self._entropy(NONCE_BYTES)
        aead_nonce = self._entropy(AEAD_NONCE_BYTES)
        body = json.dumps(
            {"type": "reconnect", "generation": generation, "nonce": nonce.hex()}
        ).encode()
        sealed = self._hello_aead(self.role).encrypt(
            aead_nonce, body, self._aad(self.role, generation)
        )
        return aead_nonce + sealed, nonce

    def open_hello(self, message: bytes, generation: int) -> bytes | None:
        """The peer's nonce from its hello for ``generation``; None (ignore it) when it does
        not prove the key, names another generation, is malformed, or was accepted before."""
        if not AEAD_NONCE_BYTES < len(message) <= MAX_HELLO_BYTES:
            return None
        peer = self.role.peer
        try:
            plain = self._hello_aead(peer).decrypt(
                message[:AEAD_NONCE_BYTES],
                message[AEAD_NONCE_BYTES:],
                self._aad(peer, generation),
            )
            obj = json.loads(plain)
        except (InvalidTag, ValueError):
            return None
        if not isinstance(obj, dict) or obj.get("type") != "reconnect":
            return None
        if obj.get("generation") != generation or not isinstance(obj.get("nonce"), str):
            return None
        try:
            nonce = bytes.fromhex(obj["nonce"])
        except ValueError:
            return None
        if len(nonce) != NONCE_BYTES or nonce in self._seen:
            return None
        self._seen.add(nonce)
        return nonce

    def attempt(self, generation: int, mine: bytes, theirs: bytes) -> Sealer:
        """The sealing keys of one attempt, bound to both sides' fresh nonces."""
        sender, receiver = (mine, theirs) if self.role is Role.SENDER else (theirs, mine)
        info = b"reconnect attempt %d %s %s" % (
            generation,
            sender.hex().encode(),
            receiver.hex().encode(),
        )
        return Sealer(self.role, _hkdf(self._secret, info))


class Runs:
    """The results of one transfer's runs (one per connection, for a single receiver or each
    receiver of ``send --many``): what crossed the network adds up, and the time counts from
    the first run's start."""

    def __init__(self) -> None:
        self.lost = 0
        """What crossed in the runs that failed (their connection died)."""
        self.started = time.monotonic()

    def add(self, result: TransferResult) -> TransferResult:
        sent = self.lost + result.sent
        return dataclasses.replace(result, sent=sent, seconds=time.monotonic() - self.started)


class Reconnector:
    """Runs a transfer over a link and, when the path dies, over new links to the same peer
    met again at ``place`` (:mod:`p2pshare.places`; a URL means a ``p2pshare-signal``
    server there), within ``settings.reconnect_s`` per outage (0: never)."""

    def __init__(
        self, place: Place | str, keys: ReconnectKeys, settings: Settings, on_event: EventSink
    ) -> None:
        from p2pshare.places import ServerPlace

        self.place: Place = ServerPlace(place) if isinstance(place, str) else place
        self.keys = keys
        self.settings = settings
        self.on_event = on_event
        self.generation = 0

    @classmethod
    def for_server(
        cls, url: str, keys: ReconnectKeys, settings: Settings, on_event: EventSink
    ) -> Reconnector:
        """Meeting again on the ``p2pshare-signal`` server at ``url``."""
        return cls(url, keys, settings, on_event)

    async def run(self, first: PeerLink, once: Callable[[Channel, int], Awaitable[T]]) -> T:
        """``once(link, run)`` on ``first``, then after each loss on a new link (``run`` counts
        from 0). Raises the first loss's error, saying so, when the budget is spent."""
        link = first
        run = 0
        async with contextlib.AsyncExitStack() as stack:
            while True:
                try:
                    async with telling_peer(link):
                        return await once(link, run)
                except PeerLostError as exc:
                    if exc.remote or not exc.path_died or self.settings.reconnect_s <= 0:
                        raise
                    logger.info("path lost (%s): reconnecting", exc.message)
                    lost = exc
                await link.close()
                new = await self._reconnect(lost)
                stack.push_async_callback(new.close)
                link = new
                run += 1

    async def _reconnect(self, lost: PeerLostError) -> PeerLink:
        budget = self.settings.reconnect_s
        started = time.monotonic()
        deadline = started + budget
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerLostError(
                    f"{lost.message}; no reconnect within {budget:g} s: "
                    "partial data kept; send again to resume"
                )
            attempt += 1
            self.on_event(Reconnecting(time.monotonic() - started, attempt, budget))
            try:
                async with asyncio.timeout(left):
                    link = await self.attempt(left)
            except ServerRefusedError as exc:
                # The operator said no (a mailbox welcome's error): asking again is rude.
                raise PeerLostError(
                    f"{lost.message}; no reconnect: {exc.message}; "
                    "partial data kept; send again to resume"
                ) from None
            except (P2PShareError, TimeoutError, OSError) as exc:
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
            else:
                self.generation += 1
                elapsed = time.monotonic() - started
                logger.info("reconnected after %.1f s (attempt %d)", elapsed, attempt)
                self.on_event(Reconnected(link.path(), elapsed, attempt))
                return link
            pause = BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    async def attempt(self, left: float) -> PeerLink:
        """One try within ``left`` seconds: meet at the place, prove the key both ways, a
        new peer connection. Raises when it fails (the caller tries again)."""
        from p2pshare.pairing import tell_mood

        generation = self.generation
        nameplate = self.keys.nameplate(generation)
        # The server may be unreachable a while too (the same outage): bound each step.
        async with self.place.meet(nameplate, min(left, self.settings.connect_timeout_s)) as rv:
            try:
                return await self._in_room(rv, generation, left)
            except Exception as exc:
                tell_mood(rv, exc)  # a mailbox server hears how the attempt went
                raise

    async def _in_room(self, rv: Relay, generation: int, left: float) -> PeerLink:
        """Hellos both ways in the room, then sealed offer and answer under the attempt keys."""
        from p2pshare.pairing import connect_again

        hello, mine = self.keys.hello(generation)
        await rv.send(hello)
        await rv.wait_paired(left)
        # Paired, the peer's hello is already on its way: a room whose other side sends
        # nothing that opens (a stranger's room under the same number) ends this attempt
        # at the connect timeout, not at the end of the budget.
        async with asyncio.timeout(self.settings.connect_timeout_s):
            while True:
                theirs = self.keys.open_hello(await rv.receive(None), generation)
                if theirs is not None:
                    break
                logger.info("ignored a reconnect hello that does not prove the session key")
        sealer = self.keys.attempt(generation, mine, theirs)
        return await connect_again(rv, sealer, self.settings)
