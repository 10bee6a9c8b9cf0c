"""Pairing through a real magic-wormhole mailbox server (``twist wormhole-mailbox`` from
PyPI, on 127.0.0.1): the CLI end to end, and the client's protocol pieces."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pshare.errors import (
    NoSuchCodeError,
    PeerLostError,
    ServerRefusedError,
    SignallingError,
    WrongCodeError,
)
from p2pshare.mailbox import APPID, MailboxClient, connect_any, phase_index, phase_name
from p2pshare.rendezvous import RendezvousClient
from tests.cli_helpers import Peer, leftovers, start_pair
from tests.mailbox_helpers import mailbox_server


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[str]:
    """A real mailbox server on a free port of 127.0.0.1, keeping usage records."""
    (tmp_path / "mailbox").mkdir()
    usage = tmp_path / "mailbox" / "usage.sqlite"
    with mailbox_server(tmp_path / "mailbox", f"--usage-db={usage}") as url:
        yield url


def mailbox_results(tmp_path: Path) -> list[str]:
    """The server's record of each retired mailbox of our appid: the sides' combined mood."""
    with contextlib.closing(sqlite3.connect(tmp_path / "mailbox" / "usage.sqlite")) as db:
        rows = db.execute("SELECT result FROM mailboxes WHERE app_id = ?", (APPID,))
        return [row[0] for row in rows]


def test_cli_transfer_through_mailbox(mailbox: str, dirs: tuple[Path, Path]) -> None:
    """send/receive --server at a mailbox server: the file arrives verified, and the sender
    names the rendezvous it used."""
    src, out = dirs
    data = os.urandom(300_000)
    (src / "data.bin").write_bytes(data)
    sender, receiver = start_pair(mailbox, src / "data.bin", out, "--yes")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (out / "data.bin").read_bytes() == data
    code = sender.last("code")
    assert code["rendezvous"] == "127.0.0.1"
    assert code["link"] is None  # a mailbox server serves no browser page
    assert leftovers(out) == ["data.bin"]
    assert mailbox_results(out.parent) == ["happy"]  # both closed, telling it went well


def test_wrong_code_through_mailbox_burns_it(mailbox: str, dirs: tuple[Path, Path]) -> None:
    """A wrong guess over the mailbox: exit 6 on both sides, and the right code then finds
    nobody (exit 4): the code is burned."""
    src, out = dirs
    (src / "a.txt").write_text("secret")
    sender = Peer(["send", str(src / "a.txt"), "--server", mailbox, "--json"], cwd=src)
    code = sender.event("code")["code"]
    nameplate, *words = code.split("-")
    wrong = "-".join(
        [nameplate, *reversed(words)] if words[0] != words[1] else [nameplate, "a", "b"]
    )
    guesser = Peer(
        ["receive", wrong, "--server", mailbox, "--json", "--yes", "-o", str(out)], cwd=out
    )
    assert guesser.wait() == WrongCodeError.exit_code, guesser.stderr
    assert sender.wait() == WrongCodeError.exit_code, sender.stderr
    late = Peer(["receive", code, "--server", mailbox, "--json", "--yes", "-o", str(out)], cwd=out)
    assert late.wait() == NoSuchCodeError.exit_code, late.stderr
    assert leftovers(out) == []
    assert "scary" in mailbox_results(out.parent)


def test_motd_is_shown(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """The server's message of the day reaches the user (as a notice) on both sides."""
    src, out = dirs
    (src / "a.txt").write_text("hello")
    with mailbox_server(tmp_path, "--motd=donations welcome") as url:
        sender, receiver = start_pair(url, src / "a.txt", out, "--yes")
        assert receiver.wait() == 0, receiver.stderr
        assert sender.wait() == 0, sender.stderr
    for peer in (sender, receiver):
        notices = [e["message"] for e in peer.events if e["event"] == "warning"]
        assert "127.0.0.1 says: donations welcome" in notices, peer.events


