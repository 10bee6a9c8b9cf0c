"""A cable between two namespaces for the packet-size tests, with loss that hits each IP
packet on the wire (each fragment or UDP segment of a large datagram on its own) and, optionally, a
middlebox-like rule that silently drops every IP fragment.

The rules sit in the ``raw`` table's PREROUTING chain, which sees fragments before the kernel
reassembles them (the INPUT chain only sees whole datagrams: loss there would count a 16 KB
datagram of 11 fragments as one packet, which flatters large packets). Namespaces are named
``spd<pid>a`` / ``spd<pid>b``. Host A is 10.8.0.1, host B 10.8.0.2.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from p2pshare.config import ENV_LARGE_PACKETS, ENV_LINK_REPORT, ENV_UDP_SEGMENTS
from tests.cli_helpers import Peer, lab_env
from tests.natlab import Lab, _check_prerequisites, sh

__all__ = [
    "dropped_fragments",
    "fragments_env",
    "lab_transfer",
    "link_env",
    "link_report",
    "one_side_off",
    "sh",
    "snmp",
    "speed_link",
]


@contextmanager
def speed_link(
    workdir: Path,
    loss_pct: float = 0.0,
    *,
    drop_fragments: bool = False,
    max_datagram: int | None = None,
    rate_mbit: int | None = None,
    udp_offload: bool = False,
) -> Iterator[tuple[Lab, str, str]]:
    """Two hosts on one veth pair (MTU 1,500); ``loss_pct`` % of the IP packets arriving at
    each end are dropped; with ``drop_fragments`` every fragmented datagram is lost; with
    ``max_datagram`` every IP datagram larger than about that many bytes (its fragments
    beyond that offset are dropped); with ``rate_mbit`` each end sends at most that many
    megabits per second (a token bucket, as a LAN's link would).

    UDP segmentation offload is off on both ends and GRO on, as on a network card without
    USO: a UDP GSO send leaves as one IP packet per segment, so loss and the iptables rules
    see each one. (This kernel's veth GRO does not merge those packets again for a UDP_GRO
    socket, as a card's GRO would: p2pshare's probe finds that and sends IP fragments.) A
    veth would otherwise carry the whole GSO buffer as one packet to the other namespace, as
    a card with USO and GRO would hand it over; ``udp_offload`` keeps that."""
    _check_prerequisites()
    lab = Lab(prefix=f"spd{os.getpid() % 100000}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        host_a, host_b = lab.add_ns("a"), lab.add_ns("b")
        lab.veth("eth0", host_a, "eth0", host_b)
        for index, ns in ((1, host_a), (2, host_b)):
            sh("ip", "addr", "add", f"10.8.0.{index}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            if not udp_offload:
                sh("ethtool", "-K", "eth0", "tx-udp-segmentation", "off", "gro", "on", ns=ns)
            if rate_mbit is not None:
                # Burst: what the link sends in 4 ms, at least 64 KB (one large datagram).
                burst = max(rate_mbit * 1000 // 8 * 4, 64 * 1024)
                sh(
                    *("tc", "qdisc", "add", "dev", "eth0", "root", "tbf"),
                    *("rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "20ms"),
                    ns=ns,
                )
            if drop_fragments:
                # Non-first fragments; the first fragment alone can never be reassembled.
                sh(
                    *("iptables", "-t", "raw", "-A", "PREROUTING", "-i", "eth0"),
                    *("-f", "-j", "DROP"),
                    ns=ns,
                )
            if max_datagram is not None:
                # The fragment offset (8-byte units) is the low 13 bits of header bytes 6-7.
                match = f"4&0x1FFF={max_datagram // 8}:0x1FFF"
                sh(
                    *("iptables", "-t", "raw", "-A", "PREROUTING", "-i", "eth0"),
                    *("-m", "u32", "--u32", match, "-j", "DROP"),
                    ns=ns,
                )
            if loss_pct:
                sh(
                    "iptables",
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    f"{loss_pct / 100:.4f}",
                    "-j",
                    "DROP",
                    ns=ns,
                )
        yield lab, host_a, host_b


def dropped_fragments(ns: str) -> int:
    """How many fragments the fragment rule in ``ns`` dropped so far."""
    out = sh("iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n", ns=ns).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if "-f" in line.split())


# -- transfers over the cable, and what they report ---------------------------------------


def link_env(
    tmp_path: Path, name: str, large: bool = True, segments: bool = True
) -> dict[str, str]:
    """A lab peer's environment: its link report in ``tmp_path``/``name``.jsonl, and large
    packets or segments switched off when asked."""
    env = lab_env()
    env[ENV_LINK_REPORT] = str(tmp_path / f"{name}.jsonl")
    if not large:
        env[ENV_LARGE_PACKETS] = "0"
    if not segments:  # a large packet's datagram in IP fragments, as before segments
        env[ENV_UDP_SEGMENTS] = "0"
    return env


def fragments_env(tmp_path: Path, name: str) -> dict[str, str]:
    """As :func:`link_env`, with large datagrams as IP fragments (no segments)."""
    return link_env(tmp_path, name, segments=False)


def link_report(tmp_path: Path, name: str) -> dict[str, Any]:
    """The one connection report the peer ``name`` wrote."""
    lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
    assert len(lines) == 1
    report: dict[str, Any] = json.loads(lines[0])
    return report


def lab_transfer(
    tmp_path: Path,
    host_a: str,
    host_b: str,
    mib: int,
    sender_env: dict[str, str] | None = None,
    receiver_cmd: list[str] | None = None,
    receiver_env: dict[str, str] | None = None,
    *,
    segments: bool = True,
) -> None:
    """Send ``mib`` MiB of random data from ``host_a`` to ``host_b`` through the real CLI (or
    ``receiver_cmd``) and check it arrived intact. Each side reports to ``link_env``'s file
    unless given its own environment; ``segments=False`` keeps both to IP fragments."""
    sender_env = sender_env or link_env(tmp_path, "sender", segments=segments)
    if receiver_cmd is None:
        receiver_env = receiver_env or link_env(tmp_path, "receiver", segments=segments)
    data = os.urandom(mib << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    sender = Peer(["send", str(src), "--json"], cwd=tmp_path, env=sender_env, netns=host_a)
    event = sender.event("code")
    args = [
        "receive",
        event["code"],
        "--server",
        event["server"],
        "--json",
        "--yes",
        "-o",
        str(out),
    ]
    if receiver_cmd is None:
        receiver = Peer(args, cwd=tmp_path, env=receiver_env, netns=host_b)
        assert receiver.wait(200) == 0, receiver.stderr
    else:
        done = subprocess.run(
            ["ip", "netns", "exec", host_b, *receiver_cmd, *args],
            cwd=tmp_path,
            env=receiver_env,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def one_side_off(tmp_path: Path, mib: int, off: str, switch: str) -> int:
    """A transfer with ``switch`` (an ``_env`` flag) off on the ``off`` side; returns how many
    IP fragments the sender's namespace made."""
    with speed_link(tmp_path) as (_, host_a, host_b):
        lab_transfer(
            tmp_path,
            host_a,
            host_b,
            mib,
            link_env(tmp_path, "sender", **{switch: off != "sender"}),
            None,
            link_env(tmp_path, "receiver", **{switch: off != "receiver"}),
        )
        return snmp(host_a, "Ip", "FragCreates")


def snmp(ns: str, group: str, name: str) -> int:
    """A counter of the namespace's /proc/net/snmp (each namespace counts its own)."""
    lines = [
        line.split()
        for line in sh("cat", "/proc/net/snmp", ns=ns).stdout.splitlines()
        if line.startswith(f"{group}:")
    ]
    return int(lines[1][lines[0].index(name)])
