"""A hostile rendezvous server during a reconnect (issue 28, item 5), against the real
``p2pshare send`` and ``receive``: the server pairs them honestly, the data path dies
mid-transfer, and in the reconnect room the server replays old messages, tampers with the
sealed offer, substitutes another one, plays the peer itself, or refuses the room
(tests/tampering_signal.py, ``reconnect:MODE``). At most it prevents the reconnect: never is
its data or its peer accepted, and a prevented reconnect ends within the budget with exit 7
and the partial data kept under its partial name.

Each case runs in a network namespace of its own, on its loopback, capped by a token bucket
(so a small file is still in flight when the path is cut); the data path is cut by dropping
UDP there, while the rendezvous (TCP) stays up. The cases run at once (most of each is
waiting out the silence deadline and the budget) in a module fixture; each test then checks
one case's outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from p2pshare.errors import ProtocolError
from p2pshare.pake import Role
from p2pshare.reconnect import ReconnectKeys
from tests.cli_helpers import ROOT, Peer, leftovers, peer_env
from tests.natlab import Lab, sh

pytestmark = pytest.mark.alone
"""The cases' timing is tight (below): another test beside them would load the machine."""

MIB = 1 << 20
SIZE = 4 * MIB
RATE = "8mbit"
"""The loopback's cap: the file takes about 4 s, so the cut lands mid-transfer."""
ENV = {"P2PSHARE_LARGE_PACKETS": "0", "P2PSHARE_PEER_TIMEOUT_S": "6"}
"""Small packets and a short silence deadline (a short test; the shortest, 4 s, is sometimes
reached by a busy machine's peers before the cut)."""
BUDGET_S = 6
"""``--reconnect-s`` where the server prevents the reconnect: attempts at 0, 1 and 3 s (at 3 s
the peers of a busy machine sometimes never reached the room where the server misbehaves)."""
REPLAY_BUDGET_S = 20
"""Where the reconnect must succeed: room for a few attempts, never the default 2 minutes."""
PARTIAL_KEPT = "partial data kept; send again to resume"

PREVENTING = {
    "tamper": "tampered",
    "substitute": "substituted",
    "fake-peer": "fake-peer",
    "crowded": "claim",
    "drop": "claim",
    "silent": "claim",
}
"""Modes (tests/tampering_signal.py) where the server prevents the reconnect, and what it must
have done at least once for the case to test anything."""
RESENT = "silent"
"""The case where, after exit 7, an honest server pairs a new send that resumes."""
MODES = ("replay", *sorted(PREVENTING))


@contextmanager
def loopback_namespace(workdir: Path, index: int) -> Iterator[str]:
    """A namespace with only its loopback, up and capped at :data:`RATE`."""
    lab = Lab(prefix=f"rh{os.getpid() % 100000}x{index}", workdir=workdir)
    with ExitStack() as stack:
        stack.callback(lab.close)
        ns = lab.add_ns("n")
        sh("tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", RATE, "burst", "64kb",
           "latency", "500ms", ns=ns)  # fmt: skip
        yield ns


