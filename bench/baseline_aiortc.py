"""Plain aiortc data-channel transfers, no p2pshare code involved: the baselines that
``bench/compare.py`` measures p2pshare against.

Two patterns, both on stock aiortc (stock SCTP, 1,200-byte packets, default socket buffers):

- ``example``: aiortc's ``examples/datachannel-filexfer``: 16 KiB messages sent from the
  ``bufferedamountlow`` event with the default low threshold of 0, on stock asyncio. The
  sender refills only once aiortc's buffer is empty, so SCTP idles between bursts.
- ``tuned``: what a careful user of aiortc's public API would write: uvloop, 64 KiB messages,
  ``bufferedAmountLowThreshold`` 256 KiB and a 1 MiB high-water mark (the sender tops the
  buffer up to 1 MiB whenever it drains to 256 KiB, so SCTP never waits for the application).

One process per role; the offer and answer travel through the parent's pipes as JSON lines::

    python bench/baseline_aiortc.py send FILE [example|tuned]     # prints offer, reads answer
    python bench/baseline_aiortc.py receive OUT [example|tuned]   # reads offer, prints answer
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

EXAMPLE_MESSAGE_BYTES = 16384
TUNED_MESSAGE_BYTES = 64 * 1024
TUNED_LOW_BYTES = 256 * 1024
TUNED_HIGH_BYTES = 1024 * 1024


async def _read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _print(obj: dict[str, str]) -> None:
    print(json.dumps(obj), flush=True)


async def _connect_sender(pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    _print({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    answer = json.loads(await _read_line())
    await pc.setRemoteDescription(RTCSessionDescription(**answer))


async def send_example(path: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("filexfer")
    done = asyncio.Event()
    fp = open(path, "rb")  # noqa: SIM115 - the example's pattern
    done_reading = False

    def send_data() -> None:
        nonlocal done_reading
        while channel.bufferedAmount <= channel.bufferedAmountLowThreshold and not done_reading:
            data = fp.read(EXAMPLE_MESSAGE_BYTES)
            channel.send(data)
            if not data:
                done_reading = True

    channel.on("bufferedamountlow", send_data)
    channel.on("open", send_data)
    channel.on("message", lambda message: done.set())  # the receiver's "got it"
    await _connect_sender(pc)
    await done.wait()
    await pc.close()


async def send_tuned(path: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("filexfer")
    channel.bufferedAmountLowThreshold = TUNED_LOW_BYTES
    opened, drained, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    channel.on("open", opened.set)
    channel.on("bufferedamountlow", drained.set)
    channel.on("message", lambda message: done.set())
    await _connect_sender(pc)
    await opened.wait()
    with open(path, "rb") as fp:
        while data := fp.read(TUNED_MESSAGE_BYTES):
            channel.send(data)
            if channel.bufferedAmount > TUNED_HIGH_BYTES:
                drained.clear()
                await drained.wait()
    channel.send(b"")
    await done.wait()
    await pc.close()


async def receive(out_path: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    done = asyncio.Event()
    out = open(out_path, "wb")  # noqa: SIM115 - the example's pattern

    @pc.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        @channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: bytes) -> None:
            if message:
                out.write(message)
            else:
                out.close()
                channel.send("done")
                done.set()

    offer = json.loads(await _read_line())
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    _print({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
    await done.wait()
    await asyncio.sleep(1)  # let "done" reach the sender, as the example does
    await pc.close()


def main() -> None:
    role, path = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "example"
    if mode == "tuned":
        import uvloop

        uvloop.run(send_tuned(path) if role == "send" else receive(path))
    else:
        asyncio.run(send_example(path) if role == "send" else receive(path))


if __name__ == "__main__":
    main()
