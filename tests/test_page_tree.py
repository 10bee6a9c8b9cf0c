"""The page with a large tree (issue 31, item 4): thousands of small files from the CLI arrive
as one ZIP that holds every one of them, byte for byte, while the page lists a bounded number
of names. Debian's Chromium through Playwright against the real p2pshare-signal and a real
``p2pshare send`` (tests/test_browser.py has the setup); bench/page_tree.py measures the same
at 1,000 to 50,000 files."""

# The browser fixtures come from tests/test_browser.py by import; pytest finds them by name,
# which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from tests.test_browser import (  # noqa: F401  (fixtures used by name)
    browser,
    cli_sender,
    http_url,
    new_page,
    playwright,
)

TOPS = 30
PER_TOP = 100
SHOWN_NAMES = 10
"""The offer lists this many top-level names, then "and N more" (web/src/receiver.js)."""


def test_a_tree_of_thousands_of_files_arrives_whole_in_the_pages_zip(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """3,000 files in 30 folders from `p2pshare send` arrive in the page's ZIP, every name
    and every byte; the offer lists 10 names and "and 20 more", the page one download."""
    src = tmp_path / "src"
    expected: dict[str, bytes] = {}
    for t in range(TOPS):
        top = src / f"top{t:02d}"
        top.mkdir(parents=True)
        for i in range(PER_TOP):
            data = f"{t}/{i}\n".encode() * 10
            (top / f"f{i:03d}.txt").write_bytes(data)
            expected[f"top{t:02d}/f{i:03d}.txt"] = data
    sender, code = cli_sender(server, *sorted(src.iterdir()))
    page = new_page()
    page.goto(http_url(server) + "#" + code)
    accept = page.get_by_role("button", name="Accept", exact=True)
    accept.wait_for()
    names = page.locator("#offer-names li")
    assert names.count() == SHOWN_NAMES + 1
    assert names.last.inner_text() == f"and {TOPS - SHOWN_NAMES} more"
    with page.expect_download() as download:
        accept.click()
    assert sender.wait(120) == 0, sender.stderr
    page.locator("#message.ok").wait_for()
    assert page.locator("#downloads li").count() == 1
    assert download.value.suggested_filename == f"top00-and-{TOPS - 1}-more.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        files = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
        folders = {n for n in archive.namelist() if n.endswith("/")}
    assert files == expected
    assert folders == {f"top{t:02d}/" for t in range(TOPS)}
