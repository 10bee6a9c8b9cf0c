"""Write names.json: what p2pshare/files.py says about hostile names and offers.

The Node tests check web/src/names.js against it; tests/test_web_build.py checks that it is
what files.py says today. Run from the repository root: ``python web/testlib/make_names.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2pshare import messages as m
from p2pshare.files import UnsafeNameError, check_offer, printable, terminal_safe

HERE = Path(__file__).resolve().parent

NAMES = [
    "report.pdf",
    "My Photos",
    ".hidden",
    "a..b",
    "café au lait.txt",
    "日本語.txt",
    "x" * 255,
    "é" * 127,
    "é" * 128,
    "CONSOLE.txt",
    "com10",
    "-rf",
    "~",
    "emoji \U0001f600.png",
    "..",
    ".",
    "",
    "x" * 256,
    "CON",
    "con.txt",
    "nul.tar.gz",
    "COM1",
    "lpt9.log",
    "COM¹",
    "conin$",
    "aux .txt",
    "x ",
    "x.",
    " x",
    "a\\b",
    "C:",
    "a*b",
    "a?b",
    'a"b',
    "a<b",
    "a>b",
    "a|b",
    "\x00",
    "\x1b[1m",
    "a\x7fb",
    "\u202e",
    "\u200b",
    "a\u2028b",
    "a\u2029b",
    "a\ue000b",
    "a\ud800b",
    "a\u0378b",
    "tab\there",
    "new\nline",
    "a\u00a0b",
    "a\u3000b",
    "e\u0301",
    "\U000e0001tag",
    ".p2pshare-x",
    ".P2PSHARE-1.part",
    "p2pshare-x",
    "CLOCK$",
    "clock$.txt",
    "\u3164",
    "a\u2800",
    "x\u00a0",
    "\u3000x",
    "a\ufe0fb",
    "a\U000e0100",
    "x\u2003",
    "\u200ax",
    "a\u0085b",
]
PATHS = [
    "a/b/c.txt",
    "/etc/passwd",
    "a//b",
    "a/./b",
    "a/../b",
    "../x",
    "a/",
    "/".join("d" * 64),
    "/".join("d" * 65),
    "/".join(["x" * 200] * 21),
    "/".join(["x" * 200] * 20),
]
OFFERS: list[list[tuple[str, str]]] = [
    [("photos", "dir"), ("photos/2024/a b.jpg", "file"), ("notes.txt", "file")],
    [("a", "file"), ("a/b", "file")],
    [("a/b", "file"), ("a", "file")],
    [("a/b", "file"), ("a", "dir")],
    [("a", "dir"), ("A", "dir")],
    [("README", "file"), ("readme", "file")],
    [("café", "file"), ("cafe\u0301", "file")],
    [("Straße", "file"), ("STRASSE", "file")],
    [("ﬁle", "file"), ("FILE", "file")],
    [("x", "dir"), ("x", "file")],
    [("msg", "text"), ("other", "file")],
    [("msg", "text")],
]


def verdict(entries: list[tuple[str, str]]) -> dict[str, Any]:
    offer = m.Offer(tuple(m.FileEntry(p, 0 if k == "dir" else 1, kind=k) for p, k in entries))
    try:
        parts = check_offer(offer)
    except UnsafeNameError as exc:
        return {"ok": False, "message": exc.message}
    return {"ok": True, "parts": [list(p) for p in parts]}


def main() -> None:
    cases = [{"entries": [[n, "file"]], **verdict([(n, "file")])} for n in NAMES]
    cases += [{"entries": [[p, "file"]], **verdict([(p, "file")])} for p in PATHS]
    cases += [{"entries": [list(e) for e in o], **verdict(o)} for o in OFFERS]
    shown = [{"text": n, "printable": printable(n)} for n in [*NAMES, "x" * 300]]
    texts = ["line one\nline two\ttab", "\x1b[2J\x1b]0;title\x07", "abc\u202edcba", "ok \U0001f600"]
    safe = [{"text": t, "safe": terminal_safe(t)} for t in [*NAMES, *texts]]
    data = {"offers": cases, "printable": shown, "terminal_safe": safe}
    text = json.dumps(data, indent=1, ensure_ascii=True) + "\n"
    (HERE / "names.json").write_text(text, encoding="ascii")


if __name__ == "__main__":
    main()
