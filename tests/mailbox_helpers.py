"""A real magic-wormhole mailbox server (``twist wormhole-mailbox``, from PyPI) for tests."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TWIST = str(Path(sys.executable).parent / "twist")
_PORT_RE = re.compile(r"Site starting on (\d+)")


@contextmanager
def mailbox_server(
    directory: Path, *args: str, host: str = "127.0.0.1", netns: str | None = None
) -> Iterator[str]:
    """Run the mailbox server on a free port of ``host`` (its database in ``directory``);
    yield its ``ws://HOST:PORT/v1`` URL; stop it on exit."""
    wrap = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen(
        [
            *wrap,
            TWIST,
            "wormhole-mailbox",
            f"--port=tcp:0:interface={host}",
            f"--channel-db={directory / 'mailbox.sqlite'}",
            *args,
        ],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            match = _PORT_RE.search(line)
            if match:
                port = int(match[1])
                break
        assert port is not None, f"the mailbox server did not start (exit {proc.wait()})"
        yield f"ws://{host}:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
