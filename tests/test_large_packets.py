"""Large SCTP packets between p2pshare peers: negotiated in the sealed SDP, probed before use,
refused on a path that drops IP fragments, and never used with a peer that did not offer them
(one switched off, or a p2pshare from before large packets)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pshare import aiortc_patches, webrtc
from p2pshare.aiortc_patches import constants
from p2pshare.config import IceConfig, Tuning
from p2pshare.webrtc import (
    LARGE_PACKET_ATTRIBUTE,
    PeerLink,
    large_packet_bytes,
    negotiate_large_packets,
    with_large_packets,
)
from tests.cli_helpers import ROOT, Peer, lab_env
from tests.speedlab import (
    dropped_fragments,
    fragments_env,
    lab_transfer,
    link_env,
    link_report,
    one_side_off,
    sh,
    speed_link,
)

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))
LARGE = aiortc_patches.LARGE_PACKET_BYTES
BEFORE_LARGE_PACKETS = "c4432b2"
"""The last commit before large packets: its p2pshare plays the previous protocol version."""
ONE_RECORD_PACKETS = "0873557"
"""The last commit whose large packets were one DTLS record each (16,232 bytes)."""

SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=application 9 DTLS/SCTP 5000\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
)


# -- the attribute ----------------------------------------------------------------------------


def test_the_attribute_goes_to_the_session_level() -> None:
    """Added before the first media section, so it describes the session, not one m= line."""
    sdp = with_large_packets(SDP, 16232)
    session, media = sdp.split("m=application", 1)
    assert f"a={LARGE_PACKET_ATTRIBUTE}:16232\r\n" in session
    assert LARGE_PACKET_ATTRIBUTE not in media
    assert large_packet_bytes(sdp) == 16232


def test_the_attribute_is_read_only_at_session_level_and_only_when_worth_it() -> None:
    """Absent, inside a media section, too small or not a number: the base size."""
    assert large_packet_bytes(SDP) is None
    assert large_packet_bytes(SDP + f"a={LARGE_PACKET_ATTRIBUTE}:16232\r\n") is None
    assert large_packet_bytes(with_large_packets(SDP, 1200)) is None
    assert (
        large_packet_bytes(SDP.replace("t=0 0\r\n", f"t=0 0\r\na={LARGE_PACKET_ATTRIBUTE}:x\r\n"))
        is None
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "agreed"),
    [
        (LARGE, LARGE, LARGE),
        (LARGE, None, None),
        (None, LARGE, None),
        (None, None, None),
        (LARGE, 8000, 8000),
    ],
)
def test_both_sides_must_offer_and_the_smaller_size_wins(
    ours: int | None, theirs: int | None, agreed: int | None
) -> None:
    """Large packets only when both descriptions carry the attribute; then the smaller size."""
    remote = with_large_packets(SDP, theirs) if theirs else SDP
    assert negotiate_large_packets(ours, remote) == agreed


# -- negotiation between two real PeerLinks (in one process, no connection made) --------------


async def _negotiate(
    offerer_on: bool, answerer_on: bool, strip: str = ""
) -> tuple[PeerLink, PeerLink, str]:
    offerer = PeerLink(LOOPBACK, Tuning(large_packets=offerer_on))
    answerer = PeerLink(LOOPBACK, Tuning(large_packets=answerer_on))
    offer = await offerer.create_offer()
    if strip == "offer":
        offer = _strip(offer)
    answer = await answerer.accept_offer(offer)
    if strip == "answer":
        answer = _strip(answer)
    await offerer.accept_answer(answer)
    return offerer, answerer, answer


def _strip(sdp: str) -> str:
    return "".join(line for line in sdp.splitlines(True) if LARGE_PACKET_ATTRIBUTE not in line)


@pytest.mark.parametrize(
    ("offerer_on", "answerer_on", "strip", "agreed"),
    [
        (True, True, "", True),
        (True, False, "", False),
        (False, True, "", False),
        (True, True, "offer", False),  # an offerer that never heard of it (older p2pshare)
        (True, True, "answer", False),  # an answerer that never heard of it
    ],
)
async def test_peer_links_agree_on_large_packets_only_when_both_offer(
    monkeypatch: pytest.MonkeyPatch, offerer_on: bool, answerer_on: bool, strip: str, agreed: bool
) -> None:
    """The answer echoes the attribute only when both want large packets; both links then agree,
    and their data messages become whole multiples of the large chunk."""
    offerer, answerer, answer = await _negotiate(offerer_on, answerer_on, strip)
    try:
        expected = LARGE if agreed else None
        assert offerer.large_packet_bytes == expected
        assert (answerer.large_packet_bytes is not None) == (agreed or strip == "answer")
        if not strip:
            assert (large_packet_bytes(answer) is not None) == agreed
        if agreed:
            chunk = (LARGE - aiortc_patches.SCTP_OVERHEAD_BYTES) // 4 * 4
            limit = 256 * 1024  # what aiortc advertises
            assert offerer.max_message_bytes == limit // chunk * chunk
    finally:
        await offerer.close()
        await answerer.close()


# -- real transfers between processes in namespaces -------------------------------------------

pytest_lab = pytest.mark.timeout(240)


@pytest_lab
def test_large_packets_at_1_percent_loss_per_ip_packet(tmp_path: Path) -> None:
    """1% of IP packets (so ~36% of 64 KB datagrams, fragment by fragment) lost each way: the
    large-packet transfer completes and verifies, and large packets were really used (until
    the lost ones exceed the budget and the sender falls back, which it does at this rate).
    If three 64 KB probes are lost (5% at this rate), 16 KB ones are tried next."""
    with speed_link(tmp_path, 1.0) as (_, host_a, host_b):
        # 64 MiB outlasts the probing: probes lost at this rate, and on this veth a second
        # round as fragments after the segments' (see test_segments_that_arrive_one_by_one...).
        lab_transfer(tmp_path, host_a, host_b, 64)
    sent = link_report(tmp_path, "sender")
    assert sent["agreed_bytes"] == LARGE
    assert sent["large"]["state"] in ("on", "fallback"), sent  # fallback only ever follows "on"


@pytest_lab
def test_a_path_that_drops_fragments_falls_back_to_small_packets(tmp_path: Path) -> None:
    """Without segments (a peer that cannot send them), every IP fragment silently dropped (a
    middlebox): the probes are lost, large packets are never used (refused after three
    probes, or still probing when a short transfer ends), and
    the transfer completes at the base size."""
    with speed_link(tmp_path, drop_fragments=True) as (_, host_a, host_b):
        lab_transfer(tmp_path, host_a, host_b, 4, segments=False)
        assert dropped_fragments(host_a) + dropped_fragments(host_b) > 0
    for name in ("sender", "receiver"):
        report = link_report(tmp_path, name)
        assert report["agreed_bytes"] == LARGE
        assert report["large"]["state"] in ("probing", "refused"), report
        assert report["large"]["probes_sent"] >= 1


@pytest_lab
def test_a_path_that_carries_16_kb_but_not_64_kb_uses_16_kb(tmp_path: Path) -> None:
    """Without segments, datagrams over ~20 KB lost (their fragments beyond that offset
    dropped): the sender's
    64 KB probes are lost, its 16 KB ones come back, and 16 KB packets carry the rest of the
    transfer (long enough to outlast the 0.9 s of lost probes)."""
    with speed_link(tmp_path, max_datagram=20_000) as (_, host_a, host_b):
        lab_transfer(tmp_path, host_a, host_b, 64, segments=False)
    report = link_report(tmp_path, "sender")
    assert report["agreed_bytes"] == LARGE, report
    large = report["large"]
    assert large["state"] == "on" and large["packet_bytes"] == 16_232, report
    assert large["probes_sent"] == constants.PROBE_ATTEMPTS + 1, report
    assert large["large_cut"] > 0 and large["fallbacks"] == 0, report


@pytest_lab
@pytest.mark.parametrize("off", ["sender", "receiver"])
def test_a_peer_with_large_packets_off_interoperates_at_the_base_size(
    tmp_path: Path, off: str
) -> None:
    """P2PSHARE_LARGE_PACKETS=0 on one side: nothing is agreed and the transfer verifies."""
    assert one_side_off(tmp_path, 4, off, "large") == 0
    for name in ("sender", "receiver"):
        report = link_report(tmp_path, name)
        assert report["agreed_bytes"] is None and "large" not in report, report


@pytest_lab
def test_fragments_dropped_mid_transfer_fall_back_without_stalling(tmp_path: Path) -> None:
    """Large packets in use without segments, then the path starts dropping every IP
    fragment: chunks already on the wire are sent again in segments, the rest are cut small,
    and the data verifies."""
    data = os.urandom(160 << 20)  # long enough to still be running when the rule goes in
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    with speed_link(tmp_path) as (_, host_a, host_b):
        sender = Peer(
            ["send", str(src), "--json"],
            cwd=tmp_path,
            env=fragments_env(tmp_path, "sender"),
            netns=host_a,
        )
        event = sender.event("code")
        args = ["receive", event["code"], "--server", event["server"], "--json", "--yes"]
        receiver = Peer(
            [*args, "-o", str(out)],
            cwd=tmp_path,
            env=fragments_env(tmp_path, "receiver"),
            netns=host_b,
        )
        receiver.event("progress", lambda e: e["done"] > 1 << 20)
        for ns in (host_a, host_b):
            sh("iptables", "-t", "raw", "-I", "PREROUTING", "-i", "eth0", "-f", "-j", "DROP", ns=ns)
        assert receiver.wait(200) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
        assert dropped_fragments(host_b) > 0
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    large = link_report(tmp_path, "sender")["large"]
    assert large["fallbacks"] >= 1 and large["large_resent"] > 0, large


def _p2pshare_at(commit: str, tmp_path: Path) -> Path:
    """The p2pshare package of ``commit``, unpacked on its own (for PYTHONPATH)."""
    where = tmp_path / f"p2pshare-{commit}"
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "p2pshare"],
        capture_output=True,
        check=False,
    )
    if archive.returncode:
        pytest.skip(f"commit {commit} not in this clone")
    tar_path = tmp_path / f"{commit}.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(where, filter="data")
    return where


@pytest.fixture
def previous_p2pshare(tmp_path: Path) -> Iterator[Path]:
    """The p2pshare package of the last commit before large packets."""
    yield _p2pshare_at(BEFORE_LARGE_PACKETS, tmp_path)


@pytest_lab
@pytest.mark.parametrize("older", ["sender", "receiver"])
def test_a_p2pshare_with_one_record_packets_interoperates(tmp_path: Path, older: str) -> None:
    """A peer of the version whose large packets were one DTLS record (it offers 16,232
    bytes): both agree on the smaller size, large packets are really used, and the data
    verifies, whichever side is the older one."""
    older_env = link_env(tmp_path, older)
    older_env["PYTHONPATH"] = str(_p2pshare_at(ONE_RECORD_PACKETS, tmp_path))
    newer = "receiver" if older == "sender" else "sender"
    envs = {older: older_env, newer: link_env(tmp_path, newer)}
    with speed_link(tmp_path) as (_, host_a, host_b):
        lab_transfer(tmp_path, host_a, host_b, 24, envs["sender"], None, envs["receiver"])
    for name in ("sender", "receiver"):
        report = link_report(tmp_path, name)
        assert report["agreed_bytes"] == 16_232, report
        assert report["large"]["state"] == "on" and report["large"]["large_cut"] > 0, report


def test_a_large_packet_s_datagram_splits_into_its_dtls_records() -> None:
    """Records are cut at the length in each 13-byte header; a datagram that is one record (or
    a truncated tail) passes through for OpenSSL to judge."""
    from p2pshare.aiortc_patches.large import _dtls_records

    def record(size: int) -> bytes:
        return b"\x17\xfe\xfd" + bytes(8) + size.to_bytes(2, "big") + os.urandom(size)

    records = [record(16_421), record(16_421), record(16_421), record(15_729)]
    assert _dtls_records(b"".join(records)) == records
    assert _dtls_records(records[0]) == [records[0]]
    truncated = b"".join(records)[:-100]
    assert _dtls_records(truncated) == [*records[:3], records[3][:-100]]


@pytest_lab
def test_a_p2pshare_from_before_large_packets_interoperates(
    tmp_path: Path, previous_p2pshare: Path
) -> None:
    """A receiver running the previous protocol version (no attribute in its answer): the new
    sender agrees on nothing, stays at the base size, and the transfer verifies."""
    env = lab_env()
    env["PYTHONPATH"] = str(previous_p2pshare)
    with speed_link(tmp_path) as (_, host_a, host_b):
        lab_transfer(
            tmp_path,
            host_a,
            host_b,
            4,
            link_env(tmp_path, "sender"),
            [sys.executable, "-m", "p2pshare"],
            env,
        )
    report = link_report(tmp_path, "sender")
    assert report["offered"] is True
    assert report["agreed_bytes"] is None and "large" not in report, report


# -- the fallback's building blocks -----------------------------------------------------------


def _queued_message(transport: Any, data: bytes, size: int, stream_seq: int) -> None:
    """Cut ``data`` into chunks of ``size`` on ``transport``'s outbound queue, as _send does."""
    from aiortc import rtcsctptransport as sctp

    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    for index, piece in enumerate(pieces):
        chunk = sctp.DataChunk()
        chunk.flags = (sctp.SCTP_DATA_FIRST_FRAG if index == 0 else 0) | (
            sctp.SCTP_DATA_LAST_FRAG if index == len(pieces) - 1 else 0
        )
        chunk.tsn = transport._local_tsn
        chunk.stream_id, chunk.stream_seq, chunk.protocol = 1, stream_seq, 53
        chunk.user_data = piece
        chunk._expiry, chunk._max_retransmits = None, None
        transport._outbound_queue.append(chunk)
        transport._local_tsn = sctp.tsn_plus_one(transport._local_tsn)


