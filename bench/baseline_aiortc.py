"""The baseline: a plain aiortc data-channel transfer, written to the pattern of aiortc's
``examples/datachannel-filexfer`` (16 KiB messages, sent from the ``bufferedamountlow``
event, stock asyncio, stock SCTP). No p2pshare code is involved.

One process per role; the offer and answer travel through the parent's pipes as JSON lines::

    python bench/baseline_aiortc.py send FILE      # prints the offer, reads the answer
    python bench/baseline_aiortc.py receive OUT    # reads the offer, prints the answer
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

CHUNK = 16384


async def _read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _print(obj: dict[str, str]) -> None:
    print(json.dumps(obj), flush=True)


async def send(path: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("filexfer")
    done = asyncio.Event()
    fp = open(path, "rb")  # noqa: SIM115 - the example's pattern
    done_reading = False

    def send_data() -> None:
        nonlocal done_reading
        while channel.bufferedAmount <= channel.bufferedAmountLowThreshold and not done_reading:
            data = fp.read(CHUNK)
            channel.send(data)
            if not data:
                done_reading = True

    channel.on("bufferedamountlow", send_data)
    channel.on("open", send_data)
    channel.on("message", lambda message: done.set())  # the receiver's "got it"
    await pc.setLocalDescription(await pc.createOffer())
    _print({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    answer = json.loads(await _read_line())
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await done.wait()
    await pc.close()


async def receive(out_path: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()
    out = open(out_path, "wb")  # noqa: SIM115 - the example's pattern

    @pc.on("datachannel")
    def on_datachannel(channel: object) -> None:
        @channel.on("message")  # type: ignore[attr-defined, untyped-decorator]
        def on_message(message: bytes) -> None:
            if message:
                out.write(message)
            else:
                out.close()
                channel.send("done")  # type: ignore[attr-defined]
                done.set()

    offer = json.loads(await _read_line())
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    _print({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await done.wait()
    await asyncio.sleep(1)  # let "done" reach the sender, as the example does
    await pc.close()


if __name__ == "__main__":
    role, path = sys.argv[1], sys.argv[2]
    asyncio.run(send(path) if role == "send" else receive(path))
