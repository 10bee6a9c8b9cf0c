"""A p2pshare-signal that flips one bit in the Nth relayed body, or (``dup:N``) relays the
Nth body twice: a malicious server for tests.

Run as ``python -m tests.tampering_signal N`` (or ``dup:N``); prints ``listening on URL`` like
the real one.
"""

from __future__ import annotations

import asyncio
import base64
import sys

from signal_server import eventloop, protocol
from signal_server.rooms import Action
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


async def main(mode: str) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0)
    duplicate = mode.startswith("dup:")
    signal = TamperingServer(settings, int(mode.removeprefix("dup:")), duplicate)
    async with start_server(settings, signal=signal) as running:
        print(f"listening on {running.url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1]))