def test_unsent_large_chunks_are_cut_again_with_messages_intact() -> None:
    """A fall-back cuts queued chunks to the base size: TSNs stay consecutive from the first
    queued one, each message keeps one FIRST and one LAST fragment, and its bytes are equal."""
    from collections import deque
    from types import SimpleNamespace

    from aiortc import rtcsctptransport as sctp

    transport: Any = SimpleNamespace(_outbound_queue=deque(), _local_tsn=2**32 - 3)
    messages = [os.urandom(64_816), os.urandom(100), os.urandom(20_000)]
    for seq, message in enumerate(messages):
        _queued_message(transport, message, 16_204, seq)
    first_tsn = transport._outbound_queue[0].tsn
    assert aiortc_patches.rechunk_unsent(transport, 1160) == 6  # 4 + 0 + 2 large chunks cut
    queue = list(transport._outbound_queue)
    assert all(len(c.user_data) <= 1160 for c in queue)
    assert [c.tsn for c in queue] == [(first_tsn + i) % 2**32 for i in range(len(queue))]
    assert transport._local_tsn == (first_tsn + len(queue)) % 2**32
    for seq, message in enumerate(messages):
        parts = [c for c in queue if c.stream_seq == seq]
        assert parts[0].flags & sctp.SCTP_DATA_FIRST_FRAG
        assert parts[-1].flags & sctp.SCTP_DATA_LAST_FRAG
        middle_flags = [c.flags for c in parts[1:-1]]
        assert all(
            f & (sctp.SCTP_DATA_FIRST_FRAG | sctp.SCTP_DATA_LAST_FRAG) == 0 for f in middle_flags
        )
        assert b"".join(c.user_data for c in parts) == message
        assert all(c._book_size == len(c.user_data) and c._sent_count == 0 for c in parts)


