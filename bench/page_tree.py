"""The page with large trees (issue 31, item 4): does a tree of many small files, sent to the
page by ``p2pshare send DIR`` or from the page (its Folder input) to ``p2pshare receive``,
freeze the tab?

    .venv/bin/python bench/page_tree.py [--files 1000 10000 50000] [--legs to-page from-page]

Trees of 100-byte files, 1,000 per directory. Per run: the wall time (from Accept, or from the
words confirmed, to the CLI peer's exit), the page's longest main-thread stall (the longest
``longtask`` a PerformanceObserver saw, and the largest lateness of a 50 ms ``setTimeout``
ticker: both are injected before the page's own script runs), the page's JS heap (its peak,
sampled by the ticker with ``--enable-precise-memory-info``, and what is left after a garbage
collection at the end, from CDP), and whether the result is whole (the ZIP the page offers read
back with ``zipfile``, every name and byte; the CLI's tree compared file by file). The sending
leg also reports the stall while the page takes the chosen folder and builds its offer (before
the code is shown). Then how each figure grows with the file count: the log-log slope between
sizes (1.0 grows as the work does).

The page takes offers of at most 50,000 entries (web/src/transfer.js): the receiving leg's
largest tree is cut to fit (its directories count as entries), and the table says how many
files were sent. Results: docs/performance.md, "The page with large trees". Every step has a
deadline (bench/page_watchdog.py). Loopback only.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from page_probes import print_profile  # this script's own directory
from page_watchdog import LegFailed, Watchdog, check_exit

ROOT = Path(__file__).resolve().parent.parent
FILE_BYTES = 100
PER_DIR = 1000
PAGE_MAX_ENTRIES = 50_000
"""DEFAULT_MAX_OFFER_ENTRIES of web/src/transfer.js: the largest offer the page takes."""
SETUP_S = 60
PER_FILE_S = 0.05
"""A transfer slower than this per file is treated as hung."""

PROBE = """
(() => {
  const p = { maxTask: 0, taskMs: 0, tasks: 0, maxLag: 0, peakHeap: 0 };
  p.reset = () => Object.assign(p, { maxTask: 0, taskMs: 0, tasks: 0, maxLag: 0, peakHeap: 0 });
  window.__treeProbe = p;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        p.tasks += 1;
        p.taskMs += e.duration;
        p.maxTask = Math.max(p.maxTask, e.duration);
      }
    }).observe({ type: "longtask" });
  } catch {}
  const TICK = 50;
  let last = performance.now();
  const tick = () => {
    const now = performance.now();
    p.maxLag = Math.max(p.maxLag, now - last - TICK);
    p.peakHeap = Math.max(p.peakHeap, performance.memory ? performance.memory.usedJSHeapSize : 0);
    last = now;
    setTimeout(tick, TICK);
  };
  setTimeout(tick, TICK);
})();
"""

PROBE_READ = """() => {
  const p = window.__treeProbe;
  return { maxTask: p.maxTask, taskMs: p.taskMs, tasks: p.tasks, maxLag: p.maxLag,
           peakHeap: p.peakHeap, rows: document.querySelectorAll("li").length };
}"""


def make_tree(root: Path, files: int) -> Path:
    """``root/tree/dNNN/fNNNNNN.bin``: ``files`` files of FILE_BYTES, PER_DIR to a directory."""
    tree = root / f"tree{files}"
    if tree.exists():
        return tree
    for i in range(files):
        folder = tree / f"d{i // PER_DIR:03d}"
        if i % PER_DIR == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.bin").write_bytes(i.to_bytes(4, "big") * (FILE_BYTES // 4))
    return tree


def receivable(files: int) -> int:
    """The most files of such a tree the page takes: entries = files + directories + 1."""
    while files + -(-files // PER_DIR) + 1 > PAGE_MAX_ENTRIES:
        files -= 1
    return files


class TreeBench:
    def __init__(self, browser: Any, server: str, profile: bool = False) -> None:
        self.profile = profile
        self.browser = browser
        self.server = server
        self.dog = Watchdog()
        self.rows: list[dict[str, Any]] = []

    def page(self, leg: str, fragment: str = "") -> Any:
        with self.dog.step(leg, "open a page", SETUP_S):
            context = self.browser.new_context(accept_downloads=True)
            context.add_init_script(PROBE)
            page = context.new_page()
            page.set_default_timeout(SETUP_S * 1000)
            # What the page said when it failed (main.js logs its error): printed on failure.
            page.on("console", lambda m: print(f"  page console: {m.text[:300]}", flush=True))
            page.on("pageerror", lambda e: print(f"  page error: {str(e)[:300]}", flush=True))
            page.goto(self.server.replace("ws://", "http://") + "/" + fragment)
            page.wait_for_function("() => document.readyState === 'complete'")
        return page

    def start_profile(self, page: Any) -> Any:
        """With --profile: sample the page's main thread (CDP) until stop_profile."""
        if not self.profile:
            return None
        cdp = page.context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 500})
        cdp.send("Profiler.start")
        return cdp

    def stop_profile(self, cdp: Any, what: str) -> None:
        if cdp is not None:
            print_profile(what + " (ms)", cdp.send("Profiler.stop")["profile"], 2**20)

    def heap_after_gc(self, page: Any) -> int:
        cdp = page.context.new_cdp_session(page)
        cdp.send("HeapProfiler.collectGarbage")
        used: int = cdp.send("Runtime.getHeapUsage")["usedSize"]
        return used

    def to_page(self, tree: Path, files: int) -> None:
        from tests.test_browser import cli_sender

        leg = f"CLI -> page, {files:,} files"
        deadline = SETUP_S + files * PER_FILE_S
        with self.dog.step(leg, "the CLI sender's code", SETUP_S):
            sender, code = cli_sender(self.server, tree)
        self.dog.children.append(sender.proc)
        page = self.page(leg, "#" + code)
        try:
            with self.dog.step(leg, "the page shows the offer", SETUP_S):
                accept = page.get_by_role("button", name="Accept", exact=True)
                accept.wait_for()
            page.evaluate("() => window.__treeProbe.reset()")
            cdp = self.start_profile(page)
            started = time.perf_counter()
            with self.dog.step(leg, "transfer (the CLI sender exits)", deadline):
                with page.expect_download(timeout=deadline * 1000) as download:
                    accept.click()
                check_exit(sender, deadline)
                page.locator("#message.ok").wait_for(timeout=deadline * 1000)
            wall = time.perf_counter() - started
            self.stop_profile(cdp, leg)
            probe = page.evaluate(PROBE_READ)
            heap = self.heap_after_gc(page)
            with self.dog.step(
                leg, "the download completes and is read back", SETUP_S + files / 1000
            ):
                whole = zip_matches(Path(download.value.path()), tree, files)
        finally:
            sender.kill()
            page.context.close()
        self.note("CLI -> page", files, wall, probe, heap, whole)

    def from_page(self, tree: Path, files: int, out: Path) -> None:
        from tests.test_browser import cli_receiver, click_send, confirm_words

        leg = f"page -> CLI, {files:,} files"
        deadline = SETUP_S + files * PER_FILE_S
        page = self.page(leg)
        receiver = None
        try:
            with self.dog.step(leg, "the page takes the folder and shows a code", deadline):
                page.evaluate("() => window.__treeProbe.reset()")
                page.get_by_label("Choose a folder", exact=True).set_input_files(str(tree))
                page.wait_for_function(
                    "(n) => document.getElementById('chosen').textContent"
                    ".startsWith(n + ' files, ')",
                    arg=files,
                    timeout=deadline * 1000,
                )
                choose = page.evaluate(PROBE_READ)
                page.evaluate("() => window.__treeProbe.reset()")
                code = click_send(page)
                prepare = page.evaluate(PROBE_READ)
                receiver = cli_receiver(self.server, code, out, "--max-entries", "1000000")
            self.dog.children.append(receiver.proc)
            with self.dog.step(leg, "the words", SETUP_S):
                page.evaluate("() => window.__treeProbe.reset()")
                cdp = self.start_profile(page)
                started = time.perf_counter()
                confirm_words(page)
            with self.dog.step(leg, "transfer (the CLI receiver exits)", deadline):
                check_exit(receiver, deadline)
                page.locator("#message.ok").wait_for(timeout=deadline * 1000)
            wall = time.perf_counter() - started
            self.stop_profile(cdp, leg)
            probe = page.evaluate(PROBE_READ)
            probe["chooseLag"] = choose["maxLag"]
            probe["prepareLag"] = prepare["maxLag"]
            heap = self.heap_after_gc(page)
            whole = tree_matches(out / tree.name, tree, files)
        finally:
            if receiver is not None:
                receiver.kill()
            page.context.close()
        self.note("page -> CLI", files, wall, probe, heap, whole)

    def note(
        self, leg: str, files: int, wall: float, probe: dict[str, Any], heap: int, whole: bool
    ) -> None:
        row = {"leg": leg, "files": files, "wall": wall, "heap": heap, "whole": whole, **probe}
        self.rows.append(row)
        print(fmt(row), flush=True)


