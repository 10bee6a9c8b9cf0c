"""The receiver's writer taking whole small files from a DataBatch (issue 31): each lands with
its bytes, mode and time under its final name only once verified, through the real Tree in
the real writer thread; a file in the way, a symlink at the name or a wrong digest ends the
receive with a clear error and names nothing that was not verified."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from p2pshare import messages as m
from p2pshare import sinks
from p2pshare.errors import DeclinedError, IntegrityError, P2PShareError
from p2pshare.files import check_offer
from p2pshare.fs import UMASK
from p2pshare.layout import plan
from p2pshare.partials import TEMP_PREFIX
from p2pshare.tree import Tree

MTIME = 1_700_000_000.25


def offer_of(files: list[tuple[str, bytes, int]]) -> m.Offer:
    dirs = sorted({p.rsplit("/", 1)[0] for p, _, _ in files if "/" in p})
    entries = [m.FileEntry(d, 0, 0o755, MTIME, kind="dir") for d in dirs]
    entries += [m.FileEntry(p, len(b), mode, MTIME + i) for i, (p, b, mode) in enumerate(files)]
    return m.Offer(tuple(entries))


def batch_of(offer: m.Offer, data: dict[str, bytes]) -> sinks.WriteBatch:
    return sinks.WriteBatch(
        tuple(
            (i, data[e.path], hashlib.sha256(data[e.path]).hexdigest())
            for i, e in enumerate(offer.files)
            if e.kind == "file"
        )
    )


async def run_writer(
    out: Path, offer: m.Offer, jobs: list[sinks.WriteJob], *, named: bool = False
) -> list[sinks.WriteReport]:
    """Runs the real writer thread over a real Tree under ``out``; its reports."""
    tree = Tree(plan(out, offer, check_offer(offer), overwrite=False), offer)
    if named:
        tree._unnamed = False
    writer = sinks.write_worker(tree)
    writer.start()
    for job in [sinks.MakeDirs(), *jobs, sinks.FinishDirs()]:
        writer.submit(job)
    reports: list[sinks.WriteReport] = []
    try:
        async for report in writer:
            reports.append(report)
            if isinstance(report, sinks.DirsFinished):
                break
    finally:
        writer.stop()
    return reports


def names_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
async def test_a_batch_lands_every_file_with_its_bytes_mode_and_time(
    tmp_path: Path, named: bool
) -> None:
    """Every file of a batch (empty, executable, owner-only, in subdirectories) is under its
    final name with the sender's bytes, mode (less the umask) and mtime, and nothing else is
    left in the tree, either way of naming a file."""
    files = [
        ("top.txt", b"top", 0o644),
        ("a/empty", b"", 0o644),
        ("a/run.sh", b"#!/bin/sh\n", 0o755),
        ("a/b/secret", b"s" * 5000, 0o600),
        ("a/b/shared", b"group-writable", 0o664),
    ]
    offer = offer_of(files)
    data = {p: b for p, b, _ in files}
    reports = await run_writer(tmp_path, offer, [batch_of(offer, data)], named=named)
    verified = next(r for r in reports if isinstance(r, sinks.BatchVerified))
    assert verified.nbytes == sum(len(b) for b in data.values())
    assert [i for i, _ in verified.verified] == [2, 3, 4, 5, 6]
    assert names_under(tmp_path) == sorted(["a", "a/b", *data])
    for i, (path, body, mode) in enumerate(files):
        st = (tmp_path / path).stat()
        assert (tmp_path / path).read_bytes() == body
        assert stat.S_IMODE(st.st_mode) == mode & ~UMASK
        assert st.st_mtime == MTIME + i


async def test_a_directory_in_the_way_ends_the_receive_and_names_nothing_after_it(
    tmp_path: Path,
) -> None:
    """A directory that appears at a file's name during the receive: a clear refusal, the
    files before it are in place, the directory is untouched, and no later file of the batch
    and no temporary file is left in the tree."""
    files = [(f"d/f{i}", f"file {i}".encode(), 0o644) for i in range(6)]
    offer = offer_of(files)
    data = {p: b for p, b, _ in files}
    tree = Tree(plan(tmp_path, offer, check_offer(offer), overwrite=False), offer)
    writer = sinks.write_worker(tree)
    writer.start()
    writer.submit(sinks.MakeDirs())
    writer.submit(sinks.FinishDirs())  # a marker: the directories exist once it is reported
    async for report in writer:
        if isinstance(report, sinks.DirsFinished):
            break
    (tmp_path / "d" / "f3").mkdir()
    (tmp_path / "d" / "f3" / "mine").write_bytes(b"the user's")
    writer.submit(batch_of(offer, data))
    with pytest.raises(DeclinedError, match="appeared while receiving"):
        async for _ in writer:
            pass
    writer.stop()
    assert names_under(tmp_path) == ["d", "d/f0", "d/f1", "d/f2", "d/f3", "d/f3/mine"]
    assert all((tmp_path / f"d/f{i}").read_bytes() == data[f"d/f{i}"] for i in range(3))
    assert (tmp_path / "d/f3/mine").read_bytes() == b"the user's"


async def test_a_symlink_at_a_name_is_never_followed(tmp_path: Path) -> None:
    """A symlink placed at a file's name during the receive is refused and left as it was;
    the file it points to is not written."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.write_bytes(b"untouched")
    files = [("f0", b"zero", 0o644), ("f1", b"one", 0o644)]
    offer = offer_of(files)
    tree = Tree(plan(out, offer, check_offer(offer), overwrite=False), offer)
    (out / "f1").symlink_to(outside)
    writer = sinks.write_worker(tree)
    writer.start()
    writer.submit(batch_of(offer, {p: b for p, b, _ in files}))
    with pytest.raises(DeclinedError):
        async for _ in writer:
            pass
    writer.stop()
    assert outside.read_bytes() == b"untouched"
    assert os.readlink(out / "f1") == str(outside)
    assert names_under(out) == ["f0", "f1"]


async def test_a_wrong_digest_in_a_batch_writes_nothing_for_that_file(tmp_path: Path) -> None:
    """A record whose digest does not match: an integrity error, the files before it in
    place, and neither it nor any later file nor a temporary file on the disk."""
    files = [(f"f{i}", f"file {i}".encode(), 0o644) for i in range(4)]
    offer = offer_of(files)
    batch = batch_of(offer, {p: b for p, b, _ in files})
    bad = list(batch.files)
    bad[1] = (bad[1][0], bad[1][1], hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(IntegrityError, match="f1 does not match"):
        await run_writer(tmp_path, offer, [sinks.WriteBatch(tuple(bad))])
    assert names_under(tmp_path) == ["f0"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


async def test_an_existing_file_is_not_replaced_by_a_batch(tmp_path: Path) -> None:
    """A file that appears at a name after the plan is never replaced by a whole file of a
    batch: a clear refusal, and its bytes are the user's."""
    files = [("f0", b"sent", 0o644)]
    offer = offer_of(files)
    tree = Tree(plan(tmp_path, offer, check_offer(offer), overwrite=False), offer)
    (tmp_path / "f0").write_bytes(b"the user's")
    writer = sinks.write_worker(tree)
    writer.start()
    writer.submit(batch_of(offer, {"f0": b"sent"}))
    with pytest.raises(P2PShareError, match="appeared while receiving"):
        async for _ in writer:
            pass
    writer.stop()
    assert (tmp_path / "f0").read_bytes() == b"the user's"
    assert names_under(tmp_path) == ["f0"]