def test_a_lossy_path_steps_down_to_16_kb_before_the_base_size() -> None:
    """The first fall-back from 64 KB goes to 16 KB, not to the base: large packets stay on,
    queued chunks are cut again at 16,204 bytes, and losses are counted afresh."""
    from collections import deque
    from types import SimpleNamespace

    from p2pshare.aiortc_patches.large import LargePackets, _fall_back

    transport: Any = SimpleNamespace(_outbound_queue=deque(), _local_tsn=1)
    transport._p2p_chunk_bytes = (LARGE - aiortc_patches.SCTP_OVERHEAD_BYTES) // 4 * 4
    message = os.urandom(259_264)
    _queued_message(transport, message, transport._p2p_chunk_bytes, 0)
    large = LargePackets(packet_bytes=LARGE, agreed_bytes=LARGE, state="on")
    large.large_cut, large.large_resent = 60, 4
    _fall_back(transport, large, "4 of 60 large packets lost")
    assert (large.state, large.packet_bytes, large.step_downs, large.fallbacks) == (
        "on",
        16_232,
        1,
        0,
    )
    assert transport._p2p_chunk_bytes == 16_204
    assert [len(c.user_data) for c in transport._outbound_queue] == [16_204] * 16
    assert b"".join(c.user_data for c in transport._outbound_queue) == message
    assert (large.on_cut, large.on_resent) == (60, 4)


