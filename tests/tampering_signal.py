"""A p2pshare-signal that flips one bit in the Nth relayed body, or (``dup:N``) relays the
Nth body twice, or (``reconnect:MODE``) pairs honestly and then misbehaves in every reconnect
room: a malicious server for tests.

Run as ``python -m tests.tampering_signal N`` (or ``dup:N``, ``reconnect:MODE``); prints
``listening on URL`` like the real one. The reconnect modes then print one JSON line per
thing they did (``{"did": ...}``) for the test to check that the attack happened.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections import Counter
from typing import Any

from p2pshare.pake import Role
from p2pshare.reconnect import ReconnectKeys
from signal_server import eventloop, protocol
from signal_server.rooms import Action, CloseConn, Room, SendTo
from signal_server.server import ServerSettings, SignalServer, start_server


class TamperingServer(SignalServer):
    def __init__(self, settings: ServerSettings, victim: int, duplicate: bool = False) -> None:
        super().__init__(settings)
        self.victim = victim
        self.duplicate = duplicate
        self.relayed = 0

    def _dispatch(self, conn: int, ip: str, message: protocol.ClientMessage) -> list[Action]:
        if isinstance(message, protocol.Send):
            self.relayed += 1
            if self.relayed == self.victim and self.duplicate:
                once = super()._dispatch(conn, ip, message)
                return once + super()._dispatch(conn, ip, message)
            if self.relayed == self.victim:
                raw = bytearray(base64.urlsafe_b64decode(message.body))
                raw[len(raw) // 2] ^= 0x01
                message = protocol.Send(base64.urlsafe_b64encode(bytes(raw)).decode())
        return super()._dispatch(conn, ip, message)


RECONNECT_MODES = {
    "replay": "drops the first attempt at its sealed offer, then replays the first pairing's "
    "messages and the first attempt's hellos into the next one, before the genuine ones",
    "tamper": "flips a byte in every sealed offer, answer and abort",
    "substitute": "swaps the sealed offer for the first pairing's (another DTLS fingerprint)",
    "fake-peer": "keeps the peers apart: each meets the server's own peer, whose hellos and "
    "offer are sealed without the session key, and its own hello reflected",
    "crowded": "answers every reconnect claim with crowded",
    "drop": "closes the connection at every reconnect claim",
    "silent": "never answers a reconnect claim",
}


def _body(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


class ReconnectHostileServer(SignalServer):
    """Relays the first pairing honestly, then misbehaves in each reconnect room (a room
    opened with ``claim`` and ``create``: docs/protocol.md, "Reconnecting") as ``mode`` says
    (:data:`RECONNECT_MODES`). It never holds the session key: what it can do is what any
    rendezvous server can."""

    def __init__(self, settings: ServerSettings, mode: str) -> None:
        super().__init__(settings)
        if mode not in RECONNECT_MODES:
            raise SystemExit(f"unknown mode {mode}; one of {', '.join(RECONNECT_MODES)}")
        self.mode = mode
        self.reconnect_nameplates: set[str] = set()
        self.first_bodies: list[tuple[bool, str]] = []
        """Bodies of the first pairing in order: (from its creator, the sender; body)."""
        self.bodies_from: Counter[int] = Counter()
        """Reconnect rooms: bodies each connection sent (its first is its hello)."""
        self.hellos: list[str] = []
        self.pairings: Counter[str] = Counter()
        self.fake_rooms: set[int] = set()
        self.stranger = ReconnectKeys(Role.SENDER, os.urandom(32))

    def did(self, what: str, **detail: Any) -> None:
        print(json.dumps({"did": what, **detail}), flush=True)

    def _dispatch(self, conn: int, ip: str, message: protocol.ClientMessage) -> list[Action]:
        if isinstance(message, protocol.Claim) and (
            message.create or message.nameplate in self.reconnect_nameplates
        ):
            return self._reconnect_claim(conn, ip, message)
        room = self.registry.room_of(conn)
        if not isinstance(message, protocol.Send) or room is None:
            return super()._dispatch(conn, ip, message)
        if room.nameplate not in self.reconnect_nameplates and conn not in self.fake_rooms:
            self.first_bodies.append((conn == room.creator, message.body))
            return super()._dispatch(conn, ip, message)
        self.bodies_from[conn] += 1
        return self._reconnect_body(conn, ip, room, message, self.bodies_from[conn])

    def _reconnect_claim(self, conn: int, ip: str, message: protocol.Claim) -> list[Action]:
        self.reconnect_nameplates.add(message.nameplate)
        self.did("claim", create=message.create)
        if self.mode == "crowded":
            raise protocol.SignalError(protocol.CROWDED, "crowded: two peers are already here")
        if self.mode == "drop":
            return [CloseConn(conn, protocol.CLOSE_GOING_AWAY, "going away")]
        if self.mode == "silent":
            return []
        if self.mode == "fake-peer":
            return self._meet_fake_peer(conn, message.nameplate)
        actions = super()._dispatch(conn, ip, message)
        room = self.registry.room_of(conn)
        if room is None or not room.paired:
            return actions
        self.pairings[room.nameplate] += 1
        if self.mode != "replay" or self.pairings[room.nameplate] == 1:
            return actions
        # Old messages first, ahead of the creator's pending hello (relayed now) and the
        # joiner's: the genuine hellos follow, and must be the ones that open.
        relayed = [a for a in actions if isinstance(a, SendTo) and a.message["type"] == "message"]
        pending = {a.message["body"] for a in relayed}
        old = [body for _, body in self.first_bodies]
        old += [hello for hello in self.hellos if hello not in pending]
        injected = [
            SendTo(member, protocol.relayed_msg(body)) for member in room.members for body in old
        ]
        self.did("replayed", bodies=len(old))
        return [a for a in actions if a not in relayed] + injected + relayed

    def _meet_fake_peer(self, conn: int, nameplate: str) -> list[Action]:
        """A private room where the server plays the peer, without the session key."""
        self.registry.claim(conn, f"fake-{conn}", True, self.clock())
        self.fake_rooms.add(conn)
        fakes = [self.stranger.hello(g)[0] for g in (0, 1)]
        fakes += [ReconnectKeys(Role.RECEIVER, os.urandom(32)).hello(0)[0]]
        sealer = self.stranger.attempt(0, os.urandom(16), os.urandom(16))
        offer = [body for creator, body in self.first_bodies if creator]
        fakes += [sealer.seal(base64.urlsafe_b64decode(max(offer, key=len)))] if offer else []
        self.did("fake-peer")
        return [
            SendTo(conn, protocol.claimed_msg(nameplate)),
            SendTo(conn, protocol.paired_msg()),
            *(SendTo(conn, protocol.relayed_msg(_body(fake))) for fake in fakes),
        ]

    def _reconnect_body(
        self, conn: int, ip: str, room: Room, message: protocol.Send, index: int
    ) -> list[Action]:
        if conn in self.fake_rooms:
            if index == 1:  # its own hello, reflected
                return [SendTo(conn, protocol.relayed_msg(message.body))]
            self.did("answered-fake-peer")  # it believed the server's peer: never expected
            return []
        if index == 1:
            self.hellos.append(message.body)
        elif self.mode == "replay" and self.pairings[room.nameplate] <= 1:
            # The first attempt ends at the sealed offer (a server hiccup): both sides have
            # taken the other's hello by then, and meet its replay in the next attempt.
            self.did("dropped-attempt")
            return [CloseConn(m, protocol.CLOSE_GOING_AWAY, "going away") for m in room.members]
        elif self.mode == "tamper":
            raw = bytearray(base64.urlsafe_b64decode(message.body))
            raw[len(raw) // 2] ^= 0x01
            message = protocol.Send(_body(bytes(raw)))
            self.did("tampered", index=index)
        elif self.mode == "substitute" and index == 2:
            offer = [body for creator, body in self.first_bodies if creator]
            message = protocol.Send(max(offer, key=len))
            self.did("substituted")
        return super()._dispatch(conn, ip, message)


async def main(mode: str) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0)
    signal: SignalServer
    if mode.startswith("reconnect:"):
        signal = ReconnectHostileServer(settings, mode.removeprefix("reconnect:"))
    else:
        duplicate = mode.startswith("dup:")
        signal = TamperingServer(settings, int(mode.removeprefix("dup:")), duplicate)
    async with start_server(settings, signal=signal) as running:
        print(f"listening on {running.url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1]))
