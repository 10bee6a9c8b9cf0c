"""A cable between two namespaces for the packet-size tests, with loss that hits each IP
packet on the wire (each fragment or UDP segment of a large datagram on its own) and, optionally, a
middlebox-like rule that silently drops every IP fragment.

The rules sit in the ``raw`` table's PREROUTING chain, which sees fragments before the kernel
reassembles them (the INPUT chain only sees whole datagrams: loss there would count a 16 KB
datagram of 11 fragments as one packet, which flatters large packets). Namespaces are named
``spd<pid>a`` / ``spd<pid>b``. Host A is 10.8.0.1, host B 10.8.0.2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.natlab import Lab, _check_prerequisites, sh

__all__ = ["dropped_fragments", "sh", "speed_link"]


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
