"""The page's speed against its ceiling, in one run (issue 29, item 5).

The ceiling is a bare data channel between Chromium and the CLI's own WebRTC stack
(``p2pshare.webrtc.PeerLink``: aiortc with p2pshare's SCTP changes, uvloop, large socket
buffers), with no p2pshare protocol, hashing or file I/O on either side: the page's side is
plain JavaScript run in a page from ``p2pshare-signal``, the Python side a separate process.
The legs are the real thing: ``p2pshare send`` to the page, the page to ``p2pshare receive``,
and page to page (its ceiling: the same bare channel between two Chromium pages).

    .venv/bin/python bench/page_speed.py [--mib 64] [--runs 3]

Prints MB/s per run and each leg's median as a share of its ceiling's median. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

MESSAGE_BYTES = 256 * 1024
"""What the page sends between Chromium and either peer (webrtc.js: the largest they accept)."""

PAGE_PEER = """
async ([role, total, offer]) => {
  // A bare data channel: no p2pshare protocol, no hashing, no files.
  const pc = new RTCPeerConnection({ iceServers: [] });
  let channel;
  // Count from the first message on: the other side may send the moment the channel opens.
  let finish;
  window.benchReceived = new Promise((resolve) => { finish = resolve; });
  let got = 0, start = 0;
  const count = (e) => {
    if (!start) start = performance.now();
    got += e.data.byteLength;
    if (got >= total) finish((performance.now() - start) / 1000);
  };
  const opened = new Promise((resolve) => {
    const adopt = (c) => {
      channel = c;
      c.binaryType = "arraybuffer";
      c.onmessage = count;
      c.onopen = resolve;
      if (c.readyState === "open") resolve();
    };
    if (offer) pc.ondatachannel = (e) => adopt(e.channel);
    else adopt(pc.createDataChannel("bench", { ordered: true }));
  });
  const gathered = () => new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  window.benchPc = pc;
  window.benchOpened = opened;
  window.benchChannel = () => channel;
  if (offer) {
    await pc.setRemoteDescription({ type: "offer", sdp: offer });
    await pc.setLocalDescription(await pc.createAnswer());
  } else {
    await pc.setLocalDescription(await pc.createOffer());
  }
  await gathered();
  return pc.localDescription.sdp;
}
"""

PAGE_RUN = """
async ([role, total, messageBytes]) => {
  await window.benchOpened;
  const channel = window.benchChannel();
  if (role === "receive") return await window.benchReceived;
  const block = new Uint8Array(messageBytes);
  crypto.getRandomValues(block.subarray(0, 65536));
  channel.bufferedAmountLowThreshold = 256 * 1024;
  let sent = 0;
  while (sent < total) {
    while (channel.bufferedAmount > 1024 * 1024) {
      await new Promise((resolve) => { channel.onbufferedamountlow = resolve; });
    }
    const n = Math.min(messageBytes, total - sent);
    channel.send(n === messageBytes ? block : block.subarray(0, n));
    sent += n;
  }
  return 0;
}
"""


# -- the Python side of the ceiling: p2pshare's PeerLink in its own process ---------------------


async def python_peer(role: str, total: int) -> None:
    """Offer a data channel on 127.0.0.1, then send or count ``total`` bare bytes."""
    import time

    from p2pshare.config import IceConfig
    from p2pshare.webrtc import PeerLink

    link = PeerLink(IceConfig(local_addresses=("127.0.0.1",)))
    print(json.dumps({"offer": await link.create_offer()}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await link.accept_answer(json.loads(line)["answer"])
    await link.wait_open(30)
    if role == "send":
        block = bytes(link.max_message_bytes)
        sent = 0
        while sent < total:
            n = min(len(block), total - sent)
            link.send(block[:n])
            sent += n
            await link.drain()
        print(json.dumps({"sent": sent, "message_bytes": link.max_message_bytes}), flush=True)
        await link.wait_lost()
    else:
        got = 0
        start = 0.0
        while got < total:
            frame = await link.incoming.get()
            if not frame:
                raise SystemExit("lost")
            if not start:
                start = time.perf_counter()
            got += len(frame)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


# -- the driver ---------------------------------------------------------------------------------


def ceiling_with_python(page: Any, direction: str, total: int) -> float:
    """MB/s of a bare channel, aiortc -> Chromium ("to-page") or Chromium -> aiortc."""
    import subprocess

    role = "send" if direction == "to-page" else "receive"
    proc = subprocess.Popen(
        [sys.executable, __file__, "peer", role, str(total)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    offer = json.loads(proc.stdout.readline())["offer"]
    answer = page.evaluate(PAGE_PEER, ["answer", total, offer])
    proc.stdin.write(json.dumps({"answer": answer}) + "\n")
    proc.stdin.flush()
    page_role = "receive" if direction == "to-page" else "send"
    seconds = page.evaluate(PAGE_RUN, [page_role, total, MESSAGE_BYTES])
    if direction == "from-page":
        seconds = json.loads(proc.stdout.readline())["seconds"]
    page.evaluate("window.benchPc.close()")
    proc.kill()
    proc.wait()
    return float(total / seconds / 1e6)


def ceiling_page_to_page(
    sender: Any, receiver: Any, total: int, message_bytes: int = MESSAGE_BYTES
) -> float:
    offer = sender.evaluate(PAGE_PEER, ["offer", total, None])
    answer = receiver.evaluate(PAGE_PEER, ["answer", total, offer])
    sender.evaluate("(sdp) => window.benchPc.setRemoteDescription({type: 'answer', sdp})", answer)
    sender.evaluate(PAGE_RUN, ["send", total, message_bytes])
    seconds = receiver.evaluate(PAGE_RUN, ["receive", total, message_bytes])
    for page in (sender, receiver):
        page.evaluate("window.benchPc.close()")
    return float(total / seconds / 1e6)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        from signal_server import eventloop

        eventloop.run(python_peer(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import playwright.sync_api as playwright_sync

    from tests.cli_helpers import Peer, run_signal_server
    from tests.test_browser import (
        CHROMIUM,
        CHROMIUM_ARGS,
        cli_receiver,
        cli_sender,
        http_url,
        random_file,
        receive_in_page,
        send_in_page,
    )

    total = args.mib * 1024 * 1024
    rates: dict[str, list[float]] = {}

    def note(name: str, rate: float) -> None:
        rates.setdefault(name, []).append(rate)
        print(f"{name:28s} {rate:6.1f} MB/s", flush=True)

    with (
        tempfile.TemporaryDirectory() as tmp,
        run_signal_server("--host", "127.0.0.1", "--port", "0") as server,
        playwright_sync.sync_playwright() as p,
    ):
        work = Path(tmp)
        src = work / "bench.bin"
        random_file(src, total)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def fresh_page() -> Any:
            page = browser.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(300_000)
            page.goto(http_url(server))
            return page

        for run in range(args.runs):
            print(f"-- run {run + 1}", flush=True)
            page = fresh_page()
            note("ceiling aiortc -> Chromium", ceiling_with_python(page, "to-page", total))
            note("ceiling Chromium -> aiortc", ceiling_with_python(page, "from-page", total))
            other = fresh_page()
            note("ceiling Chromium -> Chromium", ceiling_page_to_page(page, other, total))
            # What the page sent before it used the largest message the peer accepts.
            note(
                "  same, 64 KiB messages",
                ceiling_page_to_page(page, other, total, 64 * 1024),
            )
            for context in (page.context, other.context):
                context.close()

            sender, code = cli_sender(server, src)
            page = fresh_page()
            download = receive_in_page(page, server, code)
            download.path()
            assert sender.wait() == 0, sender.stderr
            done = sender.last("done")
            note("CLI -> page", done["bytes"] / done["seconds"] / 1e6)
            page.context.close()

            out = work / f"out{run}"
            out.mkdir()
            page = fresh_page()
            code = send_in_page(page, server, [src])
            receiver: Peer = cli_receiver(server, code, out)
            assert receiver.wait(300) == 0, receiver.stderr
            done = receiver.last("done")
            note("page -> CLI", done["bytes"] / done["seconds"] / 1e6)
            page.context.close()

            first, second = fresh_page(), fresh_page()
            code = send_in_page(first, server, [src])
            second.goto(http_url(server) + "#" + code)
            second.get_by_role("button", name="Accept", exact=True).click()
            second.locator("#message.ok").wait_for(timeout=300_000)
            text = second.locator("#message").inner_text()
            seconds = float(text.rsplit(" in ", 1)[1].split(" s")[0])
            note("page -> page", total / seconds / 1e6)
            first.context.close()
            second.context.close()
        browser.close()

    median = {name: statistics.median(values) for name, values in rates.items()}
    print("\nmedians (MB/s) and share of the ceiling:")
    for leg, ceiling in (
        ("CLI -> page", "ceiling aiortc -> Chromium"),
        ("page -> CLI", "ceiling Chromium -> aiortc"),
        ("page -> page", "ceiling Chromium -> Chromium"),
    ):
        print(
            f"{leg:14s} {median[leg]:6.1f} of {median[ceiling]:6.1f}"
            f"  = {100 * median[leg] / median[ceiling]:.0f}%"
        )


if __name__ == "__main__":
    main()
