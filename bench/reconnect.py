"""What a network change costs a transfer (issue 28), through the real CLI and a real
p2pshare-signal, between two network namespaces joined by a veth pair capped at 80 Mbit/s
each way (a token bucket, tests/speedlab.py). Needs root.

    sudo .venv/bin/python bench/reconnect.py                      # 24 and 96 MiB, every case
    sudo .venv/bin/python bench/reconnect.py --mib 96 --cases address --runs 3

Cases, each starting at ~25% of the file (the receiver's progress):
- ``none``: nothing happens (the reference: the same transfer on the same link);
- ``address``: the receiver's address changes for good (10.8.0.2 deleted, 10.8.0.3 added):
  its old path is gone, as when a laptop moves to another network;
- ``outage-udp``: every UDP packet between the hosts dropped by iptables for ``--outage-s``
  (45 s, past the 20 s silence deadline), then restored; the rendezvous (TCP) stays up;
- ``outage``: everything between the hosts dropped for as long (the receiver cannot reach
  the rendezvous server either), then restored.

Per run: both exit codes, the copy verified (SHA-256), the sender's ``sent`` ÷ the file
size, and times from the ``--json`` events as they arrive here (progress lines come at most
every 0.25 s): from the change to each side saying ``reconnecting`` (the silence
deadline: nothing tells a peer sooner that its path is gone), and from the path's return
(for ``address``: the new address) to ``reconnected`` and to data flowing again (the
receiver's first progress beyond what it had before the loss). The product's defaults
throughout (20 s silence deadline, 120 s reconnect budget, large packets).

Writes bench/results/reconnect-TIMESTAMP.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cli_helpers import P2PSHARE, lab_env  # noqa: E402
from tests.speedlab import sh, speed_link  # noqa: E402

MIB = 1 << 20
HOST_A, HOST_B, HOST_B_NEW = "10.8.0.1", "10.8.0.2", "10.8.0.3"
CASES = ("none", "address", "outage-udp", "outage")
AT_FRACTION = 0.25


class Proc:
    """A p2pshare command in a namespace; its ``--json`` lines are read as they come, each
    with the time it arrived (``time.monotonic()``)."""

    def __init__(self, ns: str, args: list[str], cwd: Path, stderr: Path) -> None:
        self.stderr_path = stderr
        self._stderr = open(stderr, "w")  # noqa: SIM115 (closed in finish)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, P2PSHARE, *args],
            cwd=cwd,
            env=lab_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                with self._changed:
                    self.events.append((time.monotonic(), json.loads(line)))
                    self._changed.notify_all()
        with self._changed:
            self.events.append((time.monotonic(), {"event": "<eof>"}))
            self._changed.notify_all()

    def wait_for(self, name: str, where: Any = None, timeout: float = 300) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for _, obj in self.events:
                if obj["event"] == name and (where is None or where(obj)):
                    return obj
            if any(obj["event"] == "<eof>" for _, obj in self.events):
                raise RuntimeError(f"no {name!r} event: {self.stderr_path.read_text()[-500:]}")
            return None

        with self._changed:
            result = self._changed.wait_for(found, timeout)
        if result is None:
            raise RuntimeError(f"no {name!r} event within {timeout:g} s")
        return result

    def finish(self, timeout: float = 300) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        self._stderr.close()
        return code

    def first(self, name: str, after: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        return next(((t, e) for t, e in self.events if e["event"] == name and t >= after), None)

    def last(self, name: str) -> dict[str, Any] | None:
        return next((e for _, e in reversed(self.events) if e["event"] == name), None)


def _server(ns: str, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            *("ip", "netns", "exec", ns, sys.executable, "-m", "signal_server"),
            *("--host", HOST_A, "--port", "0", "--log-level", "warning"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "server.err", "w"),  # noqa: SIM115 (the child holds it)
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on"):
        raise RuntimeError("the rendezvous server did not start")
    return proc, line.split()[-1]


def _cut(host_a: str, host_b: str, case: str, action: str) -> None:
    rule = ["-p", "udp"] if case == "outage-udp" else []
    for ns in (host_a, host_b):
        sh("iptables", action, "INPUT", "-i", "eth0", *rule, "-j", "DROP", ns=ns)


def run_once(
    case: str, src: Path, workdir: Path, rate_mbit: int, outage_s: float
) -> dict[str, Any]:
    """One transfer of ``src`` with ``case`` happening at ~25%; its figures."""
    size = src.stat().st_size
    out = workdir / "out"
    out.mkdir()
    with speed_link(workdir, rate_mbit=rate_mbit) as (_, host_a, host_b):
        server, url = _server(host_a, workdir)
        try:
            sender = Proc(
                host_a,
                ["send", str(src), "--server", url, "--json"],
                src.parent,
                workdir / "sender.err",
            )
            code = sender.wait_for("code")["code"]
            receiver = Proc(
                host_b,
                ["receive", code, "--server", url, "--json", "--yes", "-o", str(out)],
                workdir,
                workdir / "receiver.err",
            )
            mark = int(size * AT_FRACTION)
            receiver.wait_for("progress", where=lambda e: e["done"] >= mark, timeout=120)
            changed = time.monotonic()
            if case == "none":
                back = changed
            elif case == "address":
                sh("ip", "addr", "del", f"{HOST_B}/24", "dev", "eth0", ns=host_b)
                sh("ip", "addr", "add", f"{HOST_B_NEW}/24", "dev", "eth0", ns=host_b)
                back = time.monotonic()
            else:
                _cut(host_a, host_b, case, "-I")
                time.sleep(outage_s)
                _cut(host_a, host_b, case, "-D")
                back = time.monotonic()
            receiver_rc = receiver.finish(outage_s + 300)
            sender_rc = sender.finish(60)
        finally:
            server.terminate()
            server.wait(10)
    copy = out / src.name
    verified = copy.exists() and _sha256(copy) == _sha256(src)
    done = sender.last("done")
    held = max(
        (e["done"] for t, e in receiver.events if e["event"] == "progress" and t < changed),
        default=0,
    )
    again = receiver.first("reconnected")
    flowing = None
    if again is not None:
        flowing = next(
            (
                t
                for t, e in receiver.events
                if e["event"] == "progress" and t >= again[0] and e["done"] > held
            ),
            None,
        )

    progress = [(t, e["done"]) for t, e in receiver.events if e["event"] == "progress"]
    before = [(t, d) for t, d in progress if t < changed and d > 0]
    after = [(t, d) for t, d in progress if flowing is not None and t >= flowing]

    def rate(points: list[tuple[float, int]]) -> float | None:
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        return round((points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]) / 1e6, 1)

    def since(start: float, found: tuple[float, dict[str, Any]] | None) -> float | None:
        return None if found is None else round(found[0] - start, 2)

    return {
        "case": case,
        "mib": size // MIB,
        "sender_rc": sender_rc,
        "receiver_rc": receiver_rc,
        "verified": verified,
        "sent_ratio": round(done["sent"] / size, 3) if done else None,
        "extra_mib": round((done["sent"] - size) / MIB, 2) if done else None,
        "at_loss_mib": round(held / MIB, 1),
        "detect_receiver_s": since(changed, receiver.first("reconnecting")),
        "detect_sender_s": since(changed, sender.first("reconnecting")),
        "back_to_reconnected_s": since(back, again),
        "back_to_data_s": None if flowing is None else round(flowing - back, 2),
        "attempts": again[1]["attempt"] if again else None,
        "total_s": round(done["seconds"], 1) if done else None,
        "mbps_before": rate(before),
        "mbps_after": rate(after),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


COLUMNS = (
    ("case", "case"),
    ("mib", "MiB"),
    ("sender_rc", "sender exit"),
    ("receiver_rc", "receiver exit"),
    ("verified", "verified"),
    ("sent_ratio", "sent ÷ size"),
    ("extra_mib", "sent again (MiB)"),
    ("detect_sender_s", "sender: loss → reconnecting (s)"),
    ("detect_receiver_s", "receiver: loss → reconnecting (s)"),
    ("back_to_reconnected_s", "return → reconnected (s)"),
    ("back_to_data_s", "return → data (s)"),
    ("attempts", "attempts"),
    ("total_s", "transfer (s)"),
    ("mbps_before", "MB/s before"),
    ("mbps_after", "MB/s after"),
)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [
            "yes"
            if row[k] is True
            else "no"
            if row[k] is False
            else "-"
            if row[k] is None
            else str(row[k])
            for k, _ in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", default="24,96", help="file sizes, comma-separated")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate-mbit", type=int, default=80)
    parser.add_argument("--outage-s", type=float, default=45.0)
    args = parser.parse_args()
    cases = args.cases.split(",")
    if unknown := set(cases) - set(CASES):
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="p2p-reconnect-") as tmp:
        base = Path(tmp)
        for mib in (int(m) for m in args.mib.split(",")):
            src = base / f"src{mib}" / "payload.bin"
            src.parent.mkdir()
            with open(src, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(MIB))
            for run in range(args.runs):
                for case in cases:
                    workdir = base / f"{case}-{mib}-{run}"
                    workdir.mkdir()
                    row = run_once(case, src, workdir, args.rate_mbit, args.outage_s)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"rate_mbit": args.rate_mbit, "outage_s": args.outage_s, "at": AT_FRACTION}
    (results / f"reconnect-{stamp}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    text = table(rows)
    (results / f"reconnect-{stamp}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
