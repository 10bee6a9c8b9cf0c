"""The page's speed against its ceiling, in one run (issue 29, item 5).

The ceiling is a bare data channel between Chromium and the CLI's own WebRTC stack
(``p2pshare.webrtc.PeerLink``: aiortc with p2pshare's SCTP changes, uvloop, large socket
buffers), with no p2pshare protocol, hashing or file I/O on either side: the page's side is
plain JavaScript run in a page from ``p2pshare-signal``, the Python side a separate process.
The legs are the real thing: ``p2pshare send`` to the page, the page to ``p2pshare receive``,
and page to page (its ceiling: the same bare channel between two Chromium pages). Each leg runs
right after its ceiling, so both see the same load; the share of the ceiling is taken per run.

    .venv/bin/python bench/page_speed.py [--mib 32 128] [--runs 3] [--legs to-page from-page]
        [--hash worker|main|off] [--download stream|blob]

``--hash`` is a debug switch of this benchmark only (the page is served as built): ``main``
refuses the page its hashing worker, so it hashes on its main thread as before; ``off`` serves
a worker that hashes nothing and answers the file's SHA-256, known in advance, so the page's
hashing cost disappears while everything else stays. ``--download blob`` blocks the service
worker, so a receiving page keeps Blobs instead of streaming the download.

Every leg also reports the CPU ms per MiB each thread spent (Chromium's processes by thread
name, the Python or CLI peer) and the machine's UDP drops (``page_probes.py``); ``--profile``
adds each page's main thread (CDP), ``--py-spy DIR`` the CLI peer. Results and what they
show: docs/performance.md, "The page's speed". Every step has a deadline:
a step that overruns stops the benchmark with the leg and the step named (exit 3). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from page_probes import (  # this script's own directory
    SPY_ARGS,
    CpuMeter,
    print_profile,
    print_stacks,
)
from page_watchdog import LegFailed, Watchdog, check_exit, read_line  # this directory

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_BYTES = 256 * 1024
"""What the page sends between Chromium and either peer (webrtc.js: the largest they accept)."""
SETUP_S = 60
"""Deadline of a step that only connects or clicks."""
PlaywrightError: type[Exception] = Exception
"""playwright.sync_api.Error once Playwright is imported (only the driver imports it)."""
MIN_RATE_MBPS = 0.5
"""A transfer slower than this is treated as hung (its deadline follows from the size)."""

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
      await new Promise((resolve, reject) => {
        channel.onbufferedamountlow = resolve;
        // A closed channel never drains: fail instead of waiting forever.
        channel.onclose = () => reject(new Error("the bench channel closed while sending"));
      });
    }
    const n = Math.min(messageBytes, total - sent);
    channel.send(n === messageBytes ? block : block.subarray(0, n));
    sent += n;
  }
  return 0;
}
"""

FAKE_HASH_WORKER = """
// The benchmark's --hash off: hashes nothing, answers the digest the benchmark computed.
self.onmessage = (e) => {
  const { op, id } = e.data;
  if (op !== "update") self.postMessage({ id, digest: "%s" });
};
"""


# -- deadlines ------------------------------------------------------------------------------------


