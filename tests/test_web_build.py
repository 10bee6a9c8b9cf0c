"""The browser page: the committed bundle is what the sources and the lock file build, and the
JavaScript protocol modules pass their Node tests against the shared vectors.

Both run in a scratch copy of ``web/`` with its own ``npm ci`` (only what
``web/package-lock.json`` names, from the npm registry), so they say nothing about, and change
nothing in, a developer's ``web/node_modules``. Node and npm come from Debian
(``scripts/install-system-deps``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
STATIC = ROOT / "signal_server" / "static"
BUILT = ("index.html", "app.css", "app.js", "sw.js", "hash-worker.js")
"""What ``npm run build`` writes into signal_server/static/."""


def require_tools(*tools: str) -> None:
    """Install the Debian packages the suite lists when a tool is missing (root or sudo)."""
    if all(shutil.which(t) for t in tools):
        return
    subprocess.run([str(ROOT / "scripts" / "install-system-deps")], check=False)
    missing = [t for t in tools if not shutil.which(t)]
    # The test command installs them: their absence is a failure, not a skip.
    assert not missing, f"{', '.join(missing)} missing: run scripts/install-system-deps"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of web/ (sources, tests, lock file) and what it imports, after ``npm ci``."""
    require_tools("node", "npm")
    top = tmp_path_factory.mktemp("webbuild")
    web = top / "web"
    web.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy2(WEB / name, web / name)
    for folder in ("src", "page", "test", "testlib"):
        shutil.copytree(WEB / folder, web / folder)
    (top / "p2pshare").mkdir()
    shutil.copy2(ROOT / "p2pshare" / "wordlist.txt", top / "p2pshare" / "wordlist.txt")
    shutil.copytree(ROOT / "tests" / "vectors", top / "tests" / "vectors")
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=web,
        check=True,
        timeout=600,
    )
    yield web


def test_committed_bundle_is_what_the_lock_file_builds(scratch: Path, tmp_path: Path) -> None:
    """A fresh build from the sources and the pinned dependencies is byte-identical to the
    files in signal_server/static/ (which `pip install .` ships without needing Node)."""
    out = tmp_path / "static"
    subprocess.run(["node", "build.mjs", str(out)], cwd=scratch, check=True, timeout=300)
    assert sorted(p.name for p in out.iterdir()) == sorted(BUILT)
    for name in BUILT:
        assert (out / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"signal_server/static/{name} is stale: run `npm --prefix web run build` and commit"
        )


def test_page_names_only_its_own_files() -> None:
    """No CDN, no inline script or style: the page loads app.js and app.css from its origin."""
    html = (STATIC / "index.html").read_text()
    assert '<script type="module" src="app.js"></script>' in html
    assert "<style" not in html
    assert "style=" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert html.count("<script") == 1


def test_node_tests_pass(scratch: Path) -> None:
    """node --test web/test/: PAKE, sealing, frames, names, rendezvous transcript and the
    transfer state machines, against tests/vectors/*.json."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", "test/"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_names_fixture_is_what_files_py_says(tmp_path: Path) -> None:
    """web/testlib/names.json (what the Node name tests compare with) is up to date with
    p2pshare/files.py: regenerating it changes nothing."""
    script = WEB / "testlib" / "make_names.py"
    copy = tmp_path / "make_names.py"
    copy.write_text(script.read_text())
    subprocess.run([sys.executable, str(copy)], cwd=ROOT, check=True, timeout=60)
    fresh = json.loads((tmp_path / "names.json").read_text())
    committed = json.loads((WEB / "testlib" / "names.json").read_text())
    assert fresh == committed, "run `python web/testlib/make_names.py` and commit names.json"


def test_zip_archives_open_with_python_zipfile(scratch: Path, tmp_path: Path) -> None:
    """web/src/zip.js: names, tree, modes and contents as zipfile reads them, ZIP64 for an
    entry of 5 GiB and for what follows it (written sparse, so it costs no disk), and entries
    streamed with data descriptors (sizes known only after the data)."""
    path = tmp_path / "album.zip"
    subprocess.run(
        ["node", "testlib/make_zip.mjs", str(path)], cwd=scratch, check=True, timeout=120
    )
    with zipfile.ZipFile(path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert list(infos) == [
            "album/a.txt",
            "album/empty/",
            "album/été.txt",
            "album/big.bin",
            "album/after.txt",
            "album/streamed.txt",
            "album/stdin",
        ]
        assert archive.read("album/streamed.txt") == b"streamed after the fact\n"
        assert archive.read("album/stdin") == b"a stream of unknown size\n"
        assert infos["album/streamed.txt"].flag_bits & 0x08
        assert infos["album/streamed.txt"].external_attr >> 16 == 0o100600
        assert archive.read("album/a.txt") == b"hello\n"
        assert archive.read("album/été.txt") == b"unicode name\n"
        assert archive.read("album/after.txt") == b"after the big one\n"
        assert infos["album/big.bin"].file_size == 5 * 1024**3
        assert infos["album/after.txt"].header_offset > 2**32
        assert infos["album/empty/"].is_dir()
        assert infos["album/a.txt"].external_attr >> 16 == 0o100640
        assert infos["album/a.txt"].compress_type == zipfile.ZIP_STORED
