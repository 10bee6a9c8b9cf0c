"""Costs that must not grow with the size of a transfer: descriptors held by a receiver,
what a failed receive leaves behind, and the work per progress step (issues 27 and 31)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from p2pshare import messages as m
from p2pshare import transfer
from p2pshare.digests import SHA256, new
from p2pshare.errors import IntegrityError
from p2pshare.files import check_offer
from p2pshare.layout import plan
from p2pshare.tree import DIR_FD_CACHE, Tree
from tests.cli_helpers import P2PSHARE, Peer, leftovers, peer_env

DIRECTORIES = 1_500
NOFILE = 1_024


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_tree_of_1500_directories_arrives_under_1024_descriptors(
    server: str, dirs: tuple[Path, Path]
) -> None:
    """A receiver limited to 1,024 descriptors (prlimit, a real CLI process) takes an
    honest tree of 1,500 directories with one file each, all of it, and exits 0."""
    src, out = dirs
    tree = src / "tree"
    for i in range(DIRECTORIES):
        (tree / f"d{i:04}").mkdir(parents=True)
        (tree / f"d{i:04}" / "f.txt").write_bytes(f"file {i}\n".encode())
    sender = Peer(["send", str(tree), "--server", server, "--json"], cwd=src)
    code = sender.event("code")["code"]
    limited = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", P2PSHARE]
    receiver = subprocess.run(
        [*limited, "receive", code, "--server", server, "--json", "--yes", "-o", str(out)],
        env=peer_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert receiver.returncode == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    received = sorted((out / "tree").iterdir())
    assert len(received) == DIRECTORIES
    assert all((d / "f.txt").read_bytes() == f"file {int(d.name[1:])}\n".encode() for d in received)


def _offer(directories: int) -> m.Offer:
    entries: list[m.FileEntry] = [m.FileEntry("top", 0, 0o755, kind="dir")]
    for i in range(directories):
        entries.append(m.FileEntry(f"top/d{i:04}", 0, 0o755, kind="dir"))
        entries.append(m.FileEntry(f"top/d{i:04}/f.txt", 3, 0o644))
    return m.Offer(tuple(entries))


def _receive(tree: Tree, index: int, data: bytes) -> None:
    tree.begin(index)
    tree.write(data)
    digest = new(SHA256)
    digest.update(data)
    tree.finish(index, digest.hexdigest())


def test_directory_descriptors_stay_bounded(tmp_path: Path) -> None:
    """Creating 300 directories and writing a file in each, in offer order and again in
    reverse, never holds more than DIR_FD_CACHE directory descriptors (plus the root's)."""
    offer = _offer(300)
    tree = Tree(plan(tmp_path, offer, check_offer(offer), overwrite=False), offer)
    before = _open_fds()
    try:
        tree.make_dirs()
        assert _open_fds() - before <= DIR_FD_CACHE
        files = [i for i, e in enumerate(offer.files) if e.kind == "file"]
        for index in files[::-1]:
            _receive(tree, index, b"abc")
            assert _open_fds() - before <= DIR_FD_CACHE
        tree.finish_dirs()
    finally:
        tree.close()
    assert _open_fds() < before
    assert all((tmp_path / "top" / f"d{i:04}" / "f.txt").read_bytes() == b"abc" for i in range(300))


def test_a_receive_under_a_low_descriptor_limit_goes_through(tmp_path: Path) -> None:
    """With the process limited to a few descriptors more than the cache, a tree of 300
    directories is still written (the cache, not the tree, decides how many are open)."""
    offer = _offer(300)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    tree = Tree(plan(tmp_path, offer, check_offer(offer), overwrite=False), offer)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_open_fds() + DIR_FD_CACHE + 8, hard))
    try:
        tree.make_dirs()
        for index, entry in enumerate(offer.files):
            if entry.kind == "file":
                _receive(tree, index, b"xyz")
        tree.finish_dirs()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        tree.close()
    assert len(list((tmp_path / "top").iterdir())) == 300


@pytest.mark.parametrize("create_root", [False, True], ids=["into-existing", "new-root"])
def test_a_failed_receive_removes_the_directories_it_created(
    tmp_path: Path, create_root: bool
) -> None:
    """A receive that fails half-way (a file whose hash does not match) leaves the files
    verified before it, their directories, and a directory that existed before; every
    directory it created that holds nothing is gone (with --output NEW, the root too)."""
    offer = _offer(50)
    existing = tmp_path / "top" / "d0049"
    if not create_root:
        existing.mkdir(parents=True)
    out = tmp_path / "new" if create_root else tmp_path
    tree = Tree(plan(out, offer, check_offer(offer), overwrite=False), offer)
    files = [i for i, e in enumerate(offer.files) if e.kind == "file"]
    try:
        tree.make_dirs()
        for index in files[:3]:
            _receive(tree, index, b"abc")
        tree.begin(files[3])
        tree.write(b"abc")
        with pytest.raises(IntegrityError):
            tree.finish(files[3], "0" * 64)
    finally:
        tree.close()
    if create_root:
        # The three verified files keep the root and their directories.
        assert leftovers(out / "top") == ["d0000", "d0001", "d0002"]
    else:
        assert leftovers(tmp_path / "top") == ["d0000", "d0001", "d0002", "d0049"]
    assert all(leftovers(out / "top" / f"d{i:04}") == ["f.txt"] for i in range(3))


def test_a_failed_receive_into_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    """A receive into a new --output directory that fails before any file was verified
    leaves nothing at all."""
    offer = _offer(20)
    out = tmp_path / "new"
    tree = Tree(plan(out, offer, check_offer(offer), overwrite=False), offer)
    try:
        tree.make_dirs()
        index = next(i for i, e in enumerate(offer.files) if e.kind == "file")
        tree.begin(index)
        tree.write(b"abc")
    finally:
        tree.close()
    assert leftovers(tmp_path) == []


def test_offer_total_is_kept_as_entries_are_added() -> None:
    """The offer's total is kept by its manifest as each entry is added, not summed when
    progress asks for it (each step summing every entry made sending quadratic in the number
    of files); a stream's unknown size makes it None."""
    offer = m.Offer(tuple(m.FileEntry(f"f{i}", i) for i in range(1000)))
    assert offer.total_bytes == sum(range(1000))
    offer.files.add("g", 5, 0o644, None)
    assert offer.total_bytes == sum(range(1000)) + 5
    assert m.Offer((m.FileEntry("s", None, kind="stream"),)).total_bytes is None


def _accepted_window(offer: m.Offer) -> int:
    receiver = transfer.ReceiverProtocol()
    for frame in offer.frames():
        receiver.receive(frame)
    accept = m.decode(receiver.accept(16 * 1024 * 1024)[0])
    assert isinstance(accept, m.Accept)
    return accept.window


def test_many_small_files_get_a_window_of_a_bounded_number_of_files() -> None:
    """Credit counts bytes: an offer of 10,000 files of 100 bytes gets a window of 1 MiB, not
    16 MiB (which would let every file and its write job be in flight at once); an offer of
    a few files, or of large ones, keeps the window asked for."""
    small = m.Offer(tuple(m.FileEntry(f"d/f{i}", 100) for i in range(10_000)))
    assert _accepted_window(small) == transfer.MIN_FILES_WINDOW_BYTES
    few = m.Offer(tuple(m.FileEntry(f"d/f{i}", 100) for i in range(100)))
    assert _accepted_window(few) == 16 * 1024 * 1024
    large = m.Offer(tuple(m.FileEntry(f"d/f{i}", 1 << 20) for i in range(10_000)))
    assert _accepted_window(large) == 16 * 1024 * 1024
