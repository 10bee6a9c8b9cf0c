"""The receiver's partial files, on a real file system: kept, found, checked, never followed.

These drive ``layout.plan`` and ``tree.Tree`` directly (the end-to-end proof is
tests/test_resume.py); the point here is what is on disk after each step.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path

import pytest

from p2pshare import fs
from p2pshare import messages as m
from p2pshare import tree as tree_module
from p2pshare.errors import DeclinedError, IntegrityError, LocalFileError
from p2pshare.layout import Found, Layout, plan
from p2pshare.partials import partial_names
from p2pshare.tree import Tree
from tests.page_cache import disk_directory, resident_bytes

MIB = 1 << 20
DATA = bytes(range(256)) * (3 * MIB // 256)
ENTRY = m.FileEntry("big.bin", len(DATA), 0o644, 1_700_000_000.25)
OFFER = m.Offer((ENTRY,))
PARTS: list[tuple[str, ...]] = [("big.bin",)]


def layout(out: Path, resume: bool = True, overwrite: bool = False) -> Layout:
    return plan(out, OFFER, PARTS, overwrite, resume)


def interrupted(out: Path, upto: int) -> None:
    """Receive ``upto`` bytes, then stop as a failed receive does."""
    tree = Tree(layout(out), OFFER)
    tree.begin(0)
    tree.write(DATA[:upto])
    tree.close()


def begun(out: Path, data: bytes) -> tuple[Tree, m.FileEntry, m.Offer]:
    """A receive of one file, big.bin, as large as ``data``, into ``out``: begun."""
    entry = m.FileEntry("big.bin", len(data), 0o644, None)
    offer = m.Offer((entry,))
    tree = Tree(plan(out, offer, PARTS, False, True), offer)
    tree.begin(0)
    return tree, entry, offer


def recorded(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[int, int]]:
    """The (offset, length) of every call the tree makes to fs's ``name``, which still runs."""
    calls: list[tuple[int, int]] = []
    real = getattr(fs, name)

    def record(fd: int, offset: int, length: int, using: fs.Writeback = fs.AVAILABLE) -> object:
        calls.append((offset, length))
        return real(fd, offset, length, using)

    monkeypatch.setattr(tree_module, name, record)
    return calls


