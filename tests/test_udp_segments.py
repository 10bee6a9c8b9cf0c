"""A large packet's datagram as UDP segments (GSO on send, GRO on receive) between two Linux
p2pshare peers: put together in any order or merged, bounded against crafted segments, cut and
merged by the real kernel, used where the receiving kernel merges them and given up for IP
fragments where it does not (aiortc_patches/sockets.py, docs/performance.md item 6)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from p2pshare.aiortc_patches import constants
from tests.speedlab import (
    dropped_fragments,
    lab_transfer,
    link_report,
    one_side_off,
    snmp,
    speed_link,
)

pytest_lab = pytest.mark.timeout(240)


# -- segments and reads, without a network ----------------------------------------------------


def _datagram(size: int) -> bytes:
    return b"\x17" + os.urandom(size - 1)


def test_a_datagram_in_segments_comes_back_whole_in_any_order() -> None:
    from p2pshare.aiortc_patches.sockets import DatagramSegments, segment_datagram

    stride = constants.DATAGRAM_SEGMENT_BYTES
    datagram = _datagram(65_000)
    buffer = segment_datagram(datagram, 7)
    assert len(buffer) > len(datagram) and len(buffer) // stride == len(datagram) // (stride - 8)
    # All together (one read, as UDP GRO delivers them), and one by one out of order.
    assert DatagramSegments().add(buffer) == [datagram]
    segments = [buffer[at : at + stride] for at in range(0, len(buffer), stride)]
    apart = DatagramSegments()
    order = list(range(len(segments)))[::-1]
    got = [apart.add(segments[i]) for i in order]
    assert got[:-1] == [[]] * (len(segments) - 1) and got[-1] == [datagram]
    assert apart.received == 1 and not apart.pending
    # One missing: nothing, however many others arrive; a second datagram is unaffected.
    lossy = DatagramSegments()
    assert lossy.add(b"".join(segments[1:])) == []
    other = _datagram(3_000)
    assert lossy.add(segment_datagram(other, 8)) == [other]
    assert lossy.received == 1 and list(lossy.pending) == [7]


def _dtls(size: int, records: int = 1) -> bytes:
    """A datagram of ``records`` DTLS 1.2 records of ``size`` bytes each."""
    return b"".join(
        b"\x17\xfe\xfd" + bytes(8) + (size - 13).to_bytes(2, "big") + os.urandom(size - 13)
        for _ in range(records)
    )


def _stun(size: int) -> bytes:
    return b"\x01\x01" + (size - 20).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + os.urandom(size - 8)


def test_reads_merged_by_udp_gro_split_into_the_peer_s_datagrams() -> None:
    """UDP GRO merges consecutive datagrams of one flow and size (the last may be smaller)
    into one read: each p2pshare datagram says its own length, so they come apart again, and
    segments stay together for DatagramSegments."""
    from p2pshare.aiortc_patches.sockets import (
        DatagramSegments,
        segment_datagram,
        split_gro_read,
    )

    stride = constants.DATAGRAM_SEGMENT_BYTES
    sacks, stun = [_dtls(80) for _ in range(5)], _stun(60)
    assert split_gro_read(b"".join([*sacks, stun])) == [*sacks, stun]
    # The tail of one segmented datagram, a whole one, and a smaller ordinary datagram.
    first, second, plain = _datagram(15 * (stride - 8)), _datagram(6 * (stride - 8)), _dtls(300)
    first_buffer = segment_datagram(first, 1)
    segments = DatagramSegments()
    assert segments.add(first_buffer[: 3 * stride]) == []
    merged = first_buffer[3 * stride :] + segment_datagram(second, 2) + plain
    pieces = split_gro_read(merged)
    assert pieces == [merged[: -len(plain)], plain]
    assert segments.add(pieces[0]) == [first, second]
    # An ordinary datagram of a segment's size, then segments (review finding).
    same_size = _dtls(stride)
    third = _datagram(4 * (stride - 8))
    pieces = split_gro_read(same_size + segment_datagram(third, 3))
    assert pieces[0] == same_size and DatagramSegments().add(pieces[1]) == [third]
    # Never split: one datagram, a large packet's records, a DTLS flight of unequal records,
    # one whose second record holds a segment's marker where a third piece would begin.
    flight = bytearray(_dtls(100) + _dtls(150))
    flight[200] = 0x3E
    for whole in (
        _dtls(1200),
        _dtls(16_421, 3),
        _dtls(300) + _dtls(700) + _dtls(300),
        bytes(flight),
    ):
        assert split_gro_read(whole) == [whole]


def test_crafted_segments_cannot_hoard_memory_or_claim_other_shapes() -> None:
    """Anyone who can reach the port can send segments (the header is not authenticated): what
    is kept stays bounded, counts Linux never sends are ignored, and DTLS judges the rest."""
    from p2pshare.aiortc_patches import sockets

    stride = constants.DATAGRAM_SEGMENT_BYTES
    header = sockets._HEADER
    segments = sockets.DatagramSegments()
    for datagram_id in range(1_000):  # one first segment each of many never-finished datagrams
        segments.add(header.pack(0x3E, 0, 64, datagram_id) + bytes(stride - 8))
    assert len(segments.pending) == sockets._DATAGRAMS_KEPT
    too_many = header.pack(0x3E, 0, sockets.MAX_SEGMENTS + 1, 7) + bytes(stride - 8)
    short_middle = header.pack(0x3E, 0, 2, 8) + bytes(100)
    fresh = sockets.DatagramSegments()
    assert fresh.add(too_many) == [] and fresh.add(short_middle) == [] and not fresh.pending
    # The sender never cuts more than Linux takes in one send: such a datagram goes whole.
    assert sockets.Segmenting().cut(bytes(65_400)) is None
    assert sockets.Segmenting().cut(bytes(65_000)) is not None


@pytest.mark.parametrize("gro", [True, False], ids=["gro", "without-gro"])
def test_the_kernel_cuts_and_merges_segments_as_we_expect(gro: bool) -> None:
    """Real sockets on loopback: one sendmsg with UDP_SEGMENT reaches a socket with UDP_GRO as
    one read, and one without it as one read per segment; both give the datagram back."""
    import socket

    from p2pshare.aiortc_patches.sockets import (
        SOL_UDP,
        UDP_GRO,
        UDP_SEGMENT,
        DatagramSegments,
        segment_datagram,
    )

    stride = constants.DATAGRAM_SEGMENT_BYTES
    datagram = _datagram(65_000)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        if gro:
            receiver.setsockopt(SOL_UDP, UDP_GRO, 1)
        buffer = segment_datagram(datagram, 1)
        ancillary = [(SOL_UDP, UDP_SEGMENT, stride.to_bytes(2, sys.byteorder))]
        assert sender.sendmsg([buffer], ancillary, 0, receiver.getsockname()) == len(buffer)
        segments = DatagramSegments()
        reads, got = 0, list[bytes]()
        while not got:
            got = segments.add(receiver.recv(1 << 17))
            reads += 1
    assert got == [datagram]
    assert reads == (1 if gro else -(-len(buffer) // stride))


# -- real transfers between processes in namespaces -------------------------------------------


@pytest_lab
def test_large_packets_cross_in_segments_where_fragments_are_dropped(tmp_path: Path) -> None:
    """Between two p2pshare peers on Linux a large packet's datagram goes as UDP segments (GSO
    and GRO), never as IP fragments: where the receiving kernel merges them (here the veth
    carries the GSO buffer whole, as a card with segmentation offload and GRO would hand it
    over), a path that drops every fragment carries large packets, the sender's kernel
    fragments nothing, and the large packets came back whole."""
    with speed_link(tmp_path, drop_fragments=True, udp_offload=True) as (_, host_a, host_b):
        lab_transfer(tmp_path, host_a, host_b, 16)
        assert dropped_fragments(host_a) + dropped_fragments(host_b) == 0
        created = snmp(host_a, "Ip", "FragCreates") + snmp(host_b, "Ip", "FragCreates")
        assert created == 0
        overflowed = snmp(host_b, "Udp", "RcvbufErrors") > 0
    sent, received = link_report(tmp_path, "sender"), link_report(tmp_path, "receiver")
    assert sent["large"]["state"] == "on" and sent["large"]["large_cut"] > 0, sent
    assert not sent["large"]["segments_unmerged"], sent
    assert sent["udp_segments"]["on"] and received["udp_segments"]["on"]
    assert sent["udp_segments"]["sent"] >= sent["large"]["large_cut"]
    # Every large datagram came back whole (the receiver's own probe went the other way),
    # unless the receiving socket's buffer overflowed (SCTP resends those).
    if not overflowed:
        assert received["udp_segments"]["received"] == sent["udp_segments"]["sent"]
    assert 0.9 * sent["udp_segments"]["sent"] <= received["udp_segments"]["received"]


@pytest_lab
def test_segments_that_arrive_one_by_one_give_way_to_fragments(tmp_path: Path) -> None:
    """Where the receiving kernel hands each segment over on its own (this veth without
    segmentation offload: one packet per segment, which its GRO does not merge), the probe's
    answer says so, the sender turns segments off and probes again with IP fragments, which
    the receiver's kernel puts together: large packets in use, and the data verifies."""
    with speed_link(tmp_path) as (_, host_a, host_b):
        lab_transfer(tmp_path, host_a, host_b, 16)
        assert snmp(host_a, "Ip", "FragCreates") > 0
    sent = link_report(tmp_path, "sender")
    assert sent["large"]["segments_unmerged"] and sent["large"]["state"] == "on", sent
    assert sent["udp_segments"]["on"] is False and sent["udp_segments"]["sent"] >= 1, sent
    assert sent["large"]["large_cut"] > 0, sent


