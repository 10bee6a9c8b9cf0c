"""An offer's entries held in columns (p2pshare/manifest.py), checked as they arrive
(files.OfferCheck) and located on the sender without a Source per entry (sources.Sources):
the same entries, the same refusals, a bounded cost per entry (issue 31)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pshare import messages as m
from p2pshare import transfer
from p2pshare.errors import DeclinedError, LocalFileError, UnsafeNameError
from p2pshare.files import _DIR, _FILE, _KeySet, check_offer
from p2pshare.layout import plan
from p2pshare.manifest import KINDS, Manifest
from p2pshare.sources import Reader, collect

entries = st.builds(
    m.FileEntry,
    path=st.text(min_size=1, max_size=40),
    size=st.one_of(st.none(), st.integers(0, m.MAX_FILE_BYTES)),
    mode=st.integers(0, 0o7777),
    mtime=st.one_of(st.none(), st.floats(0, 2**40, exclude_max=True)),
    kind=st.sampled_from(KINDS),
)


@given(st.lists(entries, max_size=30))
def test_a_manifest_gives_back_the_entries_it_was_given(given_entries: list[m.FileEntry]) -> None:
    """Every field of every entry comes back as it went in (paths with any characters, no
    size, no mtime), with the total (None once a size is unknown) and the directories."""
    manifest = Manifest(given_entries)
    assert list(manifest) == given_entries
    assert manifest == given_entries and manifest == Manifest(given_entries)
    sizes = [e.size for e in given_entries]
    assert manifest.total_bytes == (None if None in sizes else sum(s or 0 for s in sizes))
    assert manifest.dirs == sum(e.kind == "dir" for e in given_entries)
    assert list(manifest.data_indexes()) == [
        i for i, e in enumerate(given_entries) if e.carries_data
    ]
    assert list(manifest.dir_indexes()) == [
        i for i, e in enumerate(given_entries) if e.kind == "dir"
    ]
    if given_entries:
        assert manifest[-1] == given_entries[-1]
        assert manifest.path(0) == given_entries[0].path


@given(entries)
def test_an_entrys_cost_is_the_length_of_its_json(entry: m.FileEntry) -> None:
    """Offers are split by each entry's JSON length (the page splits by the same rule); it
    is worked out without encoding the entry, and equals the encoded length plus one."""
    obj = entry.to_json()
    assert m.entry_cost(obj) == len(json.dumps(obj, ensure_ascii=False).encode()) + 1


def test_a_manifest_costs_its_paths_and_27_bytes_an_entry() -> None:
    """100,000 entries of a tree: the columns hold each path's bytes and 27 bytes more (the
    FileEntry objects they replace took 575-900 bytes each)."""
    manifest = Manifest()
    paths = [f"top/p{i // 10_000:03}/d{i // 1000:04}/f{i:07}.txt" for i in range(100_000)]
    for path in paths:
        manifest.add(path, 100, 0o644, 1733500000.5)
    path_bytes = sum(len(p) for p in paths)
    assert path_bytes < manifest.nbytes() <= path_bytes + 27 * len(paths) + 64 * 1024


def test_names_are_checked_as_they_arrive_and_the_first_bad_one_refuses() -> None:
    """A receiver that checks names refuses an offer of 20,000 entries on its first message
    when that message holds a bad name, before the other messages are taken."""
    good = [m.FileEntry(f"d/f{i:05}", 1) for i in range(20_000)]
    frames = list(m.Offer([*good[:10], m.FileEntry("d/../escape", 1), *good[10:]]).frames())
    assert len(frames) > 5
    receiver = transfer.ReceiverProtocol(check_names=True)
    with pytest.raises(UnsafeNameError, match=r"unsafe name '\.\.'"):
        receiver.receive(frames[0])


@pytest.mark.parametrize(
    ("paths", "kinds", "named"),
    [
        (["a/b", "A"], ["file", "file"], "'A' and 'a'"),
        (["A", "a/b"], ["file", "file"], "needs 'a' to be a directory"),
        (["x/y", "x/Y"], ["file", "dir"], "'x/Y' and 'x/y'"),
        (["k", "K"], ["dir", "file"], "'K' and 'k'"),
        (["caf\u00e9", "cafe\u0301"], ["file", "file"], "name the same file"),
    ],
)
def test_clashes_are_refused_in_either_order_naming_both(
    paths: list[str], kinds: list[str], named: str
) -> None:
    """Two entries that are one file on some file system (case, Unicode normalisation), or a
    file where another entry needs a directory, refuse the offer, whichever comes first."""
    offer = m.Offer([m.FileEntry(p, 0, kind=k) for p, k in zip(paths, kinds, strict=True)])
    with pytest.raises(UnsafeNameError, match=named.replace("(", r"\(")):
        check_offer(offer)


def test_a_directory_offered_and_implied_is_no_clash() -> None:
    """A directory entry and the paths inside it, in any order, are one directory."""
    entries = [m.FileEntry("d/e/f", 1), m.FileEntry("d", 0, kind="dir")]
    entries += [m.FileEntry("d/e", 0, kind="dir"), m.FileEntry("D2/x", 1)]
    assert [list(p) for p in check_offer(m.Offer(entries))] == [
        ["d", "e", "f"],
        ["d"],
        ["d", "e"],
        ["D2", "x"],
    ]


def test_collected_sources_read_from_the_walked_files(tmp_path: Path) -> None:
    """The sender holds a walked tree as entries plus its root: each source made from them
    is the file on disk with the entry's size and mode, directories carry no data, and the
    data view skips them."""
    top = tmp_path / "top"
    for d in ("a", "a/b", "c"):
        (top / d).mkdir(parents=True)
    for i, rel in enumerate(("a/one.txt", "a/b/two.txt", "c/three.txt", "four.txt")):
        (top / rel).write_bytes(b"x" * i)
        os.chmod(top / rel, 0o600 + i)
    sources = collect([top])
    assert len(sources) == 8 and sources.entries.dirs == 4
    for source in sources:
        if source.entry.kind == "dir":
            assert source.path is None
            continue
        assert source.path is not None
        assert source.path == top / source.entry.path.removeprefix("top/")
        assert source.entry.size == source.path.stat().st_size
        assert source.entry.mode == source.path.stat().st_mode & 0o777
    data = sources.carrying_data()
    assert [s.entry.path for s in data] == [e.path for e in sources.entries if e.kind == "file"]


def test_the_preflight_finds_a_file_deep_among_many_in_the_same_directories(
    tmp_path: Path,
) -> None:
    """The receiver's preflight keeps directories open from entry to entry and skips what is
    under a missing one: an existing file deep in a shared directory is still found (and
    declined), and a new subtree next to it is no conflict."""
    out = tmp_path / "out"
    (out / "t" / "a" / "b").mkdir(parents=True)
    (out / "t" / "a" / "b" / "f05").write_bytes(b"mine")
    entries = [m.FileEntry("t", 0, kind="dir")]
    entries += [m.FileEntry(f"t/new/x/f{i:02}", 1) for i in range(10)]
    entries += [m.FileEntry(f"t/a/b/f{i:02}", 1) for i in range(10)]
    offer = m.Offer(entries)
    with pytest.raises(DeclinedError, match="f05 already exists"):
        plan(out, offer, check_offer(offer), overwrite=False)
    ok = m.Offer([e for e in entries if e.path != "t/a/b/f05"])
    layout = plan(out, ok, check_offer(ok), overwrite=False)
    assert layout.root == out and not layout.found


@pytest.mark.parametrize(("now", "says"), [(b"abc", "shrank"), (b"abcdefgh", "grew")])
def test_a_small_file_that_changed_since_the_walk_is_an_error(
    tmp_path: Path, now: bytes, says: str
) -> None:
    """A small file is read in one go (open, read, close): one that shrank or grew since it
    was offered is refused with its name, never sent with the wrong size."""
    path = tmp_path / "small.txt"
    path.write_bytes(b"abcde")
    sources = collect([path])
    path.write_bytes(now)
    reader = Reader(sources.carrying_data(), 64 * 1024)
    with pytest.raises(LocalFileError, match=f"small.txt: the file {says}"):
        reader.whole(sources[0])
    path.write_bytes(b"edcba")
    assert reader.whole(sources[0]) == b"edcba" and reader.read_bytes == 5


def test_the_key_table_keeps_every_key_and_its_kind_as_it_grows() -> None:
    """The name check's table of key hashes (8 bytes a slot, doubled when half full) finds
    every key put, with the kind it was first put with, and none that was not put."""
    keys = _KeySet()
    for i in range(50_000):
        keys.put(f"d{i // 100}/f{i}", _DIR if i % 7 == 0 else _FILE)
    keys.put("d0/f0", _FILE)  # already there: keeps its kind
    assert all(
        keys.get(f"d{i // 100}/f{i}") == (_DIR if i % 7 == 0 else _FILE) for i in range(50_000)
    )
    assert not any(keys.get(f"e{i}") for i in range(50_000))
    assert len(keys._slots) <= 4 * 50_000 * 2