def test_server_error_stops_both(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """A welcome carrying ``error`` stops sender and receiver at once, with its text."""
    src, out = dirs
    (src / "a.txt").write_text("hello")
    with mailbox_server(tmp_path, "--signal-error=closed for maintenance") as url:
        sender = Peer(["send", str(src / "a.txt"), "--server", url, "--json"], cwd=src)
        receiver = Peer(["receive", "7-a-b", "--server", url, "--json", "--yes"], cwd=out)
        for peer in (sender, receiver):
            assert peer.wait() == ServerRefusedError.exit_code
            error = peer.last("error")
            assert error["error"] == "server-refused"
            assert "closed for maintenance" in error["message"]


def test_phase_names_round_trip() -> None:
    """Our n-th message travels in phase pake, confirm, 0, 1, ...; unknown phases are None."""
    assert [phase_name(i) for i in range(4)] == ["pake", "confirm", "0", "1"]
    assert all(phase_index(phase_name(i)) == i for i in range(50))
    assert phase_index("version") is None
    assert phase_index("01") is None
    assert phase_index(3) is None


async def test_client_detects_the_protocol(mailbox: str, server: str) -> None:
    """The server's greeting decides the client: a mailbox server gets a MailboxClient,
    p2pshare-signal a RendezvousClient; no flag says which."""
    a = await connect_any(mailbox)
    b = await connect_any(server)
    try:
        assert isinstance(a, MailboxClient)
        assert isinstance(b, RendezvousClient)
    finally:
        await a.close()
        await b.close()


async def test_messages_are_ordered_and_deduplicated(mailbox: str) -> None:
    """Bodies come out in the order sent even when phases arrive out of order or twice
    (the server neither orders nor deduplicates)."""
    a = await connect_any(mailbox)
    b = await connect_any(mailbox)
    assert isinstance(a, MailboxClient) and isinstance(b, MailboxClient)
    try:
        nameplate = await a.allocate()
        await a.send(b"pake-a")
        await b.claim(nameplate)
        # b adds its phases by hand: 0 before confirm, and 0 twice
        for phase, body in [("pake", b"pake-b"), ("0", b"sealed"), ("confirm", b"conf")]:
            await b._send({"type": "add", "phase": phase, "body": body.hex()})
        await b._send({"type": "add", "phase": "0", "body": b"again".hex()})
        got = [await a.receive(5) for _ in range(3)]
        assert got == [b"pake-b", b"conf", b"sealed"]
        with pytest.raises(PeerLostError):  # nothing more: the duplicate was dropped
            await a.receive(0.5)
    finally:
        await a.close()
        await b.close()


async def test_nameplate_is_released_once_both_are_in(mailbox: str) -> None:
    """As soon as each side has heard the other, the nameplate goes back to the server
    (nameplates are shared by everyone): the server's list of our nameplates empties while
    the two still talk through the mailbox."""
    a = await connect_any(mailbox)
    b = await connect_any(mailbox)
    c = await connect_any(mailbox)
    assert isinstance(a, MailboxClient) and isinstance(b, MailboxClient)
    assert isinstance(c, MailboxClient)
    try:
        nameplate = await a.allocate()
        await a.send(b"x")
        listed = await c._request({"type": "list"}, "nameplates")
        assert listed["nameplates"] == [{"id": nameplate}]
        await b.claim(nameplate)
        await b.send(b"y")
        assert await a.receive(5) == b"y" and await b.receive(5) == b"x"
        # the releases went out before these pings; the server handles a connection in order
        await a._request({"type": "ping", "ping": 2}, "pong")
        await b._request({"type": "ping", "ping": 2}, "pong")
        assert (await c._request({"type": "list"}, "nameplates"))["nameplates"] == []
        await a.send(b"still")  # the mailbox itself stays open until close
        assert await b.receive(5) == b"still"
    finally:
        for client in (a, b, c):
            await client.close()


def test_appid_names_the_project() -> None:
    """Our appid is ours (DNSNAME/APPNAME), never magic-wormhole's file-transfer one."""
    assert APPID == "github.com/p2pshare/p2pshare"
    assert "lothar.com" not in APPID


async def test_release_before_close_when_nobody_came(mailbox: str) -> None:
    """A receiver that finds nobody on a nameplate says so (NoSuchCodeError) and leaves
    nothing behind: the nameplate it claimed is not listed any more."""
    a = await connect_any(mailbox)
    assert isinstance(a, MailboxClient)
    with pytest.raises(NoSuchCodeError):
        await a.claim("5")
    await a.close()
    b = await connect_any(mailbox)
    assert isinstance(b, MailboxClient)
    try:
        assert (await b._request({"type": "list"}, "nameplates"))["nameplates"] == []
    finally:
        await b.close()


class _CapturingSocket:
    """A websocket stand-in that keeps what is sent and never receives (pure logic test)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def recv(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


async def test_vectors_match_what_the_client_sends() -> None:
    """rendezvous.json's mailbox transcript: the sender's adds are, text for text, what a
    MailboxClient sends for the same bodies, and the phases are phase_name's."""
    vectors = json.loads((Path(__file__).parent / "vectors" / "rendezvous.json").read_text())
    box = vectors["mailbox"]
    assert box["appid"] == APPID
    assert [p["phase"] for p in box["phases"]] == [phase_name(p["index"]) for p in box["phases"]]
    adds = [json.loads(s["text"]) for s in box["transcript"] if s["from"] == "sender"]
    adds = [a for a in adds if a["type"] == "add"]
    socket = _CapturingSocket()
    client = MailboxClient(socket, "ws://mailbox.invalid/v1", [])  # type: ignore[arg-type]
    try:
        for add in adds:
            await client.send(bytes.fromhex(add["body"]))
        assert socket.sent == [json.dumps(a) for a in adds]
    finally:
        client._reader.cancel()
    bodies = {base64.urlsafe_b64decode(b).hex() for b in vectors["bodies_base64url"].values()}
    assert {a["body"] for a in adds} <= bodies


async def test_a_server_cannot_queue_bodies_far_ahead(mailbox: str) -> None:
    """Phases far beyond the next one expected are refused (a hostile server could
    otherwise make a client hold thousands of bodies)."""
    a = await connect_any(mailbox)
    b = await connect_any(mailbox)
    assert isinstance(a, MailboxClient) and isinstance(b, MailboxClient)
    try:
        nameplate = await a.allocate()
        await a.send(b"pake-a")
        await b.claim(nameplate)
        await b._send({"type": "add", "phase": "500", "body": b"far".hex()})
        with pytest.raises(SignallingError, match="out of order"):
            await a.receive(5)
    finally:
        await a.close()
        await b.close()


def test_human_sender_names_the_rendezvous(mailbox: str, tmp_path: Path) -> None:
    """Without --json the sender says which rendezvous carries its code, and shows no
    browser link (a mailbox server serves no page)."""
    (tmp_path / "a.txt").write_text("x")
    sender = Peer(["send", str(tmp_path / "a.txt"), "--server", mailbox], cwd=tmp_path)
    try:
        assert sender.stderr_line("Via ").strip() == "Via 127.0.0.1."
        line = sender.stderr_line("On the other computer run:")
        assert f"--server {mailbox}" in line
    finally:
        sender.kill()
    assert "browser" not in (sender.proc.stderr.read() if sender.proc.stderr else "")
