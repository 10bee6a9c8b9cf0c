"""A peer's session description is checked when it arrives: malformed ones fail at once with a
protocol error (exit 10), not after the connect deadline as 'no network path' (exit 8)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from p2pshare.config import IceConfig
from p2pshare.errors import ProtocolError
from p2pshare.webrtc import PREFERRED_MESSAGE_BYTES, PeerLink, check_remote_sdp

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))


async def _real_offer() -> str:
    link = PeerLink(LOOPBACK)
    try:
        return await link.create_offer()
    finally:
        await link.close()


async def test_a_real_offer_passes_and_sets_the_message_size() -> None:
    """aiortc's own offer (max-message-size 65536) is accepted as is."""
    sdp = await _real_offer()
    assert check_remote_sdp(sdp, "offer") == min(65536, PREFERRED_MESSAGE_BYTES)
    bigger = re.sub(r"a=max-message-size:\d+", "a=max-message-size:262144", sdp)
    assert check_remote_sdp(bigger, "offer") == PREFERRED_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.replace("m=application ", "m=audio "), "no m=application"),
        (lambda s: re.sub(r"a=fingerprint:.*\r\n", "", s), "no a=fingerprint"),
        (lambda s: re.sub(r"a=ice-ufrag:.*\r\n", "", s), "no a=ice-ufrag"),
        (lambda s: re.sub(r"a=max-message-size:\d+", "a=max-message-size:1", s), "only 1 bytes"),
        (lambda s: "garbage", "no m=application"),
        (lambda s: s + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", r"asks for media \(video\)"),
        (
            lambda s: (
                s.replace("m=application ", "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nm=application ")
                + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
            ),
            r"asks for media \(audio, video\)",
        ),
    ],
)
async def test_malformed_descriptions_are_refused_at_once(
    change: Callable[[str], str], reason: str
) -> None:
    """Each defect is named by accept_offer itself, before any connection attempt."""
    sdp = change(await _real_offer())
    link = PeerLink(LOOPBACK)
    try:
        with pytest.raises(ProtocolError, match=reason):
            await link.accept_offer(sdp)
        assert link.pc.iceGatheringState == "new"  # nothing was started
    finally:
        await link.close()


async def test_what_aiortc_cannot_parse_is_a_protocol_error() -> None:
    """A description with the required lines but a broken body is refused, not a crash."""
    sdp = "v=0\r\nm=application x\r\na=fingerprint:x\r\na=ice-ufrag:\r\na=ice-pwd:\r\n"
    link = PeerLink(LOOPBACK)
    try:
        with pytest.raises(ProtocolError, match="unusable offer"):
            await link.accept_offer(sdp)
    finally:
        await link.close()