class Server:
    """A rendezvous server (``python -m MODULE ARGS``) in namespace ``ns``, on its loopback."""

    def __init__(self, ns: str, module: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        self.url = line.split()[-1]
        self.did: list[dict[str, Any]] = []

    def stop(self) -> None:
        """End it and keep what it did (a hostile server prints one JSON line per act)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.did = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def count(self, what: str) -> int:
        return sum(1 for entry in self.did if entry["did"] == what)


def cut(ns: str, action: str = "-I") -> None:
    """Drop (``-I``) or let through again (``-D``) every UDP packet: the data path dies."""
    sh("iptables", action, "INPUT", "-p", "udp", "-j", "DROP", ns=ns)


def start(ns: str, url: str, payload: Path, out: Path, *extra: str) -> tuple[Peer, Peer]:
    """A human-mode sender (its stderr is what a user reads) and a ``--json`` receiver."""
    env = peer_env(**ENV)
    sender = Peer(["send", str(payload), "--server", url, *extra], payload.parent, env, netns=ns)
    try:
        code = sender.stderr_line("Code:").split(": ", 1)[1].strip()
    except BaseException:
        sender.kill()
        raise
    receive = ["receive", code, "--server", url, "--json", "--yes", "-o", str(out), *extra]
    return sender, Peer(receive, out.parent, env, netns=ns)


@dataclass
class Outcome:
    """One case, ended: both peers (exit codes and output read), what the server did, the
    receiver's directory and what was in it then; for :data:`RESENT`, the receiver of the
    honest send afterwards."""

    sender: Peer
    receiver: Peer
    server: Server
    payload: Path
    out: Path
    kept: list[str]
    resent: Peer | None = None


def run_case(workdir: Path, mode: str, index: int) -> Outcome:
    """Pair through the hostile server in ``mode``, cut the data path once a quarter of the
    file is across, let it through again once both sides say they are reconnecting (so only
    the server stands in the way), and wait for both to end."""
    payload = workdir / "src" / "payload.bin"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(SIZE))
    out = workdir / "out"
    out.mkdir()
    budget = REPLAY_BUDGET_S if mode == "replay" else BUDGET_S
    with loopback_namespace(workdir, index) as ns:
        server = Server(ns, "tests.tampering_signal", f"reconnect:{mode}")
        try:
            sender, receiver = start(ns, server.url, payload, out, "--reconnect-s", str(budget))
            try:
                receiver.event("progress", where=lambda e: SIZE // 4 <= e["done"] < SIZE)
                cut(ns)
                receiver.event("reconnecting")
                sender.stderr_line("connection lost, reconnecting")
                cut(ns, "-D")
                receiver.wait(budget + 30)
                sender.wait(30)
            finally:
                receiver.kill()
                sender.kill()
        finally:
            server.stop()
        outcome = Outcome(sender, receiver, server, payload, out, leftovers(out))
        if mode == RESENT:
            sh("tc", "qdisc", "del", "dev", "lo", "root", ns=ns)  # nothing left to cut
            honest = Server(ns, "signal_server", "--host", "127.0.0.1", "--port", "0")
            try:
                again, outcome.resent = start(ns, honest.url, payload, out)
                try:
                    outcome.resent.wait(60)
                    again.wait(30)
                finally:
                    outcome.resent.kill()
                    again.kill()
            finally:
                honest.stop()
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | BaseException]:
    """Every case, run at once (each in its own namespace)."""
    with ThreadPoolExecutor(len(MODES)) as pool:
        futures = {
            mode: pool.submit(run_case, tmp_path_factory.mktemp(mode), mode, index)
            for index, mode in enumerate(MODES)
        }
    return {mode: future.exception() or future.result() for mode, future in futures.items()}


def outcome_of(outcomes: dict[str, Outcome | BaseException], mode: str) -> Outcome:
    outcome = outcomes[mode]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@pytest.mark.timeout(240)
def test_replayed_messages_in_the_reconnect_room_are_ignored(
    outcomes: dict[str, Outcome | BaseException],
) -> None:
    """The server drops the first attempt at its sealed offer, then replays the first
    pairing's messages and that attempt's hellos into the next one, ahead of the genuine
    hellos: they are ignored (a hello's nonce is taken once), the genuine peers reconnect and
    finish: exit 0, the file verified."""
    case = outcome_of(outcomes, "replay")
    assert case.receiver.proc.returncode == 0, (case.receiver.events, case.receiver.stderr)
    assert case.sender.proc.returncode == 0, case.sender.stderr
    assert case.server.count("dropped-attempt") == 1, case.server.did
    assert case.server.count("replayed") >= 1, case.server.did
    assert case.receiver.last("reconnected")["attempt"] >= 2
    assert (case.out / case.payload.name).read_bytes() == case.payload.read_bytes()
    assert leftovers(case.out) == [case.payload.name]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", sorted(PREVENTING))
def test_a_hostile_server_can_at_most_prevent_the_reconnect(
    outcomes: dict[str, Outcome | BaseException], mode: str
) -> None:
    """Tampered or substituted sealed offers, the server's own peer, a refused, dropped or
    unanswered room: nothing of the server's is accepted (no reconnect, no answer to its
    peer); both sides end once the budget is spent (never a hang) with exit 7 and "partial
    data kept; send again to resume", the receiver's data kept under its partial name and
    nothing under the file's name."""
    case = outcome_of(outcomes, mode)
    receiver, sender = case.receiver, case.sender
    assert receiver.proc.returncode == 7, (receiver.events, receiver.stderr)
    assert sender.proc.returncode == 7, sender.stderr
    assert case.server.count(PREVENTING[mode]) >= 1, case.server.did
    assert case.server.count("answered-fake-peer") == 0, case.server.did
    assert not any(e["event"] == "reconnected" for e in receiver.events)
    error = receiver.last("error")
    assert error["error"] == "peer-lost" and PARTIAL_KEPT in error["message"], error
    lines = [line for line in sender.stderr.splitlines() if line.strip()]
    assert lines and PARTIAL_KEPT in lines[-1], sender.stderr
    assert "Traceback" not in sender.stderr + receiver.stderr
    assert case.payload.name not in case.kept
    assert case.kept, "the partial data is kept for a resend"


@pytest.mark.timeout(240)
def test_after_a_prevented_reconnect_an_honest_send_resumes(
    outcomes: dict[str, Outcome | BaseException],
) -> None:
    """After the server kept the peers apart (exit 7), the same send through an honest
    server resumes from the partial data: exit 0, the file verified, part of it not sent
    again."""
    case = outcome_of(outcomes, RESENT)
    assert case.resent is not None
    assert case.resent.wait() == 0, (case.resent.events, case.resent.stderr)
    assert case.resent.last("done")["resumed"] > 0
    assert (case.out / case.payload.name).read_bytes() == case.payload.read_bytes()
    assert leftovers(case.out) == [case.payload.name]


def test_a_hello_the_peer_never_took_replayed_later_spoils_only_that_attempt() -> None:
    """The limit of the replay set, which knows only the hellos a side took: one the server
    withheld is new to the peer in a later attempt and opens there (it proves the key), but
    the attempt keys then differ from its sender's, so the sealed offer does not open: the
    server has prevented that attempt, as it could by dropping it, and gained nothing."""
    secret = bytes(range(32))
    sender, receiver = ReconnectKeys(Role.SENDER, secret), ReconnectKeys(Role.RECEIVER, secret)
    withheld, old_nonce = sender.hello(0)
    _, nonce_s = sender.hello(0)  # the next attempt's (its hello lost behind the replay)
    hello_r, nonce_r = receiver.hello(0)
    assert receiver.open_hello(withheld, 0) == old_nonce != nonce_s
    assert sender.open_hello(hello_r, 0) == nonce_r
    offer = sender.attempt(0, nonce_s, nonce_r).seal(b"offer")
    with pytest.raises(ProtocolError, match="altered"):
        receiver.attempt(0, nonce_r, old_nonce).open(offer)
    assert receiver.open_hello(withheld, 0) is None  # taken once: never again