def test_a_path_too_lossy_for_16_kb_goes_straight_to_the_base_size() -> None:
    """10 of 40 packets of 44 fragments lost is ~0.65% per IP packet, so ~7% of 16 KB packets
    (11 fragments) would be lost too: the fall-back skips 16 KB and cuts the queue at the
    base size."""
    from collections import deque
    from types import SimpleNamespace

    from p2pshare.aiortc_patches.large import LargePackets, _fall_back

    transport: Any = SimpleNamespace(_outbound_queue=deque(), _local_tsn=1)
    transport._association_state = None
    transport._p2p_chunk_bytes = (LARGE - aiortc_patches.SCTP_OVERHEAD_BYTES) // 4 * 4
    message = os.urandom(259_264)
    _queued_message(transport, message, transport._p2p_chunk_bytes, 0)
    large = LargePackets(packet_bytes=LARGE, agreed_bytes=LARGE, state="on")
    large.large_cut, large.large_resent = 40, 10

    async def fall_back() -> None:
        _fall_back(transport, large, "10 of 40 large packets lost")
        transport._p2p_reprobe.cancel()

    asyncio.run(fall_back())
    assert (large.state, large.step_downs, large.fallbacks) == ("fallback", 0, 1)
    base = constants.BASE_USERDATA_BYTES
    assert transport._p2p_chunk_bytes == base
    assert max(len(c.user_data) for c in transport._outbound_queue) == base
    assert b"".join(c.user_data for c in transport._outbound_queue) == message


