"""A receiver that accepts an offer and then never grants credit, while it keeps answering
(pings every second): the sender must give up on it, not wait forever.

Run as ``python -m tests.stalling_receiver SERVER CODE``; it prints ``{"accepted": true}``
once its Accept is sent, then reads and drops whatever comes, and when the sender hangs up
prints ``{"data_bytes": N}``: the bytes of file data it was sent (what credit counts: the
raw length of a compressed frame).
"""

from __future__ import annotations

import asyncio
import json
import sys

from p2pshare import messages as m
from p2pshare.codes import parse_code
from p2pshare.config import Settings
from p2pshare.pairing import pair, rendezvous
from p2pshare.pake import Role
from p2pshare.webrtc import IceConfig
from signal_server import eventloop

WINDOW = 1024 * 1024


async def main(server: str, code_text: str) -> None:
    code = parse_code(code_text)
    settings = Settings(server=server, ice=IceConfig(local_addresses=("127.0.0.1",)))
    async with rendezvous(settings) as (rv, _):
        await rv.claim(code.nameplate)
        async with pair(rv, Role.RECEIVER, code, settings) as link:
            while not isinstance(m.decode(await link.incoming.get()), m.OfferHead):
                pass
            link.send(m.encode(m.Accept(WINDOW)))
            print(json.dumps({"accepted": True}), flush=True)

            async def keep_answering() -> None:
                while True:
                    link.send(m.encode(m.Ping()))
                    await asyncio.sleep(1)

            pinging = asyncio.ensure_future(keep_answering())
            data_bytes = 0
            try:
                while frame := await link.incoming.get():
                    msg = m.decode(frame)
                    if isinstance(msg, m.DataZ):
                        data_bytes += msg.raw_len
                    elif isinstance(msg, m.Data | m.DataEnd):
                        data_bytes += len(msg.payload)
            finally:
                pinging.cancel()
            print(json.dumps({"data_bytes": data_bytes}), flush=True)


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1], sys.argv[2]))
