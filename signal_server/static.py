"""The browser page, served from ``signal_server/static/`` on the websocket's own host and port.

Serving the page from the rendezvous server makes the page and the websocket one origin, so the
page needs no configuration and its Content-Security-Policy can say ``connect-src 'self'``.

Refuse, don't sanitise: a path is served only if every decoded segment is a plain name (no
``..``, no hidden files, no backslashes or NULs), the file's real path (symlinks resolved) is
inside the static folder, it is a regular file (checked before it is opened, and opened without
blocking: a FIFO would stall the event loop) of a known type and not too large. Anything else
is a 404 that says nothing about why. There is no directory listing; ``/`` and ``/dir/`` mean
their ``index.html``.
"""

from __future__ import annotations

import email.utils
import http
import os
import stat
import urllib.parse
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response

DEFAULT_STATIC_DIR = Path(__file__).with_name("static")
MAX_FILE_BYTES = 16 * 1024 * 1024
"""The page is a few hundred kilobytes; this only bounds what one request can make us read."""

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
"""Only these types are served: a file of any other type is a 404 rather than a guess."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # CSP 3 lets 'self' match ws: and wss: on the page's own host and port (http -> ws,
        # https -> wss or ws). Chromium does so since version 71, Firefox since 58 and Safari
        # since 16. 'self' is narrower than "ws: wss:", which would let a script injected into
        # the page reach any websocket server on the internet.
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
"""Sent with every HTTP response of the server (the websocket's 101 aside)."""


def add_security_headers(response: Response) -> None:
    for name, value in SECURITY_HEADERS:
        if name not in response.headers:
            response.headers[name] = value


def text_response(status: http.HTTPStatus, text: str) -> Response:
    return _response(status, "text/plain; charset=utf-8", text.encode())


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            # The page changes when the server is upgraded; never serve a stale one.
            ("Cache-Control", "no-cache"),
            *SECURITY_HEADERS,
        ]
    )
    return Response(status.value, status.phrase, headers, body)


NOT_FOUND = "not found\n"


class StaticSite:
    """Answers plain HTTP GETs with files from ``root`` (and HEADs: the same headers, no
    body, as a link checker or ``curl -I`` expects)."""

    def __init__(self, root: Path = DEFAULT_STATIC_DIR) -> None:
        self.root = Path(os.path.realpath(root))

    def resolve(self, raw_path: str) -> Path | None:
        """The file to serve for the request target ``raw_path``, or None (a 404)."""
        target = raw_path.split("?", 1)[0].split("#", 1)[0]
        if not target.startswith("/"):
            return None
        try:
            # errors="strict": an invalid UTF-8 escape is refused, not replaced.
            decoded = urllib.parse.unquote(target[1:], errors="strict")
        except UnicodeDecodeError:
            return None
        segments = decoded.split("/")
        if segments[-1] == "":
            segments[-1] = "index.html"
        for segment in segments:
            if (
                not segment
                or segment.startswith(".")
                or "\\" in segment
                or "\0" in segment
                or ":" in segment
            ):
                return None
        candidate = os.path.realpath(self.root.joinpath(*segments))
        if os.path.commonpath([candidate, self.root]) != str(self.root):
            return None  # a symlink pointing out of the folder
        if Path(candidate).suffix.lower() not in MIME_TYPES:
            return None
        return Path(candidate)

    def response(self, method: str, raw_path: str) -> Response:
        if method == "HEAD":
            full = self.response("GET", raw_path)
            return Response(full.status_code, full.reason_phrase, full.headers, b"")
        if method != "GET":
            return text_response(http.HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed\n")
        path = self.resolve(raw_path)
        if path is None:
            return text_response(http.HTTPStatus.NOT_FOUND, NOT_FOUND)
        try:
            # Only a regular file is opened at all: opening a FIFO waits for a writer, and a
            # device may act on open. O_NONBLOCK in case it was swapped for one since the
            # stat (the fstat below refuses it then); O_NOFOLLOW: the last component was
            # resolved above and must not change under us.
            if not stat.S_ISREG(os.stat(path).st_mode):
                return text_response(http.HTTPStatus.NOT_FOUND, NOT_FOUND)
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(path, flags)
        except OSError:
            return text_response(http.HTTPStatus.NOT_FOUND, NOT_FOUND)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                return text_response(http.HTTPStatus.NOT_FOUND, NOT_FOUND)
            body = f.read(MAX_FILE_BYTES + 1)
        return _response(http.HTTPStatus.OK, MIME_TYPES[path.suffix.lower()], body)