@pytest.mark.parametrize(("packet_bytes", "budget"), [(LARGE, 12), (16_232, 48)])
def test_the_loss_budget_counts_the_fragments_left_behind(packet_bytes: int, budget: int) -> None:
    """The receiver's kernel holds the other fragments of each lost datagram for 30 s: the
    budget is 12 lost 64 KB packets (44 fragments each) or 48 lost 16 KB ones (11); a chunk
    resent again (in segments, which leave no fragments) is not counted twice."""
    from collections import deque
    from types import SimpleNamespace

    from aiortc import rtcsctptransport as sctp

    from p2pshare.aiortc_patches.large import LargePackets, _resend

    sent: list[bytes] = []

    async def send_data(data: bytes) -> None:
        sent.append(data)

    user_bytes = packet_bytes - aiortc_patches.SCTP_OVERHEAD_BYTES
    large = LargePackets(packet_bytes=packet_bytes, agreed_bytes=LARGE, state="on")
    large.large_cut = 1_000_000  # far below the 3% ratio: only the budget can trigger
    transport: Any = SimpleNamespace(
        _p2p_large=large,
        _p2p_chunk_bytes=user_bytes,
        _local_port=5000,
        _remote_port=5000,
        _remote_verification_tag=1,
        transport=SimpleNamespace(_send_data=send_data),
        _outbound_queue=deque(),
        _local_tsn=0,
    )

    def chunk(tsn: int) -> Any:
        data = sctp.DataChunk()
        data.tsn, data.user_data = tsn, bytes(user_bytes)
        data._book_size = user_bytes
        return data

    async def lose(chunks: list[Any]) -> None:
        for c in chunks:
            await _resend(transport, c)

    first = chunk(0)
    asyncio.run(lose([first] * 5 + [chunk(tsn) for tsn in range(1, budget - 1)]))
    assert (large.state, len(large.losses)) == ("on", budget - 1)
    segments = len(aiortc_patches.segment_packet(bytes(packet_bytes), 0))
    assert len(sent) == (budget + 3) * constants.RESEND_COPIES * segments

    async def lose_one_more() -> None:
        await _resend(transport, chunk(budget))
        if reprobe := getattr(transport, "_p2p_reprobe", None):
            reprobe.cancel()

    asyncio.run(lose_one_more())
    assert large.step_downs + large.fallbacks == 1