@pytest_lab
def test_unmerged_segments_are_kept_where_fragments_are_dropped(tmp_path: Path) -> None:
    """Segments arrive one by one (no merging on this veth) and the path drops every IP
    fragment: the fragment probes are lost, so the sender goes back to segments, and large
    packets carry the data (review finding: it used to end refused)."""
    with speed_link(tmp_path, drop_fragments=True) as (_, host_a, host_b):
        # Long enough to outlast the probing: one probe in segments, three lost as fragments.
        lab_transfer(tmp_path, host_a, host_b, 64)
        assert dropped_fragments(host_b) > 0  # the fragment probes
    sent = link_report(tmp_path, "sender")
    assert sent["large"]["state"] == "on" and sent["large"]["segments_forced"], sent
    assert sent["udp_segments"]["on"] and sent["large"]["large_cut"] > 0, sent


@pytest_lab
@pytest.mark.parametrize("off", ["sender", "receiver"])
def test_a_peer_without_segments_gets_large_packets_in_fragments(tmp_path: Path, off: str) -> None:
    """P2PSHARE_UDP_SEGMENTS=0 on one side (as a p2pshare of the previous version, or one
    not on Linux): segments are not agreed, large packets still are, and the data verifies."""
    assert one_side_off(tmp_path, 8, off, "segments") > 0  # IP fragments made
    for name in ("sender", "receiver"):
        report = link_report(tmp_path, name)
        assert report["large"]["state"] == "on", report
        assert report["udp_segments"] == {"on": False, "sent": 0, "received": 0}, report
