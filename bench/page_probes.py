"""Where a leg of ``bench/page_speed.py`` spends its time: CPU seconds of every thread under
the benchmark (from /proc, Chromium's processes by thread name), the machine's UDP counters,
the self time of a page's main thread from a CDP profile, and a py-spy sample of a CLI peer.
Linux only; read-only."""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path
from typing import Any

# -- CPU per thread, from /proc ---------------------------------------------------------------

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _process_kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv)
    if "chromium" in text:
        match = re.search(r"--type=(\S+)", text)
        kind = match.group(1) if match else "browser"
        if kind == "utility" and "network" in text:
            kind = "network"
        return f"chromium {kind}"
    if "page_speed.py peer" in text:
        return "python peer"
    if "p2pshare" in text and (" send " in text or " receive " in text):
        return "CLI " + ("send" if " send " in text else "receive")
    return Path(argv[0].decode(errors="replace")).name


def cpu_by_thread() -> dict[str, float]:
    """CPU seconds so far of every thread under this process, keyed "process: thread"."""
    totals: dict[str, float] = {}
    for pid in _descendants(os.getpid()):
        kind = _process_kind(pid)
        if kind in ("node", "?"):
            continue  # the Playwright driver
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            name = re.sub(r"[0-9]+$", "", comm).strip(" -_:") or comm
            if name in ("chromium", "python", "python3"):
                name = "main thread"
            key = f"{kind}: {name}"
            totals[key] = totals.get(key, 0.0) + (int(fields[11]) + int(fields[12])) * TICK_S
    return totals


REAPED = "CLI peer (whole process, at its exit)"


def reaped_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def udp_counters() -> dict[str, int]:
    """The machine's UDP counters (/proc/net/snmp): drops at a full receive buffer show here."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    return {k: int(v) for k, v in zip(names[1:], values[1:], strict=True)}


class CpuMeter:
    """CPU seconds per thread group spent between start() and stop()."""

    def __init__(self) -> None:
        self.before: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.udp_before: dict[str, int] = {}
        self.udp: dict[str, int] = {}

    def start(self) -> None:
        self.before = cpu_by_thread()
        self.before[REAPED] = reaped_cpu_s()
        self.udp_before = udp_counters()

    def stop(self) -> None:
        after = cpu_by_thread()
        # A CLI peer has exited by now: its CPU is in this process's children's usage.
        after[REAPED] = reaped_cpu_s()
        self.spent = {k: v - self.before.get(k, 0.0) for k, v in after.items()}
        now = udp_counters()
        self.udp = {k: now[k] - self.udp_before.get(k, 0) for k in now}


def print_profile(what: str, profile: dict[str, Any], total: int) -> None:
    """Self time of a page's main thread by function, in ms per MiB (top 12, idle left out)."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    counts: dict[int, int] = {}
    for sample in profile["samples"]:
        counts[sample] = counts.get(sample, 0) + 1
    ms_per_sample = (
        (profile["endTime"] - profile["startTime"]) / 1000 / max(1, len(profile["samples"]))
    )
    by_name: dict[str, float] = {}
    for node_id, n in counts.items():
        frame = nodes[node_id]["callFrame"]
        url = frame["url"].rsplit("/", 1)[-1]
        name = f"{frame['functionName'] or '(anonymous)'} {url}:{frame['lineNumber'] + 1}"
        if not url:
            name = frame["functionName"]
        by_name[name] = by_name.get(name, 0.0) + n * ms_per_sample
    mib = total / 2**20
    idle = by_name.pop("(idle)", 0.0)
    busy = sum(by_name.values())
    print(f"  main thread of {what}: busy {busy / mib:.0f} ms/MiB, idle {idle / mib:.0f} ms/MiB")
    for name, ms in sorted(by_name.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {ms / mib:7.1f}  {name}")


SPY_ARGS = ("--nonblocking", "-r", "200", "-f", "raw", "-o")


def print_stacks(path: Path) -> None:
    """Where a py-spy sampled process spent its time: leaf functions, and a few inclusive."""
    leaves: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")") for f in stack.split(";")
        ]
        n = int(count)
        total += n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
    print(f"  py-spy of the CLI peer, {total} samples; leaf functions:")
    for name, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {100 * n / total:5.1f}%  {name}")
    print("  inclusive:")
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:25]:
        print(f"    {100 * n / total:5.1f}%  {name}")
