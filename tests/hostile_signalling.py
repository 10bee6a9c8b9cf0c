"""A malicious sender that gets the code right but sends a hostile *sealed* offer.

Run as ``python -m tests.hostile_signalling SERVER CASE``: prints ``{"code": ...}``, runs the
real PAKE with the receiver, then seals CASE's offer and prints what the receiver sent back
(``{"reply": ...}``: its sealed abort, opened) so a test can see both sides.
"""

from __future__ import annotations

import json
import re
import sys

from p2pshare.codes import Code, generate_words
from p2pshare.config import IceConfig, Settings
from p2pshare.errors import P2PShareError
from p2pshare.pairing import authenticate, rendezvous
from p2pshare.pake import PakeSession, Role
from p2pshare.webrtc import PeerLink
from signal_server import eventloop

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))


async def real_offer() -> str:
    link = PeerLink(LOOPBACK)
    try:
        return await link.create_offer()
    finally:
        await link.close()


def sealed(pake: PakeSession, obj: object) -> bytes:
    return pake.seal(json.dumps(obj).encode())


async def payload(case: str, pake: PakeSession) -> bytes:
    if case == "deep-json":
        return pake.seal(b"[" * 40_000)
    if case == "not-json":
        return pake.seal(b"\xff\xfe not json")
    if case == "tampered":
        body = bytearray(sealed(pake, {"type": "offer", "sdp": await real_offer()}))
        body[-1] ^= 1
        return bytes(body)
    if case == "garbage-sdp":
        return sealed(pake, {"type": "offer", "sdp": "garbage"})
    if case == "no-application":
        sdp = (await real_offer()).replace("m=application ", "m=audio ")
        return sealed(pake, {"type": "offer", "sdp": sdp})
    if case == "tiny-max-message":
        sdp = re.sub(r"a=max-message-size:\d+", "a=max-message-size:1", await real_offer())
        return sealed(pake, {"type": "offer", "sdp": sdp})
    if case == "sdp-not-a-string":
        return sealed(pake, {"type": "offer", "sdp": 5})
    if case == "abort-wrong-code":
        # A peer claiming, after a correct PAKE, that the code was wrong: not believed.
        return sealed(pake, {"type": "abort", "error": "wrong-code", "message": "ha"})
    raise ValueError(case)


CASES = (
    "deep-json",
    "not-json",
    "tampered",
    "garbage-sdp",
    "no-application",
    "tiny-max-message",
    "sdp-not-a-string",
    "abort-wrong-code",
)


async def main(server: str, case: str) -> None:
    settings = Settings(server=server, ice=LOOPBACK)
    async with rendezvous(settings) as (rv, _):
        code = Code(await rv.allocate(), generate_words(2))
        print(json.dumps({"code": str(code)}), flush=True)
        pake = await authenticate(rv, Role.SENDER, code, settings)
        await rv.send(await payload(case, pake))
        try:
            reply = json.loads(pake.open(await rv.receive(30)))
        except P2PShareError as exc:
            reply = {"failed": exc.name}
        print(json.dumps({"reply": reply}), flush=True)


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1], sys.argv[2]))
