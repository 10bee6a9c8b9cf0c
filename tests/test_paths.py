"""Receiver path safety as a property: refuse, or write only inside the output directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from p2pshare import messages as m
from p2pshare.errors import P2PShareError
from p2pshare.files import UnsafeNameError, check_component, check_offer, printable
from p2pshare.layout import plan
from p2pshare.partials import TEMP_PREFIX
from p2pshare.tree import Tree

SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            "a",
            "b",
            "A",
            "CON",
            "nul.txt",
            "x ",
            "x.",
            " x",
            "caf\u00e9",
            "cafe\u0301",
            "a\\b",
            "C:",
            "\\\\srv",
            "\x00",
            "\x1b[1m",
            "\u202e",
            "\u200b",
            "~",
            "-",
            ".hidden",
            "a..b",
        ]
    ),
    st.text(min_size=1, max_size=6),
)
PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join) | st.text(max_size=12)
ENTRIES = st.lists(
    st.tuples(PATHS, st.sampled_from(["file", "dir"]), st.integers(0, 3)),
    min_size=1,
    max_size=6,
)


def files_under(directory: Path) -> set[str]:
    return {
        str(Path(dp, f).relative_to(directory))
        for dp, dns, fs in os.walk(directory)
        for f in [*fs, *dns]
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ENTRIES)
@example([("photos", "dir", 0), ("photos/2024/a b.jpg", "file", 3), ("notes.txt", "file", 1)])
def test_every_written_path_stays_inside_or_offer_is_refused(
    raw: list[tuple[str, str, int]],
) -> None:
    """For any manifest the receiver writes only inside the output directory, or refuses it."""
    offer = m.Offer(
        tuple(
            m.FileEntry(path, 0 if kind == "dir" else size, kind=kind) for path, kind, size in raw
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "out"
        root.mkdir()
        (base / "sibling").mkdir()
        try:
            parts = check_offer(offer)
            layout = plan(root, offer, parts, overwrite=False)
        except P2PShareError:
            return
        for p in parts:
            joined = os.path.normpath(root.joinpath(*p))
            assert joined.startswith(str(root) + os.sep)
        tree = Tree(layout, offer)
        try:
            tree.make_dirs()
            for index, entry in enumerate(offer.files):
                if entry.kind == "file":
                    tree.begin(index)
                    tree.write(b"x" * (entry.size or 0))
                    tree.finish(index, hashlib.sha256(b"x" * (entry.size or 0)).hexdigest())
        finally:
            tree.close()
        assert files_under(base) - {"out", "sibling"} == {"out/" + f for f in files_under(root)}
        assert not any(f.startswith(TEMP_PREFIX) for f in files_under(root))


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        "My Photos",
        ".hidden",
        "a..b",
        "caf\u00e9 au lait.txt",
        "日本語.txt",
        "x" * 255,
        "CONSOLE.txt",
        "com10",
        "-rf",
        "~",
        "emoji \U0001f600.png",
        "my\u00a0file.txt",  # a no-break space inside a name (macOS copy and paste)
        "写真\u3000一覧.jpg",  # an ideographic space inside a Japanese name
        ".p2pshare",  # only the .p2pshare- prefix is reserved
    ],
)
def test_ordinary_names_are_accepted(name: str) -> None:
    """Unusual but harmless names are not refused."""
    check_component(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "C:",
        "x:y",
        "a\x00",
        "a\x7f",
        "\x1b[0m",
        "a\u202e",
        "a\u200b",
        "a\u2029",
        "x" * 256,
        "\u00e9" * 128,
        "CON",
        "con.txt",
        "Aux",
        "NUL.tar.gz",
        "COM1",
        "lpt9.x",
        "COM\u00b9",
        "a.",
        "a ",
        " a",
        "a*",
        "a?",
        'a"',
        "a<",
        "a|",
        "\ud800",
        "CLOCK$",
        "\u3164",  # Hangul filler: draws nothing
        "a\u2800b",  # braille blank
        "\u00a0a",  # leading no-break space
        "a\u3000",  # trailing ideographic space
        "\u3000",
        ".p2pshare-0123456789abcdef.part",  # the receiver's own partial-file namespace
        ".P2PShare-0123456789abcdef.json",
    ],
)
def test_hostile_names_are_refused(name: str) -> None:
    """Each hostile name of the table is refused (croc receivefs/path_test.go style)."""
    with pytest.raises(UnsafeNameError):
        check_component(name)


def test_printable_escapes_everything_a_terminal_would_act_on() -> None:
    """Control, format and separator characters come out as visible escapes."""
    shown = printable("a\x1b[31mb\u202ec\x00d\ne\u2028")
    assert shown == "a\\x1b[31mb\\u202ec\\x00d\\x0ae\\u2028"
    assert printable("x" * 300).endswith("…") and len(printable("x" * 300)) == 201


def test_invisible_and_blank_characters_are_shown_escaped() -> None:
    """Allowed-but-invisible characters (Hangul filler, braille blank, no-break and
    ideographic spaces, variation selectors) are printed as escapes, so a name that looks
    empty or like another one shows what it is."""
    shown = printable("\u3164.txt \u2800 a\u00a0b\u3000c\ufe0fd")
    assert shown == "\\u3164.txt \\u2800 a\\xa0b\\u3000c\\ufe0fd"


def test_reporter_prints_peer_strings_without_markup_or_emoji() -> None:
    """rich markup and :emoji: codes in a peer's name are printed as written."""
    import io

    from p2pshare.progress import HumanReporter

    reporter = HumanReporter("x")
    reporter.console.file = io.StringIO()
    reporter.say("Offer: :warning: invoice.pdf [bold red]x[/] [link=http://e]y[/link]")
    printed = reporter.console.file.getvalue()
    assert ":warning: invoice.pdf [bold red]x[/] [link=http://e]y[/link]" in printed
    assert "\u26a0" not in printed


def test_hidden_entries_at_the_top_of_home_are_found() -> None:
    """Into the home directory itself, .ssh/authorized_keys or .bashrc are named; elsewhere,
    or deeper than the top, dot names are ordinary."""
    from p2pshare.files import hidden_in_home

    checked = [("photos", "a.jpg"), (".ssh", "authorized_keys")]
    assert hidden_in_home(checked, destination_is_home=True) == ".ssh/authorized_keys"
    assert hidden_in_home([(".bashrc",)], destination_is_home=True) == ".bashrc"
    assert hidden_in_home(checked, destination_is_home=False) is None
    assert hidden_in_home([("d", ".hidden")], destination_is_home=True) is None