def names(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_an_interrupted_file_is_kept_with_its_record_and_found_again(tmp_path: Path) -> None:
    interrupted(tmp_path, MIB + 5)
    part, record = partial_names(("big.bin",), ENTRY)
    assert names(tmp_path) == sorted([part, record])
    assert (tmp_path / part).read_bytes() == DATA[: MIB + 5]
    assert (tmp_path / part).stat().st_mode & 0o777 == 0o600
    found = layout(tmp_path).found
    assert found == {0: Found(MIB + 5, complete=False)}

    tree = Tree(layout(tmp_path), OFFER)
    [prefix] = tree.check_held()
    assert prefix == m.Prefix(0, MIB + 5, hashlib.sha256(DATA[: MIB + 5]).hexdigest())
    tree.resume(0, MIB + 5)
    tree.begin(0)
    tree.write(DATA[MIB + 5 :])
    tree.finish(0, hashlib.sha256(DATA).hexdigest())
    tree.close()
    assert names(tmp_path) == ["big.bin"]
    assert (tmp_path / "big.bin").read_bytes() == DATA


def test_a_rejected_prefix_is_truncated_not_spliced(tmp_path: Path) -> None:
    interrupted(tmp_path, 2 * MIB)
    tree = Tree(layout(tmp_path), OFFER)
    tree.check_held()
    tree.resume(0, 0)
    tree.begin(0)
    other = bytes(len(DATA))
    tree.write(other)
    tree.finish(0, hashlib.sha256(other).hexdigest())
    tree.close()
    assert (tmp_path / "big.bin").read_bytes() == other


def test_no_resume_removes_the_partial_data(tmp_path: Path) -> None:
    tree = Tree(layout(tmp_path, resume=False), OFFER)
    tree.begin(0)
    tree.write(DATA[:MIB])
    tree.close()
    assert names(tmp_path) == []


@pytest.mark.parametrize("damage", ["symlink", "record", "longer", "hardlink"])
def test_partial_data_that_is_not_plainly_ours_is_ignored(tmp_path: Path, damage: str) -> None:
    """A link in place of the part file, a record for another entry, a part file longer
    than the entry, or one with a second name: not offered, and never written through."""
    interrupted(tmp_path, 2 * MIB)
    part, record = partial_names(("big.bin",), ENTRY)
    victim = tmp_path.parent / f"victim-{damage}"
    victim.write_bytes(b"precious")
    if damage == "symlink":
        (tmp_path / part).unlink()
        (tmp_path / part).symlink_to(victim)
    elif damage == "record":
        (tmp_path / record).write_text('{"v":1,"path":"other","size":1,"mtime":1,"synced":0}')
    elif damage == "longer":
        with open(tmp_path / part, "ab") as f:
            f.write(bytes(len(DATA)))
    else:
        os.link(tmp_path / part, victim.with_suffix(".link"))
    assert layout(tmp_path).found == {}
    tree = Tree(layout(tmp_path), OFFER)
    assert tree.check_held() == []
    tree.begin(0)
    tree.write(DATA)
    tree.finish(0, hashlib.sha256(DATA).hexdigest())
    tree.close()
    assert (tmp_path / "big.bin").read_bytes() == DATA
    assert victim.read_bytes() == b"precious"


def test_a_file_in_place_is_offered_whole_only_with_the_senders_mtime(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(DATA)
    with pytest.raises(DeclinedError, match="already exists"):
        layout(tmp_path)  # mtime is now, not the sender's
    os.utime(tmp_path / "big.bin", (ENTRY.mtime or 0, ENTRY.mtime or 0))
    assert layout(tmp_path).found == {0: Found(len(DATA), complete=True)}

    tree = Tree(layout(tmp_path), OFFER)
    [prefix] = tree.check_held()
    assert prefix.offset == len(DATA)
    tree.resume(0, len(DATA))
    tree.begin(0)
    assert tree.finish(0, hashlib.sha256(DATA).hexdigest()) == prefix.sha256
    tree.close()
    assert names(tmp_path) == ["big.bin"]


def test_a_file_in_place_that_differs_is_declined_or_left_alone(tmp_path: Path) -> None:
    """The sender says it differs: declined before writing (without --overwrite); a false
    claim of a match is caught by the whole-file hash, and the file is left as it was."""
    (tmp_path / "big.bin").write_bytes(DATA)
    os.utime(tmp_path / "big.bin", (ENTRY.mtime or 0, ENTRY.mtime or 0))
    tree = Tree(layout(tmp_path), OFFER)
    tree.check_held()
    with pytest.raises(DeclinedError, match="differs"):
        tree.resume(0, 0)
    tree.close()
    tree = Tree(layout(tmp_path), OFFER)
    tree.check_held()
    tree.resume(0, len(DATA))
    tree.begin(0)
    with pytest.raises(IntegrityError, match="left as it was"):
        tree.finish(0, "0" * 64)
    tree.close()
    assert (tmp_path / "big.bin").read_bytes() == DATA


def test_two_receives_of_one_file_into_one_place_do_not_share_the_partial(
    tmp_path: Path,
) -> None:
    """The partial file's name comes from the entry, so a second receive of the same file
    into the same place at the same time would take it over: it is refused instead, and the
    first one's data is untouched."""
    first = Tree(layout(tmp_path), OFFER)
    first.begin(0)
    first.write(DATA[:MIB])
    second = Tree(layout(tmp_path), OFFER)
    with pytest.raises(LocalFileError, match="another p2pshare is receiving"):
        second.begin(0)
    second.close()
    first.write(DATA[MIB:])
    first.finish(0, hashlib.sha256(DATA).hexdigest())
    first.close()
    assert (tmp_path / "big.bin").read_bytes() == DATA
    assert names(tmp_path) == ["big.bin"]


def test_a_held_partial_cannot_be_resumed_by_another_receive(tmp_path: Path) -> None:
    interrupted(tmp_path, 2 * MIB)
    first = Tree(layout(tmp_path), OFFER)
    first.check_held()
    first.resume(0, 2 * MIB)
    first.begin(0)
    second = Tree(layout(tmp_path), OFFER)
    second.check_held()
    second.resume(0, 2 * MIB)
    with pytest.raises(LocalFileError, match="another p2pshare is receiving"):
        second.begin(0)
    second.close()
    first.write(DATA[2 * MIB :])
    first.finish(0, hashlib.sha256(DATA).hexdigest())
    first.close()
    assert (tmp_path / "big.bin").read_bytes() == DATA


def test_a_big_file_is_handed_to_the_disk_as_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # So that the fsync before its final name finds little left to write, and a range is
    # dropped from the page cache once the next one is started (it has had time to be written).
    started = recorded(monkeypatch, "start_writeback")
    released = recorded(monkeypatch, "release_written")
    data = os.urandom(MIB) * 27
    tree, _, _ = begun(tmp_path, data)
    # Writes that do not divide the step: every byte is released once, in order.
    for start in range(0, len(data), 3 * MIB):
        tree.write(data[start : start + 3 * MIB])
    tree.finish(0, hashlib.sha256(data).hexdigest())
    tree.close()
    assert started == [(0, 9 * MIB), (9 * MIB, 9 * MIB), (18 * MIB, 9 * MIB)]
    assert released == [(0, 9 * MIB), (9 * MIB, 9 * MIB)]
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_resumed_file_is_released_from_where_it_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(MIB) * 37
    first, _, offer = begun(tmp_path, data)
    first.write(data[: 5 * MIB + 1])
    first.close()
    released = recorded(monkeypatch, "release_written")
    second = Tree(plan(tmp_path, offer, PARTS, False, True), offer)
    second.check_held()
    second.resume(0, 5 * MIB + 1)
    second.begin(0)
    for start in range(5 * MIB + 1, len(data), MIB):
        second.write(data[start : start + MIB])
    second.finish(0, hashlib.sha256(data).hexdigest())
    second.close()
    # Nothing before the resumed offset was written here, so nothing there is released.
    assert released == [(5 * MIB + 1, 8 * MIB), (13 * MIB + 1, 8 * MIB)]
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_failed_writeback_keeps_only_what_was_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait that saw the error consumed it: the range it covered may be wrong on the disk
    # while the page cache holds the right bytes, so a resume must not start past it.
    calls: list[int] = []
    real = fs.release_written

    def fail_second(fd: int, offset: int, length: int, using: fs.Writeback) -> None:
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real(fd, offset, length, using)

    monkeypatch.setattr(tree_module, "release_written", fail_second)
    data = os.urandom(MIB) * 40
    tree, entry, offer = begun(tmp_path, data)
    with pytest.raises(LocalFileError, match="input/output error"):
        for start in range(0, len(data), MIB):
            tree.write(data[start : start + MIB])
    tree.close()
    part, record = partial_names(("big.bin",), entry)
    assert names(tmp_path) == sorted([part, record])
    assert (tmp_path / part).read_bytes() == data[: 8 * MIB]
    assert plan(tmp_path, offer, PARTS, False, True).found == {0: Found(8 * MIB, complete=False)}


def test_a_partial_file_that_cannot_be_made_durable_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    tree = Tree(layout(tmp_path), OFFER)
    tree.begin(0)
    tree.write(DATA[: 2 * MIB])
    monkeypatch.setattr(os, "fsync", failing_fsync)
    tree.close()
    assert names(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_released_data_is_on_the_disk_and_out_of_the_page_cache() -> None:
    with disk_directory() as directory:
        path = directory / "f"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, os.urandom(16 * MIB))
            assert resident_bytes(path) == 16 * MIB  # the kernel's answer is read, not assumed
            assert fs.start_writeback(fd, 0, 16 * MIB)
            fs.release_written(fd, 0, 12 * MIB, fs.Writeback(start=True, drop_behind=True))
            # Only the released range is asserted gone (memory pressure may evict the rest).
            assert resident_bytes(path, 0, 12 * MIB) == 0
            with pytest.raises(OSError):
                fs.release_written(-1, 0, MIB)  # a failed wait is raised, not left for fsync
        finally:
            os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_writeback_is_started_by_the_kernel(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, os.urandom(MIB))
        assert fs.start_writeback(fd, 0, MIB)
        assert not fs.start_writeback(-1, 0, MIB)  # the kernel's answer is read, not assumed
    finally:
        os.close(fd)


def test_a_file_is_not_writable_by_others_until_it_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With umask 002 and the sender's mode 0o664, the temporary file has no group write bit
    while data arrives (nobody else can change bytes already hashed); in place it is 0o664."""
    data = b"x" * 1000
    entry = m.FileEntry("small.txt", len(data), 0o664, None)
    offer = m.Offer((entry,))
    old = os.umask(0o002)
    monkeypatch.setattr(tree_module, "UMASK", 0o002)
    try:
        tree = Tree(plan(tmp_path, offer, [("small.txt",)], False, True), offer)
        tree.begin(0)
        tree.write(data)
        (temp,) = tmp_path.iterdir()
        assert temp.name != "small.txt" and temp.stat().st_mode & 0o777 == 0o644
        tree.finish(0, hashlib.sha256(data).hexdigest())
        tree.close()
    finally:
        os.umask(old)
    assert (tmp_path / "small.txt").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "small.txt").read_bytes() == data


async def test_a_bug_in_the_writer_keeps_the_partial_data(tmp_path: Path) -> None:
    """An unexpected exception in the writer thread (our bug, not the sender's) ends the
    receive as the root error, which keeps the partial data to resume from, not as a
    protocol error, which would delete it."""
    from p2pshare import sinks
    from p2pshare.errors import P2PShareError
    from p2pshare.partials import worth_keeping

    class Broken:
        keep_partial = True
        closed = False

        def write(self, data: bytes) -> None:
            raise RuntimeError("a bug")

        def close(self) -> None:
            self.closed = True

    sink = Broken()
    worker = sinks.write_worker(sink)  # type: ignore[arg-type]
    worker.start()
    worker.submit(sinks.Write(b"data"))
    worker.stop()
    with pytest.raises(P2PShareError) as failure:
        async for _ in worker:
            pass
    assert not isinstance(failure.value, IntegrityError)
    assert "internal error while writing" in failure.value.message
    assert worth_keeping(failure.value) and sink.keep_partial and sink.closed
