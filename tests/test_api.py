"""The Python API, without the CLI: send and receive with a progress callback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import p2pshare
from p2pshare import events
from p2pshare.errors import DeclinedError
from p2pshare.webrtc import IceConfig
from signal_server.server import RunningServer

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))


async def test_send_and_receive_from_python(signal: RunningServer, tmp_path: Path) -> None:
    """Both coroutines complete with matching results; progress reaches the total."""
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    codes: asyncio.Queue[str] = asyncio.Queue()
    progress: list[tuple[int, int | None]] = []

    def on_send_event(event: events.SessionEvent) -> None:
        if isinstance(event, events.CodeReady):
            codes.put_nowait(event.code)

    def on_receive_event(event: events.SessionEvent) -> None:
        if isinstance(event, events.Progress):
            progress.append((event.done, event.total))

    offers: list[events.OfferSummary] = []

    async def confirm(offer: events.OfferSummary) -> bool:
        offers.append(offer)
        return True

    settings = p2pshare.Settings(server=signal.url, ice=LOOPBACK)
    sending = asyncio.create_task(
        p2pshare.send(tmp_path / "in.bin", settings, on_event=on_send_event)
    )
    received = await p2pshare.receive(
        await codes.get(),
        p2pshare.Settings(server=signal.url, ice=LOOPBACK, output=out),
        on_event=on_receive_event,
        confirm=confirm,
    )
    sent = await sending
    assert (out / "in.bin").read_bytes() == data
    assert sent.sha256 == received.sha256 and received.bytes == len(data)
    assert progress[-1] == (len(data), len(data))
    assert offers == [events.OfferSummary(1, 0, len(data), ("in.bin",), out / "in.bin")]


async def test_receiver_declining_reaches_the_sender(signal: RunningServer, tmp_path: Path) -> None:
    """confirm() returning False declines; the sender's send() raises DeclinedError."""
    (tmp_path / "in.bin").write_bytes(b"abc")
    codes: asyncio.Queue[str] = asyncio.Queue()

    def on_event(event: events.SessionEvent) -> None:
        if isinstance(event, events.CodeReady):
            codes.put_nowait(event.code)

    async def refuse(offer: events.OfferSummary) -> bool:
        return False

    settings = p2pshare.Settings(server=signal.url, ice=LOOPBACK, output=tmp_path / "x.bin")
    sending = asyncio.create_task(p2pshare.send(tmp_path / "in.bin", settings, on_event=on_event))
    with pytest.raises(DeclinedError):
        await p2pshare.receive(await codes.get(), settings, confirm=refuse)
    with pytest.raises(DeclinedError, match="declined by the receiver"):
        await sending
    assert not (tmp_path / "x.bin").exists()
