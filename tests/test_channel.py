"""The real Sender and Receiver over the in-memory channel (p2pshare/channel.py): a whole
transfer, a peer that freezes or closes, a slow consumer held to its credit, an abort mid-file
and its resume, and a channel that loses or reorders messages. No network."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from p2pshare import messages as m
from p2pshare.channel import Channel, MemoryChannel, memory_channel_pair
from p2pshare.config import MIN_WINDOW_BYTES, Settings
from p2pshare.errors import IntegrityError, P2PShareError, PeerLostError, ProtocolError
from p2pshare.events import Progress, SessionEvent, TransferResult
from p2pshare.partials import RECORD_SUFFIX, TEMP_SUFFIX
from p2pshare.receiver import Receiver
from p2pshare.sender import Sender
from p2pshare.sources import collect
from p2pshare.wire import telling_peer

MIB = 1024 * 1024


def settings(out: Path, **kw: Any) -> Settings:
    return Settings(output=out, **kw)


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def run_pair(
    sender_end: Channel,
    receiver_end: Channel,
    src: list[Path],
    out: Path,
    *,
    sender_settings: Settings | None = None,
    receiver_settings: Settings | None = None,
    on_receiver_event: Callable[[SessionEvent], None] = lambda event: None,
    during: Callable[[asyncio.Task[TransferResult]], Awaitable[None]] | None = None,
) -> tuple[TransferResult | BaseException, TransferResult | BaseException]:
    """Run a Sender and a Receiver over the two ends, each inside ``telling_peer`` as the
    session runs them; each end is closed when its side is done (as the session closes its
    PeerLink). Returns what each side returned or raised."""
    sources = collect(src)

    async def send() -> TransferResult:
        try:
            async with telling_peer(sender_end):
                return await Sender(
                    sender_end, sources, sender_settings or settings(out), lambda e: None
                ).run()
        finally:
            assert isinstance(sender_end, MemoryChannel)
            sender_end.close()

    async def receive() -> TransferResult:
        try:
            async with telling_peer(receiver_end):
                return await Receiver(
                    receiver_end, receiver_settings or settings(out), on_receiver_event, None
                ).run()
        finally:
            assert isinstance(receiver_end, MemoryChannel)
            receiver_end.close()

    sending = asyncio.ensure_future(send())
    receiving = asyncio.ensure_future(receive())
    if during is not None:
        await during(sending)
    sent, received = await asyncio.gather(sending, receiving, return_exceptions=True)
    return sent, received


def credit_trace(sender_end: MemoryChannel, receiver_end: MemoryChannel) -> list[tuple[str, int]]:
    """Data bytes sent and credit granted, in the order they were sent."""
    order: list[tuple[str, int]] = []
    sender_end.on_send = lambda frame: order.append(("data", _data_bytes(frame)))
    receiver_end.on_send = lambda frame: order.append(("credit", _credit_bytes(frame)))
    return order


def _data_bytes(frame: bytes) -> int:
    message = m.decode(frame)
    if isinstance(message, m.DataZ):
        return message.raw_len  # credit counts what the data is, not its compressed size
    return len(message.payload) if isinstance(message, m.Data | m.DataEnd) else 0


def _credit_bytes(frame: bytes) -> int:
    message = m.decode(frame)
    if isinstance(message, m.Accept):
        return message.window
    return message.bytes if isinstance(message, m.Credit) else 0


async def test_a_whole_tree_arrives_verified_over_memory(tmp_path: Path) -> None:
    """Files (one empty, one over a MiB), a nested and an empty directory arrive byte for
    byte, and both sides report the same bytes and file count."""
    src = tmp_path / "src" / "tree"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    (src / "a.txt").write_bytes(b"hello\n")
    (src / "empty").write_bytes(b"")
    (src / "sub" / "deeper" / "big.bin").write_bytes(os.urandom(3 * MIB + 17))
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair()
    sent, received = await run_pair(a, b, [src], out)
    assert isinstance(sent, TransferResult) and isinstance(received, TransferResult), (
        sent,
        received,
    )
    assert tree(out / "tree") == tree(src)
    assert (out / "tree" / "empty-dir").is_dir()
    assert sent.bytes == received.bytes == 3 * MIB + 17 + 6
    assert sent.files == received.files == 3


async def test_a_peer_that_freezes_is_given_up_on(tmp_path: Path) -> None:
    """A sender that stops sending anything (no data, no pings, no close) mid-transfer: the
    receiver fails with PeerLostError after its peer timeout, naming the silence."""
    (tmp_path / "big.bin").write_bytes(os.urandom(8 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair()
    quick = settings(out, ping_interval_s=0.05, peer_timeout_s=0.3)
    frozen = asyncio.Event()

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, Progress) and event.done > 0 and not frozen.is_set():
            a.silent = True  # from here on the sender's messages vanish
            frozen.set()

    sent, received = await run_pair(
        a,
        b,
        [tmp_path / "big.bin"],
        out,
        sender_settings=quick,
        receiver_settings=quick,
        on_receiver_event=on_event,
    )
    assert frozen.is_set()
    assert isinstance(received, PeerLostError), received
    assert "stopped answering" in str(received)
    assert isinstance(sent, P2PShareError), sent
    assert not (out / "big.bin").exists()


async def test_a_closed_channel_is_a_lost_peer(tmp_path: Path) -> None:
    """The channel closing under a transfer ends both sides with PeerLostError."""
    (tmp_path / "big.bin").write_bytes(os.urandom(4 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair()

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, Progress) and event.done > 0:
            b.close()

    sent, received = await run_pair(a, b, [tmp_path / "big.bin"], out, on_receiver_event=on_event)
    assert isinstance(received, PeerLostError), received
    assert isinstance(sent, PeerLostError), sent
    assert not (out / "big.bin").exists()


async def test_a_slow_consumer_is_sent_no_more_than_its_credit(tmp_path: Path) -> None:
    """With the smallest window and a file eight times its size, the sender never has more
    data out than the credit the receiver granted before it (so the receiver never holds
    more than its window in memory), and it did have to wait for credit."""
    data = os.urandom(8 * MIN_WINDOW_BYTES)
    (tmp_path / "f.bin").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair()
    order = credit_trace(a, b)
    small = settings(out, window_bytes=MIN_WINDOW_BYTES)
    _, received = await run_pair(a, b, [tmp_path / "f.bin"], out, receiver_settings=small)
    assert isinstance(received, TransferResult), received
    assert (out / "f.bin").read_bytes() == data
    granted = out_data = 0
    closest = MIN_WINDOW_BYTES
    for kind, nbytes in order:
        if kind == "credit":
            granted += nbytes
        else:
            out_data += nbytes
            assert out_data <= granted, (out_data, granted)
            closest = min(closest, granted - out_data)
    assert granted < len(data) + MIN_WINDOW_BYTES  # credit came back in steps, not all at once
    assert closest < a.max_message_bytes  # the credit, not the sender, set the pace


async def test_an_abort_mid_file_keeps_the_partial_and_a_resend_resumes(tmp_path: Path) -> None:
    """The sender cancelled mid-file: the receiver reports the peer's cancel, keeps the partial
    file and its record (not the final name); sending again over a new channel resumes from
    it and the file arrives whole."""
    data = os.urandom(16 * MIB)
    (tmp_path / "big.bin").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    halfway = asyncio.Event()

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, Progress) and event.done >= 4 * MIB:
            halfway.set()

    async def cancel_halfway(sending: asyncio.Task[TransferResult]) -> None:
        await halfway.wait()
        sending.cancel()

    a, b = memory_channel_pair()
    # The smallest window keeps the sender within 1 MiB of what was written: with the whole
    # file in credit, a fast writer could finish it before the cancel ran.
    sent, received = await run_pair(
        a,
        b,
        [tmp_path / "big.bin"],
        out,
        receiver_settings=settings(out, window_bytes=MIN_WINDOW_BYTES),
        on_receiver_event=on_event,
        during=cancel_halfway,
    )
    assert isinstance(sent, asyncio.CancelledError), sent
    assert isinstance(received, P2PShareError) and received.remote, received
    assert "cancelled" in str(received)  # the Abort the sender's telling_peer sent
    left = sorted(p.name for p in out.iterdir())
    assert not (out / "big.bin").exists()
    assert [n for n in left if n.endswith(TEMP_SUFFIX)] and [
        n for n in left if n.endswith(RECORD_SUFFIX)
    ], left

    a, b = memory_channel_pair()
    sent, received = await run_pair(a, b, [tmp_path / "big.bin"], out)
    assert isinstance(sent, TransferResult) and isinstance(received, TransferResult)
    assert (out / "big.bin").read_bytes() == data
    assert received.bytes == len(data) and received.sent < len(data)  # resumed
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]


@pytest.mark.parametrize(("loss", "reorder"), [(0.1, 0.0), (0.0, 0.1)])
async def test_a_channel_that_loses_or_reorders_messages_is_noticed(
    tmp_path: Path, loss: float, reorder: float
) -> None:
    """Over a channel that breaks its promise (messages lost, or out of order), the receiver
    refuses the data (wrong size or hash), tells the sender, and puts no file in place."""
    (tmp_path / "big.bin").write_bytes(os.urandom(4 * MIB))
    out = tmp_path / "out"
    out.mkdir()
    a, b = memory_channel_pair(loss=loss, reorder=reorder, seed=7)
    # Only the sender's messages: a lost Accept or Credit would leave the sender waiting for
    # what never comes (a lost Offer, the receiver); the seed keeps the Offer through.
    b.loss = b.reorder = 0.0
    quick = settings(out, ping_interval_s=0.05, peer_timeout_s=0.5)
    sent, received = await run_pair(
        a, b, [tmp_path / "big.bin"], out, sender_settings=quick, receiver_settings=quick
    )
    assert isinstance(received, IntegrityError | ProtocolError), received
    assert isinstance(sent, P2PShareError) and sent.remote, sent  # told why
    assert not (out / "big.bin").exists()
