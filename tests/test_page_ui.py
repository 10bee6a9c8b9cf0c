"""The page as a person meets it (issue 29), at a desktop and a phone size: the hand-off to
the command line, copy buttons, the QR code, codes checked before they are spent, mistakes
said next to the field, ZIP names, Decline, Cancel, a second link, a server that is gone.
Debian's Chromium through Playwright against the real p2pshare-signal and real CLI peers
(tests/test_browser.py has the setup); each test keeps its screenshots in its tmp_path."""

# The browser fixtures come from tests/test_browser.py by import; pytest finds them by name,
# which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import shlex
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import ROOT, Peer, run_signal_server
from tests.test_browser import (  # noqa: F401  (fixtures used by name)
    SAME_WORDS,
    browser,
    cli_receiver,
    cli_sender,
    confirm_words,
    finished,
    http_url,
    new_page,
    playwright,
    random_file,
    sha,
)
from tests.test_web_build import scratch  # noqa: F401  (web/ after npm ci, for the QR reader)

DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
CLIPBOARD = ["clipboard-read", "clipboard-write"]


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot kept with the test's files."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def clipboard(page: Any) -> str:
    text: str = page.evaluate("navigator.clipboard.readText()")
    return text


def decode_qr(web: Path, png: Path) -> str:
    """The text a camera reads from the QR code in ``png`` (testlib/decode_qr_png.mjs, run in
    ``web``: a copy of web/ with its locked packages installed, as a fresh clone has none)."""
    proc = subprocess.run(
        ["node", "testlib/decode_qr_png.mjs", str(png)],
        cwd=web,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_sending_page_hands_off_to_the_command_line(
    server: str, new_page: Any, tmp_path: Path, size: str, scratch: Path
) -> None:
    """A page sending: the code, the link and the exact `p2pshare receive --server ...`
    command each copy to the clipboard; the QR code reads back as the link; the link never
    breaks inside the code; the command, run as copied, receives the file."""
    data = random_file(tmp_path / "report.pdf", 200_000)
    page = new_page(**SIZES[size], permissions=CLIPBOARD)
    page.goto(http_url(server))
    shot(page, tmp_path, f"start-{size}")
    # Phones have no folder picker that works and nothing to drag with: neither is offered.
    phone = size == "phone"
    assert page.get_by_text("Choose a folder").is_hidden() == phone
    assert page.get_by_text("or drop files").is_hidden() == phone
    page.get_by_label("Choose files", exact=True).set_input_files(str(tmp_path / "report.pdf"))
    page.get_by_text("report.pdf, 195.3 KiB").wait_for()  # IEC units, as the CLI
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator("#code-text").wait_for()
    code = page.locator("#code-text").inner_text()
    link = http_url(server) + "#" + code
    command = page.locator("#cli-command").inner_text()
    assert command == f"p2pshare receive --server {server} {code}"
    for button, expected in (("Copy code", code), ("Copy link", link), ("Copy command", command)):
        page.get_by_role("button", name=button, exact=True).click()
        assert clipboard(page) == expected
    assert page.locator("#share-link").inner_text() == link
    # The code part of the link stays on one line, whatever the width.
    tail = "document.querySelector('#share-link .nowrap')"
    assert page.evaluate(f"{tail}.getClientRects().length") == 1
    in_command = "document.querySelector('#cli-command .nowrap')"
    assert page.evaluate(f"{in_command}.getClientRects().length") == 1
    qr = tmp_path / f"qr-{size}.png"
    page.locator("#qr-image").screenshot(path=str(qr))
    assert decode_qr(scratch, qr) == link
    shot(page, tmp_path, f"sending-{size}")

    out = tmp_path / "out"
    out.mkdir()
    args = shlex.split(command)
    assert args[0] == "p2pshare"
    receiver = Peer([*args[1:], "--json", "--yes", "-o", str(out)], cwd=out)
    confirm_words(page)
    assert receiver.wait() == 0, receiver.stderr
    assert (out / "report.pdf").read_bytes() == data
    finished(page)
    # The page hashed in its worker (web/src/hashing.js), not on its main thread.
    loaded = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    assert http_url(server) + "hash-worker.js" in loaded


def test_the_share_sheet_is_offered_where_the_browser_has_one(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """With navigator.share (phones), a Share button hands the link to the system sheet;
    without it (this desktop Chromium) there is no such button."""
    random_file(tmp_path / "a.bin", 10)
    plain = new_page(**DESKTOP)
    plain.goto(http_url(server))
    plain.get_by_label("Choose files", exact=True).set_input_files(str(tmp_path / "a.bin"))
    plain.get_by_role("button", name="Send", exact=True).click()
    plain.locator("#code-text").wait_for()
    assert plain.evaluate("typeof navigator.share") == "undefined"
    assert plain.get_by_role("button", name="Share…").is_hidden()

    phone = new_page(**PHONE)
    # The system sheet itself is the operating system's: stand in for the browser's API.
    phone.add_init_script(
        "navigator.share = (data) => { window.sharedWith = data; return Promise.resolve(); };"
    )
    phone.goto(http_url(server))
    phone.get_by_label("Choose files", exact=True).set_input_files(str(tmp_path / "a.bin"))
    phone.get_by_role("button", name="Send", exact=True).click()
    phone.locator("#code-text").wait_for()
    code = phone.locator("#code-text").inner_text()
    phone.get_by_role("button", name="Share…").click()
    assert phone.evaluate("window.sharedWith.url") == http_url(server) + "#" + code


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_mistyped_word_is_questioned_before_the_code_is_spent(
    server: str, new_page: Any, tmp_path: Path, size: str
) -> None:
    """`7-guitar-oceann` typed on the page: it asks "did you mean 'ocean'?" next to the field
    instead of connecting; the offered fix then receives the file (the code was not burned)."""
    data = random_file(tmp_path / "typo.bin", 5000)
    sender, code = cli_sender(server, tmp_path / "typo.bin")
    word = code.split("-")[-1]
    page = new_page(**SIZES[size])
    page.goto(http_url(server))
    page.get_by_label("Code", exact=True).fill(code + word[-1])
    page.get_by_role("button", name="Receive", exact=True).click()
    problem = page.locator("#code-problem")
    problem.get_by_text(f'did you mean "{word}"?').wait_for()
    assert page.locator("#status").is_hidden()
    assert sender.proc.poll() is None
    shot(page, tmp_path, f"typo-{size}")
    page.get_by_role("button", name=f"Use {code}", exact=True).click()
    accept = page.get_by_role("button", name="Accept", exact=True)
    with page.expect_download() as download:
        accept.click()
    assert sha(Path(download.value.path()).read_bytes()) == sha(data)
    assert sender.wait() == 0, sender.stderr


def test_form_mistakes_are_said_next_to_the_field(server: str, new_page: Any) -> None:
    """Not a code, or Send with nothing chosen: one line beside the field, no error screen."""
    page = new_page(**PHONE)
    page.goto(http_url(server))
    page.get_by_label("Code", exact=True).fill("hello")
    page.get_by_role("button", name="Receive", exact=True).click()
    page.locator("#code-problem").get_by_text("not a p2pshare code").wait_for()
    assert page.get_by_label("Code", exact=True).get_attribute("aria-invalid") == "true"
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator("#send-problem").get_by_text("Choose files").wait_for()
    assert page.locator("#status").is_hidden()
    page.get_by_label("Code", exact=True).fill("7-guitar")
    assert page.locator("#code-problem").is_hidden()


def test_several_files_are_offered_as_one_named_zip(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """Two loose files: the offer says they arrive as one ZIP and names it after the first
    (`report-and-1-more.zip`, not p2pshare.zip), in IEC units; the ZIP holds both."""
    one = random_file(tmp_path / "report.pdf", 3 * 1024 * 1024)
    two = random_file(tmp_path / "photo.jpg", 1000)
    sender, code = cli_sender(server, tmp_path / "report.pdf", tmp_path / "photo.jpg")
    page = new_page(**DESKTOP)
    page.goto(http_url(server) + "#" + code)
    accept = page.get_by_role("button", name="Accept", exact=True)
    accept.wait_for()
    summary = page.locator("#offer").inner_text()
    assert "2 files, 3.0 MiB in total" in summary
    assert "one ZIP file, report-and-1-more.zip" in summary
    shot(page, tmp_path, "zip-offer")
    with page.expect_download() as download:
        accept.click()
    assert download.value.suggested_filename == "report-and-1-more.zip"
    finished(page)
    with zipfile.ZipFile(download.value.path()) as archive:
        assert archive.read("report.pdf") == one and archive.read("photo.jpg") == two
    assert sender.wait() == 0, sender.stderr


def test_declining_is_not_an_error(server: str, new_page: Any, tmp_path: Path) -> None:
    """Decline on the page: a plain sentence, no alert; the CLI sender hears "declined"."""
    random_file(tmp_path / "no.bin", 100)
    sender, code = cli_sender(server, tmp_path / "no.bin")
    page = new_page(**PHONE)
    page.goto(http_url(server) + "#" + code)
    page.get_by_role("button", name="Decline", exact=True).click()
    page.get_by_text("You declined: nothing was received").wait_for()
    assert page.locator("#error").inner_text() == ""
    assert sender.wait() == 9
    shot(page, tmp_path, "declined")


def test_cancel_says_what_happened(server: str, new_page: Any, tmp_path: Path) -> None:
    """Cancel on a sending page still waiting for its receiver: the page starts afresh and
    says nothing was sent and the code is void; a receiver with that code finds nobody."""
    random_file(tmp_path / "c.bin", 100)
    page = new_page(**DESKTOP)
    page.goto(http_url(server))
    page.get_by_label("Choose files", exact=True).set_input_files(str(tmp_path / "c.bin"))
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator("#code-text").wait_for()
    code = page.locator("#code-text").inner_text()
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("Cancelled: nothing was sent, and the code no longer works.").wait_for()
    assert page.get_by_role("button", name="Send", exact=True).is_visible()
    out = tmp_path / "out"
    out.mkdir()
    receiver = cli_receiver(server, code, out)
    assert receiver.wait() == 4, receiver.stderr  # no such code


def test_cancel_while_the_words_are_asked_sends_nothing(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """Cancel on a sending page still asking about the words: the fresh page says nothing
    was sent; the CLI receiver is told (the other side cancelled) and keeps nothing."""
    random_file(tmp_path / "w.bin", 100)
    out = tmp_path / "out"
    out.mkdir()
    page = new_page(**DESKTOP)
    page.goto(http_url(server))
    page.get_by_label("Choose files", exact=True).set_input_files(str(tmp_path / "w.bin"))
    page.get_by_role("button", name="Send", exact=True).click()
    page.locator("#code-text").wait_for()
    receiver = cli_receiver(server, page.locator("#code-text").inner_text(), out)
    page.get_by_role("button", name=SAME_WORDS, exact=True).wait_for()
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("Cancelled before the words were confirmed: nothing was sent").wait_for()
    assert receiver.wait() != 0
    assert "cancelled" in receiver.last("error")["message"]
    assert "offer" not in [e["event"] for e in receiver.events]
    assert not list(out.iterdir())


def test_a_second_link_in_the_same_tab_starts_a_new_receive(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """After one transfer, a second link opened in the same tab receives the second file."""
    first = random_file(tmp_path / "first.bin", 2000)
    second = random_file(tmp_path / "second.bin", 3000)
    sender1, code1 = cli_sender(server, tmp_path / "first.bin")
    sender2, code2 = cli_sender(server, tmp_path / "second.bin")
    page = new_page(**DESKTOP)
    for code, data in ((code1, first), (code2, second)):
        page.goto(http_url(server) + "#" + code)
        accept = page.get_by_role("button", name="Accept", exact=True)
        with page.expect_download() as download:
            accept.click()
        assert sha(Path(download.value.path()).read_bytes()) == sha(data)
        finished(page)
    assert sender1.wait() == 0 and sender2.wait() == 0


def test_a_server_that_is_gone_is_explained(new_page: Any, tmp_path: Path) -> None:
    """The page's server stopped (a sender's embedded server when its command ended): the
    page says the sender's computer has stopped sharing, in words, not a socket error."""
    with run_signal_server("--host", "127.0.0.1", "--port", "0") as gone:
        page = new_page(**PHONE)
        page.goto(http_url(gone))
        page.get_by_label("Code", exact=True).wait_for()
    page.get_by_label("Code", exact=True).fill("7-guitar-ocean")
    page.get_by_role("button", name="Receive", exact=True).click()
    alert = page.locator("#error")
    alert.get_by_text("stopped sharing").wait_for()
    assert "ask them to send again" in alert.inner_text()
    shot(page, tmp_path, "server-gone")


def test_a_received_text_message_has_a_copy_button(
    server: str, new_page: Any, tmp_path: Path
) -> None:
    """`send --text`: shown as text (no download), and Copy text puts it on the clipboard."""
    sender = Peer(["send", "--text", "wifi: correct horse", "--server", server, "--json"], tmp_path)
    code = sender.event("code")["code"]
    page = new_page(**PHONE, permissions=CLIPBOARD)
    page.goto(http_url(server) + "#" + code)
    accept = page.get_by_role("button", name="Accept", exact=True)
    accept.wait_for()
    offer = page.locator("#offer").inner_text()
    assert "a text message" in offer and "message.txt" not in offer
    accept.click()
    page.locator("#text").wait_for()
    finished(page)
    page.get_by_role("button", name="Copy text", exact=True).click()
    assert clipboard(page) == "wifi: correct horse"
    assert sender.wait() == 0, sender.stderr
    shot(page, tmp_path, "text")


def test_without_its_hashing_worker_the_page_hashes_in_its_own_thread(
    new_page: Any, tmp_path: Path
) -> None:
    """A page served from a folder without hash-worker.js (an old --static-dir copy) still
    sends a verified file: hashing falls back to the page's own thread."""
    import shutil

    static = tmp_path / "static"
    shutil.copytree(ROOT / "signal_server" / "static", static)
    (static / "hash-worker.js").unlink()
    data = random_file(tmp_path / "fallback.bin", 300_000)
    out = tmp_path / "out"
    out.mkdir()
    with run_signal_server(
        "--host", "127.0.0.1", "--port", "0", "--static-dir", str(static)
    ) as srv:
        page = new_page(**DESKTOP)
        page.goto(http_url(srv))
        page.get_by_label("Choose files", exact=True).set_input_files(
            str(tmp_path / "fallback.bin")
        )
        page.get_by_role("button", name="Send", exact=True).click()
        page.locator("#code-text").wait_for()
        receiver = cli_receiver(srv, page.locator("#code-text").inner_text(), out)
        confirm_words(page)
        assert receiver.wait() == 0, receiver.stderr
        assert (out / "fallback.bin").read_bytes() == data
        finished(page)
