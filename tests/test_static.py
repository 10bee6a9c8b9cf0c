"""The browser page served by the rendezvous server on its own host and port (issue 13)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signal_server.server import RunningServer, ServerSettings, start_server
from signal_server.static import CONTENT_SECURITY_POLICY
from tests.cli_helpers import run_signal_server
from tests.signal_helpers import (
    FakeClock,
    HttpReply,
    assert_server_pairs,
    http_request,
    make_pair,
    open_client,
    recv_json,
    send_json,
)

SECRET = b"not for the web"

TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "logo.png": "image/png",
    "favicon.ico": "image/x-icon",
    "vectors.json": "application/json",
    "app.webmanifest": "application/manifest+json",
    "app.js.map": "application/json",
    "sub/page.html": "text/html; charset=utf-8",
}


def assert_hardened(reply: HttpReply) -> None:
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static folder with one file of each type, next to a secret it must never serve."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret.js").write_bytes(SECRET)
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_text("<!doctype html><title>p2pshare</title>")
    for name in TYPES:
        (root / name).write_bytes(f"content of {name}".encode())
    (root / ".hidden.txt").write_bytes(SECRET)
    (root / "binary.exe").write_bytes(SECRET)
    os.symlink(outside / "secret.js", root / "link.js")
    os.symlink(outside, root / "linkdir")
    return root


@pytest.fixture
async def served(site: Path, clock: FakeClock) -> AsyncIterator[RunningServer]:
    settings = ServerSettings(host="127.0.0.1", port=0, static_dir=str(site))
    async with start_server(settings, clock) as running:
        yield running
        await assert_server_pairs(running.url)


async def test_packaged_index_is_served_with_csp_and_mime(signal: RunningServer) -> None:
    """GET / answers the packaged index.html as UTF-8 HTML with the strict headers."""
    reply = await http_request(signal.url, "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert b"p2pshare" in reply.body
    assert_hardened(reply)


@pytest.mark.parametrize("name", sorted(TYPES))
async def test_each_file_type_gets_its_mime_type(served: RunningServer, name: str) -> None:
    """Every kind of file the page is built from is served with its own Content-Type."""
    reply = await http_request(served.url, f"/{name}?v=1")
    assert reply.status == 200
    assert reply.headers["content-type"] == TYPES[name]
    assert reply.body == f"content of {name}".encode()
    assert_hardened(reply)


@pytest.mark.parametrize(
    "target",
    [
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E%2Foutside%2Fsecret.txt",
        "/..%2foutside/secret.txt",
        "/sub/..%2f..%2foutside/secret.txt",
        "/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/%252e%252e/outside/secret.txt",
        "/..%5coutside%5csecret.txt",
        "/sub/../index.html",
        "/./index.html",
        "//index.html",
        "/link.js",
        "/linkdir/secret.txt",
        "/.hidden.txt",
        "/binary.exe",
        "/index.html%00.js",
        "/%ff.js",
        "/sub",
        "/empty/",
        "/missing.js",
        "index.html",
        "http://evil.example/index.html",
    ],
)
async def test_only_files_inside_the_folder_are_served(served: RunningServer, target: str) -> None:
    """Traversal (plain, encoded, double-encoded), symlinks out, hidden, unknown types: 404."""
    reply = await http_request(served.url, target)
    assert reply.status == 404
    assert SECRET not in reply.body
    assert_hardened(reply)


async def test_no_directory_listing(served: RunningServer) -> None:
    """A folder answers its index.html or 404, never a list of its files."""
    reply = await http_request(served.url, "/sub/")
    assert reply.status == 404 and b"page.html" not in reply.body


async def test_only_get_is_served(served: RunningServer) -> None:
    """Other methods get 405; the page is read-only."""
    reply = await http_request(served.url, "/index.html", method="POST")
    assert reply.status == 405
    assert_hardened(reply)


async def test_head_answers_like_get_without_a_body(served: RunningServer) -> None:
    """HEAD (curl -I, link checkers) gets GET's status and headers, and no body."""
    get = await http_request(served.url, "/index.html")
    head = await http_request(served.url, "/index.html", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.headers["content-type"] == get.headers["content-type"]
    assert_hardened(head)
    missing = await http_request(served.url, "/nothing.html", method="HEAD")
    assert (missing.status, missing.body) == (404, b"")


async def test_healthz_and_refusals_carry_the_security_headers(served: RunningServer) -> None:
    """/healthz still answers ok, and even websockets' own 400 carries the strict headers."""
    health = await http_request(served.url, "/healthz")
    assert (health.status, health.body) == (200, b"ok\n")
    assert_hardened(health)
    broken = await http_request(
        served.url, "/", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"
    )
    assert broken.status == 400
    assert_hardened(broken)


@pytest.mark.parametrize("path", ["/", "/index.html", "/anything"])
async def test_websocket_upgrade_still_works_on_any_path(served: RunningServer, path: str) -> None:
    """The rendezvous protocol runs on the same port as the page, whatever the path."""
    ws = await open_client(served.url + path)
    await send_json(ws, {"type": "allocate"})
    assert (await recv_json(ws))["type"] == "allocated"
    await ws.close()


async def test_page_and_pairing_share_one_port(served: RunningServer) -> None:
    """A pair completes while the same server answers the page."""
    a, b, _ = await make_pair(served.url)
    assert (await http_request(served.url, "/")).status == 200
    await send_json(a, {"type": "send", "body": "x"})
    assert await recv_json(b) == {"type": "message", "body": "x"}
    await a.close()
    await b.close()


async def test_a_fifo_in_the_folder_does_not_stall_the_server(site: Path) -> None:
    """A FIFO with a served extension in --static-dir is a 404 at once (it is never opened,
    which would wait for a writer), and the real p2pshare-signal keeps answering."""
    os.mkfifo(site / "fifo.txt")
    os.mkfifo(site / "sub" / "index.html")
    with run_signal_server("--host", "127.0.0.1", "--port", "0", "--static-dir", str(site)) as url:
        for target in ("/fifo.txt", "/sub/"):
            reply = await http_request(url, target)
            assert reply.status == 404
            assert_hardened(reply)
        assert (await http_request(url, "/healthz")).body == b"ok\n"
        assert (await http_request(url, "/app.js")).body == b"content of app.js"
        await assert_server_pairs(url)


@pytest.mark.parametrize(
    "second",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"\x81\x85garbage",
    ],
)
async def test_pipelined_requests_get_the_first_answer_then_a_close(
    served: RunningServer, second: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Two requests in one TCP write (or a request and stray bytes): the first is answered,
    then the connection closes; nothing is logged as an error (websockets used to trip an
    assertion in send_response and answer nothing)."""
    host, port = served.url.removeprefix("ws://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + second)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=15)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok\n")
    assert data.count(b"HTTP/1.1") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
