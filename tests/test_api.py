"""The Python API, without the CLI: send and receive with a progress callback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import p2pshare
from p2pshare import events
from p2pshare.codes import Code, generate_words
from p2pshare.errors import DeclinedError
from p2pshare.pairing import pair, rendezvous
from p2pshare.pake import Role
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
    assert sent.digest == received.digest and received.bytes == len(data)
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


async def test_pair_opens_a_data_channel_between_two_clients(signal: RunningServer) -> None:
    """The public pairing step: both sides join the room, pair on the code, and get a link
    that carries frames both ways; each side reports Connected."""
    settings = p2pshare.Settings(server=signal.url, ice=LOOPBACK)
    connected: list[events.SessionEvent] = []
    codes: asyncio.Queue[Code] = asyncio.Queue()
    both_read = asyncio.Barrier(2)

    async def side(role: Role) -> bytes:
        async with rendezvous(settings) as (rv, embedded_url):
            assert embedded_url is None
            if role is Role.SENDER:
                code = Code(await rv.allocate(), generate_words(2))
                codes.put_nowait(code)
            else:
                code = await codes.get()
                await rv.claim(code.nameplate)
            async with pair(rv, role, code, settings, connected.append) as link:
                link.send(role.name.encode())
                frame = await asyncio.wait_for(link.incoming.get(), 30)
                await both_read.wait()  # closing first could lose the other side's frame
                return frame

    at_sender, at_receiver = await asyncio.gather(side(Role.SENDER), side(Role.RECEIVER))
    assert (at_sender, at_receiver) == (b"RECEIVER", b"SENDER")
    assert [type(e) for e in connected if not isinstance(e, events.Verification)] == [
        events.Connected,
        events.Connected,
    ]
    # Both sides derived the same --verify words from the session key.
    words = {e.words for e in connected if isinstance(e, events.Verification)}
    assert len(words) == 1 and len(next(iter(words))) == 4


def test_events_import_without_aiortc() -> None:
    """What a caller needs to handle events (and the CLI's reporters) does not load aiortc."""
    code = (
        "import sys, p2pshare.events, p2pshare.progress, p2pshare.transfer; "
        "assert 'aiortc' not in sys.modules, 'aiortc was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