def test_expected_loss_counts_ip_fragments() -> None:
    """Packets of 64 KB are 44 IP fragments, 16 KB ones 11, base-size ones 1; the loss seen
    at one size predicts the loss at another, fragment by fragment."""
    from p2pshare.aiortc_patches.large import expected_loss, ip_fragments

    assert [ip_fragments(n) for n in (LARGE, 16_232, 1_200)] == [44, 11, 1]
    per_fragment = 0.01
    seen = 1 - (1 - per_fragment) ** 44  # 36% of 64 KB packets
    assert abs(expected_loss(16_232, LARGE, round(seen * 10_000), 10_000) - 0.1047) < 0.001
    assert abs(expected_loss(1_200, LARGE, round(seen * 10_000), 10_000) - 0.01) < 0.0002
    assert expected_loss(16_232, LARGE, 0, 100) == 0.0
    assert expected_loss(16_232, LARGE, 5, 0) == 0.0


def test_a_resent_packet_crosses_in_segments_in_any_order() -> None:
    """Segments of a resent large packet reassemble in any order, once; a duplicate (even a
    whole second copy) or a stray segment yields nothing; the receiver keeps a bounded number
    of partial packets."""
    from types import SimpleNamespace

    packet = os.urandom(16_232)
    segments = aiortc_patches.segment_packet(packet, 7)
    assert len(segments) == 15 and all(len(s) <= 1110 for s in segments)
    dtls: Any = SimpleNamespace()
    got = [aiortc_patches.reassemble_segment(dtls, s) for s in reversed(segments)]
    assert got[:-1] == [None] * 14 and got[-1] == packet
    # The second copy of every segment (RESEND_COPIES) delivers nothing more.
    assert [aiortc_patches.reassemble_segment(dtls, s) for s in segments] == [None] * 15
    for packet_id in range(1000):
        aiortc_patches.reassemble_segment(dtls, aiortc_patches.segment_packet(packet, packet_id)[0])
    assert len(dtls._p2p_segments) <= 256


@pytest.mark.parametrize(
    ("local", "remote", "tried"),
    [
        (("host", "10.8.0.1"), ("host", "10.8.0.2"), True),
        (("host", "192.168.1.5"), ("host", "192.168.1.9"), True),
        (("host", "127.0.0.1"), ("host", "127.0.0.1"), True),
        (("host", "fe80::1%eth0"), ("host", "fe80::2"), True),
        (("host", "fd00::1"), ("host", "fd00::2"), True),
        (("host", "81.2.69.142"), ("host", "10.0.0.2"), False),
        (("host", "2a00:1450:4001::1"), ("host", "2a00:1450:4001::2"), False),
        (("host", "8.8.4.4"), ("host", "1.1.1.1"), False),
        (("srflx", "203.0.113.1"), ("host", "10.0.2.2"), False),
        (("prflx", "10.0.1.2"), ("host", "10.0.2.2"), False),
        (("relay", "203.0.113.10"), ("host", "10.0.2.2"), False),
        (("host", "abcd.local"), ("host", "10.0.0.2"), False),
    ],
)
def test_large_packets_are_tried_only_between_lan_host_candidates(
    local: tuple[str, str], remote: tuple[str, str], tried: bool
) -> None:
    """Host to host on private, link-local or loopback addresses; never NAT, TURN or the
    public internet; an mDNS name is not known to be local."""
    assert (webrtc.large_packets_refused_on(*local, *remote) is None) == tried


def test_stock_sctp_offers_no_large_packets() -> None:
    """With P2PSHARE_STOCK_SCTP=1 the SCTP changes are not installed, so the offer must not
    promise large packets (the peer would send records our stock DTLS cannot read)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\n"
            "from p2pshare import aiortc_patches, config, webrtc\n"
            "tuning = config.Tuning.from_env(os.environ)\n"
            "print(aiortc_patches.apply(tuning), webrtc.large_packets_wanted(tuning))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "P2PSHARE_STOCK_SCTP": "1"},
    ).stdout.strip()
    assert out == "True False"