def zip_matches(path: Path, tree: Path, files: int) -> bool:
    """The page's ZIP holds every file of ``tree`` (and its folders), byte for byte."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = [n for n in names if not n.endswith("/")]
        if len(data) != files:
            print(f"  the ZIP has {len(data)} files, expected {files}")
            return False
        for name in data:
            if archive.read(name) != (tree.parent / name).read_bytes():
                print(f"  {name} differs")
                return False
    return True


def tree_matches(got: Path, tree: Path, files: int) -> bool:
    """The CLI received every file of ``tree``, byte for byte."""
    count = 0
    for src in tree.rglob("*.bin"):
        count += 1
        if (got / src.relative_to(tree)).read_bytes() != src.read_bytes():
            print(f"  {src.relative_to(tree)} differs")
            return False
    return count == files


def fmt(row: dict[str, Any]) -> str:
    prepare = ""
    if "prepareLag" in row:
        prepare = (
            f"; stall while the folder is chosen {row['chooseLag']:.0f} ms, "
            f"from Send to the code shown {row['prepareLag']:.0f} ms"
        )
    return (
        f"{row['leg']:12s} {row['files']:7,d} files  {row['wall']:7.1f} s "
        f"{row['files'] / row['wall']:7.0f} files/s  longest task {row['maxTask']:6.0f} ms "
        f"({row['tasks']} long tasks, {row['taskMs']:.0f} ms)  timer lag {row['maxLag']:6.0f} ms  "
        f"heap peak {row['peakHeap'] / 2**20:6.1f} MiB, after GC {row['heap'] / 2**20:5.1f} MiB  "
        f"list rows {row['rows']}  {'whole' if row['whole'] else 'BROKEN'}{prepare}"
    )


def slope(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    x0, x1, y0, y1 = a["files"], b["files"], a[key], b[key]
    if min(x0, x1, y0, y1) <= 0 or x0 == x1:
        return "  -- "
    return f"{math.log(y1 / y0) / math.log(x1 / x0):5.2f}"


def report(rows: list[dict[str, Any]]) -> None:
    print(
        "\nleg           files    wall s  longest task ms  timer lag ms  heap peak MiB  "
        "heap after GC MiB  rows  result"
    )
    for r in rows:
        print(
            f"{r['leg']:12s} {r['files']:7,d} {r['wall']:8.1f} {r['maxTask']:12.0f} "
            f"{r['maxLag']:13.0f} {r['peakHeap'] / 2**20:14.1f} {r['heap'] / 2**20:14.1f} "
            f"{r['rows']:7d}  {'whole' if r['whole'] else 'BROKEN'}"
        )
    print("\nhow each grows with the file count (log-log slope between sizes; 1.0 = linear):")
    for leg in dict.fromkeys(r["leg"] for r in rows):
        mine = sorted((r for r in rows if r["leg"] == leg), key=lambda r: r["files"])
        for a, b in itertools.pairwise(mine):
            print(
                f"  {leg:12s} {a['files']:,} -> {b['files']:,}: wall {slope(a, b, 'wall')}, "
                f"longest task {slope(a, b, 'maxTask')}, timer lag {slope(a, b, 'maxLag')}, "
                f"heap peak {slope(a, b, 'peakHeap')}, heap after GC {slope(a, b, 'heap')}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument(
        "--legs", nargs="+", default=["to-page", "from-page"], choices=["to-page", "from-page"]
    )
    parser.add_argument("--static-dir", help="serve this build of the page")
    parser.add_argument(
        "--profile", action="store_true", help="where each page's main thread spent the transfer"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import playwright.sync_api as playwright_sync

    from tests.cli_helpers import run_signal_server
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    extra = ["--static-dir", args.static_dir] if args.static_dir else []
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_signal_server("--host", "127.0.0.1", "--port", "0", *extra) as server,
        playwright_sync.sync_playwright() as p,
    ):
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"]
        )
        bench = TreeBench(browser, server, args.profile)
        for files in args.files:
            for leg in args.legs:
                out = Path(tmp) / f"out-{files}-{leg}"
                out.mkdir()
                try:
                    if leg == "to-page":
                        n = receivable(files)
                        bench.to_page(make_tree(Path(tmp), n), n)
                    else:
                        bench.from_page(make_tree(Path(tmp), files), files, out)
                except (AssertionError, LegFailed, playwright_sync.Error) as exc:
                    print(f"FAILED {leg} {files:,} files: {str(exc)[:300]}", flush=True)
        rows = bench.rows
        browser.close()
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    report(rows)


if __name__ == "__main__":
    main()