async def python_peer(role: str, total: int) -> None:
    """Offer a data channel on 127.0.0.1, then send or count ``total`` bare bytes."""
    from p2pshare.config import IceConfig
    from p2pshare.webrtc import PeerLink

    link = PeerLink(IceConfig(local_addresses=("127.0.0.1",)))
    print(json.dumps({"offer": await link.create_offer()}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await link.accept_answer(json.loads(line)["answer"])
    try:
        await link.wait_open(SETUP_S)
    except Exception as exc:
        print(json.dumps({"error": f"no channel: {exc}"}), flush=True)
        return
    print(json.dumps({"open": True}), flush=True)
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
                print(json.dumps({"error": f"channel lost after {got} bytes"}), flush=True)
                return
            if not start:
                start = time.perf_counter()
            got += len(frame)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


# -- the driver ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, browser: Any, server: str) -> None:
        self.args = args
        self.browser = browser
        self.server = server
        self.dog = Watchdog()
        self.rates: dict[tuple[int, str], list[float]] = {}
        self.cpu: dict[tuple[int, str], list[dict[str, float]]] = {}
        self.digest = ""
        self.total = 0
        self.failures: list[str] = []
        self.spy_out = Path()

    def transfer_s(self) -> float:
        return SETUP_S + self.total / (MIN_RATE_MBPS * 1e6)

    def note(self, name: str, seconds: float, meter: CpuMeter) -> None:
        rate = self.total / seconds / 1e6
        mib = self.total / 2**20
        self.rates.setdefault((self.total, name), []).append(rate)
        self.cpu.setdefault((self.total, name), []).append(meter.spent)
        top = sorted(meter.spent.items(), key=lambda kv: -kv[1])[:4]
        cost = ", ".join(f"{k} {1000 * v / mib:.0f}" for k, v in top if v > 0)
        udp = meter.udp
        per_mib = udp.get("InDatagrams", 0) / mib
        drops = f"UDP drops {udp.get('RcvbufErrors', 0)}, datagrams/MiB {per_mib:.0f}"
        print(f"{name:30s} {rate:6.1f} MB/s   {drops}; ms CPU/MiB: {cost}", flush=True)

    def fresh_page(self, leg: str, fragment: str = "") -> Any:
        options: dict[str, Any] = {"accept_downloads": True}
        if self.args.download == "blob":
            options["service_workers"] = "block"
        with self.dog.step(leg, "open a page", SETUP_S):
            page = self.browser.new_context(**options).new_page()
            page.set_default_timeout(SETUP_S * 1000)
            if self.args.hash == "main":
                page.route("**/hash-worker.js", lambda route: route.abort())
            elif self.args.hash == "off":
                body = FAKE_HASH_WORKER % self.digest
                page.route(
                    "**/hash-worker.js",
                    lambda route: route.fulfill(body=body, content_type="text/javascript"),
                )
            page.goto(self.server.replace("ws://", "http://") + "/" + fragment)
            # The page probes its worker and service worker before it takes a code.
            page.wait_for_function("() => document.readyState === 'complete'")
        return page

    @contextmanager
    def profiled(self, leg: str, pages: dict[str, Any]) -> Iterator[None]:
        """With --profile: sample each page's main thread (CDP) and print where it went."""
        if not self.args.profile:
            yield
            return
        sessions = {}
        for label, page in pages.items():
            cdp = page.context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 500})
            cdp.send("Profiler.start")
            sessions[label] = cdp
        yield
        for label, cdp in sessions.items():
            print_profile(f"{leg}, {label}", cdp.send("Profiler.stop")["profile"], self.total)

    def spy(self, leg: str, pid: int) -> subprocess.Popen[bytes] | None:
        """With --py-spy DIR: sample the CLI peer ``pid`` until it exits (collapsed stacks)."""
        if not self.args.py_spy:
            return None
        out = Path(self.args.py_spy) / f"{leg.replace(' ', '')}-{self.total >> 20}MiB.txt"
        self.spy_out = out
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                *SPY_ARGS,
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.dog.children.append(proc)
        return proc

    def spied(self, leg: str, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        with self.dog.step(leg, "py-spy writes its samples", SETUP_S):
            proc.wait()
        print_stacks(self.spy_out)

    # -- ceilings

    def ceiling_with_python(self, direction: str) -> None:
        """A bare channel, aiortc -> Chromium ("to-page") or Chromium -> aiortc."""
        leg = f"ceiling {'aiortc -> Chromium' if direction == 'to-page' else 'Chromium -> aiortc'}"
        role = "send" if direction == "to-page" else "receive"
        page = self.fresh_page(leg)
        proc = subprocess.Popen(
            [sys.executable, __file__, "peer", role, str(self.total)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.dog.children.append(proc)
        assert proc.stdin is not None
        meter = CpuMeter()
        try:
            with self.dog.step(leg, "connect", SETUP_S * 2):
                offer = read_line(proc, SETUP_S, "its offer")["offer"]
                answer = page.evaluate(PAGE_PEER, ["answer", self.total, offer])
                proc.stdin.write(json.dumps({"answer": answer}) + "\n")
                proc.stdin.flush()
                read_line(proc, SETUP_S, "the channel opened")
            meter.start()
            with self.dog.step(leg, "transfer", self.transfer_s()):
                page_role = "receive" if direction == "to-page" else "send"
                seconds = page.evaluate(PAGE_RUN, [page_role, self.total, MESSAGE_BYTES])
                if direction == "from-page":
                    seconds = read_line(proc, self.transfer_s(), "it counted the bytes")["seconds"]
            meter.stop()
        finally:
            proc.kill()
            proc.wait()
            page.context.close()
        self.note(leg, float(seconds), meter)

    def ceiling_page_to_page(self, message_bytes: int = MESSAGE_BYTES) -> None:
        leg = "ceiling Chromium -> Chromium"
        if message_bytes != MESSAGE_BYTES:
            leg = f"  same, {message_bytes // 1024} KiB messages"
        sender, receiver = self.fresh_page(leg), self.fresh_page(leg)
        meter = CpuMeter()
        try:
            with self.dog.step(leg, "connect", SETUP_S):
                offer = sender.evaluate(PAGE_PEER, ["offer", self.total, None])
                answer = receiver.evaluate(PAGE_PEER, ["answer", self.total, offer])
                sender.evaluate(
                    "(sdp) => window.benchPc.setRemoteDescription({type: 'answer', sdp})", answer
                )
            meter.start()
            with self.dog.step(leg, "transfer", self.transfer_s()):
                sender.evaluate(PAGE_RUN, ["send", self.total, message_bytes])
                seconds = receiver.evaluate(PAGE_RUN, ["receive", self.total, message_bytes])
            meter.stop()
        finally:
            sender.context.close()
            receiver.context.close()
        self.note(leg, float(seconds), meter)

    # -- legs

    def cli_to_page(self, src: Path) -> None:
        from tests.test_browser import cli_sender

        leg = "CLI -> page"
        with self.dog.step(leg, "the CLI sender's code", SETUP_S):
            sender, code = cli_sender(self.server, src)
        self.dog.children.append(sender.proc)
        spy = self.spy(leg, sender.proc.pid)
        page = self.fresh_page(leg, "#" + code)
        meter = CpuMeter()
        try:
            with self.dog.step(leg, "the page connects and shows the offer", SETUP_S):
                accept = page.get_by_role("button", name="Accept", exact=True)
                accept.wait_for()
            meter.start()
            with (
                self.dog.step(leg, "transfer (the CLI sender exits)", self.transfer_s()),
                self.profiled(leg, {"receiving page": page}),
            ):
                with page.expect_download(timeout=self.transfer_s() * 1000) as download:
                    accept.click()
                check_exit(sender, self.transfer_s())
            meter.stop()
            with self.dog.step(leg, "the download completes", SETUP_S):
                download.value.path()
        finally:
            sender.kill()
            page.context.close()
        self.spied(leg, spy)
        done = sender.last("done")
        self.note(leg, done["seconds"] * self.total / done["bytes"], meter)

    def page_to_cli(self, src: Path, out: Path) -> None:
        from tests.test_browser import cli_receiver, confirm_words, send_in_page

        leg = "page -> CLI"
        page = self.fresh_page(leg)
        meter = CpuMeter()
        receiver = None
        try:
            with self.dog.step(leg, "the page shows a code", SETUP_S):
                code = send_in_page(page, self.server, [src])
                receiver = cli_receiver(self.server, code, out)
            self.dog.children.append(receiver.proc)
            spy = self.spy(leg, receiver.proc.pid)
            with self.dog.step(leg, "the words are confirmed", SETUP_S):
                confirm_words(page)
            meter.start()
            with (
                self.dog.step(leg, "transfer (the CLI receiver exits)", self.transfer_s()),
                self.profiled(leg, {"sending page": page}),
            ):
                check_exit(receiver, self.transfer_s())
            meter.stop()
        finally:
            if receiver is not None:
                receiver.kill()
            page.context.close()
        for kept in out.iterdir():
            kept.unlink()
        self.spied(leg, spy)
        done = receiver.last("done")
        self.note(leg, done["seconds"] * self.total / done["bytes"], meter)

    def page_to_page(self, src: Path) -> None:
        from tests.test_browser import confirm_words, send_in_page

        leg = "page -> page"
        first = self.fresh_page(leg)
        with self.dog.step(leg, "the page shows a code", SETUP_S):
            code = send_in_page(first, self.server, [src])
        second = self.fresh_page(leg, "#" + code)
        meter = CpuMeter()
        try:
            with self.dog.step(leg, "the receiving page connects", SETUP_S):
                confirm_words(first)
                accept = second.get_by_role("button", name="Accept", exact=True)
                accept.wait_for()
            meter.start()
            with (
                self.dog.step(leg, "transfer (the receiving page says Done)", self.transfer_s()),
                self.profiled(leg, {"sending page": first, "receiving page": second}),
            ):
                accept.click()
                second.locator("#message.ok").wait_for(timeout=self.transfer_s() * 1000)
            meter.stop()
            text = second.locator("#message").inner_text()
        finally:
            first.context.close()
            second.context.close()
        match = re.search(r"in ([0-9.]+) s", text)
        assert match, text
        self.note(leg, float(match.group(1)), meter)

    # -- one size

    def run_size(self, mib: int, work: Path) -> None:
        self.total = mib * 2**20
        src = work / f"bench-{mib}.bin"
        data = os.urandom(self.total)
        src.write_bytes(data)
        self.digest = hashlib.sha256(data).hexdigest()
        del data
        out = work / "out"
        out.mkdir(exist_ok=True)
        legs: dict[str, list[Callable[[], None]]] = {
            "to-page": [lambda: self.ceiling_with_python("to-page"), lambda: self.cli_to_page(src)],
            "from-page": [
                lambda: self.ceiling_with_python("from-page"),
                lambda: self.page_to_cli(src, out),
            ],
            "page-page": [self.ceiling_page_to_page, lambda: self.page_to_page(src)],
            "message-size": [lambda: self.ceiling_page_to_page(64 * 1024)],
        }
        for run in range(self.args.runs):
            print(f"-- {mib} MiB, run {run + 1}; load average {load_average()}", flush=True)
            for name in self.args.legs:
                for step in legs[name]:
                    try:
                        step()
                    except (AssertionError, LegFailed, PlaywrightError) as exc:
                        # A failed transfer is a finding: say it, count it, go on.
                        self.failures.append(f"{mib} MiB run {run + 1}: {exc}")
                        print(f"FAILED: {str(exc)[:300]}", flush=True)


PAIRS = (
    ("CLI -> page", "ceiling aiortc -> Chromium"),
    ("page -> CLI", "ceiling Chromium -> aiortc"),
    ("page -> page", "ceiling Chromium -> Chromium"),
)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}..{max(values):.1f}"


def report(bench: Bench) -> None:
    print(f"\nload average at the end {load_average()}")
    for failure in bench.failures:
        print(f"FAILED: {failure}")
    sizes = sorted({size for size, _ in bench.rates})
    for size in sizes:
        mib = size // 2**20
        print(f"\n{mib} MiB: median MB/s (min..max), and the leg's share of its ceiling per run")
        for leg, ceiling in PAIRS:
            legs, ceils = bench.rates.get((size, leg)), bench.rates.get((size, ceiling))
            if not legs or not ceils:
                continue
            shares = [100 * a / b for a, b in zip(legs, ceils, strict=False)]
            print(
                f"  {leg:13s} {statistics.median(legs):6.1f} ({spread(legs)})"
                f"  ceiling {statistics.median(ceils):6.1f} ({spread(ceils)})"
                f"  share median {statistics.median(shares):.0f}% ({spread(shares)}%)"
            )
        print(f"  CPU ms per MiB by thread, medians ({mib} MiB):")
        for (s, name), samples in bench.cpu.items():
            if s != size:
                continue
            keys = sorted({k for sample in samples for k in sample})
            med = {k: statistics.median(x.get(k, 0.0) for x in samples) for k in keys}
            shown = [(k, v) for k, v in sorted(med.items(), key=lambda kv: -kv[1]) if v > 0.005]
            total = sum(med.values())
            print(f"    {name}: total {1000 * total / mib:.0f}")
            for k, v in shown[:8]:
                print(f"      {k:50s} {1000 * v / mib:6.0f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        from signal_server import eventloop

        eventloop.run(python_peer(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[64], help="sizes, MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--legs",
        nargs="+",
        default=["to-page", "from-page", "page-page"],
        choices=["to-page", "from-page", "page-page", "message-size"],
    )
    parser.add_argument("--hash", choices=["worker", "main", "off"], default="worker")
    parser.add_argument("--download", choices=["stream", "blob"], default="stream")
    parser.add_argument(
        "--profile", action="store_true", help="CPU profile of each page's main thread per leg"
    )
    parser.add_argument("--py-spy", metavar="DIR", help="sample the CLI peers with py-spy")
    parser.add_argument(
        "--static-dir", help="serve this build of the page (e.g. an unminified one, to profile)"
    )
    args = parser.parse_args()
    if args.py_spy and not (Path(sys.executable).parent / "py-spy").exists():
        parser.error("--py-spy needs py-spy in this virtualenv: .venv/bin/pip install py-spy")
    sys.path.insert(0, str(ROOT))
    import playwright.sync_api as playwright_sync

    global PlaywrightError
    PlaywrightError = playwright_sync.Error

    from tests.cli_helpers import run_signal_server
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    print(f"hash: {args.hash}; download: {args.download}; load average {load_average()}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_signal_server(
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *(["--static-dir", args.static_dir] if args.static_dir else []),
        ) as server,
        playwright_sync.sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        bench = Bench(args, browser, server)
        for mib in args.mib:
            bench.run_size(mib, Path(tmp))
        browser.close()
    report(bench)


if __name__ == "__main__":
    main()
