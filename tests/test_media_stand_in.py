"""The CLI's stand-in for PyAV (p2pshare/media_stand_in.py): aiortc imports without FFmpeg's
bindings, data channels work, and anything that would use media fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from p2pshare import media_stand_in
from tests.cli_helpers import start_pair


def _python(program: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=full_env
    )


def test_the_installed_aiortc_was_tested_with_the_stand_in() -> None:
    # An aiortc upgrade turns the stand-in off quietly (install() checks the version);
    # this makes it loud, so that the upgrade is tested with it first.
    assert media_stand_in._aiortc_version() in media_stand_in.TESTED_AIORTC


def test_aiortc_imports_with_the_stand_in_and_media_fails_loudly() -> None:
    program = (
        "from p2pshare import media_stand_in as s\n"
        "assert s.install()\n"
        "import aiortc, av\n"
        "from aiortc.rtcsctptransport import RTCSctpTransport\n"
        "assert s.installed()\n"
        "try:\n"
        "    av.AudioFrame(format='s16')\n"
        "except s.MediaUnavailable as exc:\n"
        "    print(exc)\n"
    )
    done = _python(program)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "av.AudioFrame: PyAV is not loaded in p2pshare's command line (data channels only)\n"
    )


def test_the_stand_in_stays_out_when_switched_off_or_too_late() -> None:
    real = "import av\nassert not s.installed() and isinstance(av.__version__, str)\n"
    switched_off = (
        "import os\nfrom p2pshare import config, media_stand_in as s\n"
        "assert not s.install(config.Tuning.from_env(os.environ).media_stand_in)\n" + real
    )
    done = _python(switched_off, P2PSHARE_MEDIA_STAND_IN="0")
    assert done.returncode == 0, done.stderr
    too_late = "import av\nfrom p2pshare import media_stand_in as s\nassert not s.install()\n"
    done = _python(too_late + real)
    assert done.returncode == 0, done.stderr


def test_a_transfer_through_the_cli_runs_without_pyav(server: str, dirs: tuple[Path, Path]) -> None:
    src, out = dirs
    (src / "a.bin").write_bytes(b"x" * 100_000)
    sender, receiver = start_pair(server, src / "a.bin", out, "--yes", "-v")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0
    assert "aiortc loaded without PyAV (data channels only)" in receiver.stderr
    assert (out / "a.bin").read_bytes() == b"x" * 100_000
