"""``send --many`` through the Python API: however many guesses arrive at once, the sender
evaluates one, then burns the code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pshare import session
from p2pshare.codes import Code, parse_code
from p2pshare.config import Settings
from p2pshare.errors import NoSuchCodeError, P2PShareError, WrongCodeError
from p2pshare.events import CodeBurned, CodeReady, SessionEvent
from p2pshare.pairing import authenticate
from p2pshare.pake import Role
from p2pshare.rendezvous import RendezvousClient
from p2pshare.webrtc import IceConfig
from signal_server.server import RunningServer

LOOPBACK = IceConfig(local_addresses=("127.0.0.1",))


async def _guess(url: str, code: Code, settings: Settings) -> P2PShareError | None:
    rv = await RendezvousClient.connect(url)
    try:
        await rv.claim(code.nameplate)
        await authenticate(rv, Role.RECEIVER, code, settings)
    except P2PShareError as exc:
        return exc
    finally:
        await rv.close()
    return None


@pytest.mark.parametrize("guesses", [1, 4])
async def test_concurrent_guesses_get_one_answer_between_them(
    signal: RunningServer, tmp_path: Path, guesses: int
) -> None:
    """Several wrong codes at once: exactly one learns "wrong code" (its guess was
    evaluated); the others are sent away unevaluated; the sender stops with the code burned
    and a later right code finds nobody."""
    (tmp_path / "in.bin").write_bytes(b"secret")
    settings = Settings(server=signal.url, ice=LOOPBACK, connect_timeout_s=10)
    ready: asyncio.Queue[str] = asyncio.Queue()
    burned: list[CodeBurned] = []

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, CodeReady):
            ready.put_nowait(event.code)
        elif isinstance(event, CodeBurned):
            burned.append(event)

    sending = asyncio.create_task(
        session.send_many(tmp_path / "in.bin", settings, count=2, on_event=on_event)
    )
    code = parse_code(await ready.get())
    wrong = [Code(code.nameplate, (f"wrong{i}", "guess")) for i in range(guesses)]
    results = await asyncio.gather(*(_guess(signal.url, w, settings) for w in wrong))
    assert sum(isinstance(r, WrongCodeError) for r in results) == 1, results
    assert all(isinstance(r, WrongCodeError | NoSuchCodeError) for r in results), results
    # Nobody was being served: the sender is done, and its code with it.
    result = await asyncio.wait_for(sending, 30)
    assert isinstance(await _guess(signal.url, code, settings), NoSuchCodeError)
    assert result.stopped == "burned" and result.served == 0
    assert [r.result for r in result.receivers] == ["wrong-code"]
    assert [b.served for b in burned] == [0]
