"""Running the real ``p2pshare`` and ``p2pshare-signal`` commands as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
P2PSHARE = str(BIN / "p2pshare")
ROOT = Path(__file__).resolve().parent.parent


def lab_env(**extra: str) -> dict[str, str]:
    """A peer in a lab namespace offers its namespace's real addresses."""
    env = peer_env(**extra)
    del env["P2PSHARE_LOCAL_ADDRESSES"]
    return env


def peer_env(**extra: str) -> dict[str, str]:
    """The environment of a test peer: loopback candidates only, nothing inherited that
    would change what the command does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PSHARE_")}
    env["P2PSHARE_LOCAL_ADDRESSES"] = "127.0.0.1"
    env["P2PSHARE_PUBLIC"] = "0"  # tests never contact a public server
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _let_children_get_sigint() -> None:
    """Started in the background by a non-interactive shell, this process (and, through
    exec, every child) has SIGINT ignored, and the Ctrl-C tests would test nothing. A handled
    signal is reset to its default in children at exec, so handle it here."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Peer:
    """A running p2pshare command whose JSON lines (or stderr lines) the test reads."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        netns: str | None = None,
        rss_file: Path | None = None,
    ) -> None:
        self.args = list(args)
        _let_children_get_sigint()
        wrap = ["ip", "netns", "exec", netns] if netns else []
        command = [P2PSHARE, *args]
        if rss_file is not None:
            command = measured(command, rss_file)
        self.proc = subprocess.Popen(
            [*wrap, *command],
            cwd=cwd,
            env=env or peer_env(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._stderr: str | None = None

    def event(self, name: str, where: Any = None) -> dict[str, Any]:
        """Read JSON lines until an event called ``name`` (matching ``where``) arrives."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            obj: dict[str, Any] = json.loads(line)
            self.events.append(obj)
            if obj["event"] == name and (where is None or where(obj)):
                return obj
        raise AssertionError(
            f"no {name!r} event; exit {self.proc.wait()}; "
            f"events {self.events}; stderr: {self.stderr}"
        )

    def stderr_line(self, contains: str) -> str:
        """Read stderr lines until one contains ``contains`` (human output mode)."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if contains in line:
                return line
        raise AssertionError(f"{contains!r} never printed; exit {self.proc.wait()}")

    def wait(self, timeout: float = 90) -> int:
        """Wait for exit; read the remaining JSON events."""
        if self.proc.stdin is not None and self.proc.stdin.closed:
            self.proc.stdin = None  # fed and closed by the test: nothing for communicate()
        out, err = self.proc.communicate(timeout=timeout)
        self.events += [json.loads(line) for line in out.splitlines() if line.strip()]
        self._stderr = err
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        if self._stderr is None:
            self.wait()
        return self._stderr or ""

    def last(self, name: str) -> dict[str, Any]:
        return [e for e in self.events if e["event"] == name][-1]

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def signal_process(
    *args: str, module: str = "signal_server", host: str = "127.0.0.1", netns: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start a rendezvous server process (``python -m MODULE ARGS``, in network namespace
    ``netns`` if given) that says it listens on ``host``; yield its URL and the process (a
    test may kill it), ended on exit."""
    proc = subprocess.Popen(
        [*(("ip", "netns", "exec", netns) if netns else ()), sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"listening on ws://{host}:"), line
        yield line.split()[-1], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def run_signal_server(*args: str, module: str = "signal_server") -> Iterator[str]:
    """Start a rendezvous server process on 127.0.0.1, port 0; yield its URL."""
    with signal_process(*args, module=module) as (url, _):
        yield url


def program_process(
    module: str, *args: str, stderr: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """``python -m MODULE ARGS...`` from the checkout, as a test peer, its stdout piped."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=peer_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@contextmanager
def hostile_peer(
    module: str, server: str, case: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A test's hostile program (``python -m MODULE SERVER CASE``) that prints its code as
    the first JSON line; yields the process and the code, and kills it on exit."""
    proc = program_process(module, server, case, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield proc, json.loads(proc.stdout.readline())["code"]
    finally:
        proc.kill()
        proc.wait()


def interruptible_env(**extra: str) -> dict[str, str]:
    """For tests that act in the middle of a transfer (kill, Ctrl-C, fill the disk, cut the
    path): small packets. With large packets a 64 MiB loopback transfer ends in ~0.2 s, before
    the first throttled progress event a test could act on."""
    return peer_env(P2PSHARE_LARGE_PACKETS="0", **extra)


def start_pair(
    server: str,
    path: Path,
    out: Path,
    *recv_args: str,
    send_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[Peer, Peer]:
    """A sender of ``path`` and a receiver into ``out`` through ``server``, both --json."""
    sender = Peer(
        ["send", str(path), "--server", server, "--json", *send_args], cwd=path.parent, env=env
    )
    code = sender.event("code")["code"]
    receiver = Peer(
        ["receive", code, "--server", server, "--json", "-o", str(out), *recv_args],
        cwd=out,
        env=env,
    )
    return sender, receiver


def leftovers(directory: Path) -> list[str]:
    """Everything in ``directory``: a failed receive must leave nothing (no temp files)."""
    return sorted(p.name for p in directory.iterdir())


def measured(args: Sequence[str], rss_file: Path) -> list[str]:
    """``args`` run under GNU time, which writes the command's peak RSS (KiB) to ``rss_file``.

    Peak RSS cannot be read with wait4 from here: a child's maximum includes the moment
    between fork and exec, when it still mirrors this (large) test process.
    """
    return ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *args]


def peak_rss(rss_file: Path) -> int:
    """Bytes, from a file written by :func:`measured` (the last line is the figure)."""
    return int(rss_file.read_text().split()[-1]) * 1024


def embedded_pair(
    src: Path, out: Path, host_a: str, host_b: str, *args: str, **env: str
) -> tuple[Peer, Peer, str]:
    """A sender in lab namespace ``host_a`` using its embedded rendezvous server, and a
    receiver in ``host_b`` that runs the command it printed. Returns both and the server URL.
    ``args``: extra options for both; ``env``: extra environment for both."""
    sender = Peer(
        ["send", str(src), "--json", *args], cwd=src.parent, env=lab_env(**env), netns=host_a
    )
    event = sender.event("code")
    receiver = Peer(
        [
            "receive",
            event["code"],
            "--server",
            event["server"],
            "--json",
            "--yes",
            "-o",
            str(out),
            *args,
        ],
        cwd=out.parent,
        env=lab_env(**env),
        netns=host_b,
    )
    return sender, receiver, event["server"]
