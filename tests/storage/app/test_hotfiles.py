"""The hot-file cache on a real directory: only proven bytes are kept, the budget holds (least recently
used first out), and a missing, short or changed copy is never served."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.app.hotfiles import CHUNK_BYTES, HotFiles


def blob(n: int, seed: int = 0) -> tuple[str, bytes]:
    data = hashlib.shake_256(f"{seed}".encode()).digest(n) if n else b""
    return hashlib.sha256(data).hexdigest(), data


def pieces(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def kept(hot: HotFiles, sha: str, data: bytes, chunks: Iterator[bytes] | None = None) -> bytes:
    """Count whole reads until the cache takes one, and stream that one through `keep`."""
    for _ in range(hot.reads_to_keep - 1):
        assert not hot.counts_whole_read(sha, len(data))
    assert hot.counts_whole_read(sha, len(data))
    return b"".join(hot.keep(sha, len(data), chunks if chunks is not None else pieces(data)))


def served(hot: HotFiles, sha: str, size: int, start: int = 0, end: int | None = None) -> bytes | None:
    copy = hot.open(sha, size)
    return None if copy is None else b"".join(copy.chunks(start, size if end is None else end))


def test_the_nth_whole_read_is_kept_and_then_served(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path / "hot", 1 << 20, reads_to_keep=2)
    sha, data = blob(5000)
    assert served(hot, sha, len(data)) is None
    assert kept(hot, sha, data) == data
    assert sha in hot and hot.total_bytes == len(data)
    assert served(hot, sha, len(data)) == data
    mode = stat.S_IMODE(os.stat(tmp_path / "hot" / sha).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "hot").st_mode) & 0o077 == 0
    assert not hot.counts_whole_read(sha, len(data))  # cached: nothing more to keep


def test_bytes_that_do_not_hash_to_the_id_are_never_kept(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    sha, data = blob(3000)
    wrong = bytearray(data)
    wrong[1234] ^= 1
    assert kept(hot, sha, data, pieces(bytes(wrong))) == bytes(wrong)  # the read itself goes on
    assert sha not in hot and served(hot, sha, len(data)) is None
    assert os.listdir(tmp_path) == []
    short = data[:-1]
    assert kept(hot, sha, data, pieces(short)) == short
    assert sha not in hot and os.listdir(tmp_path) == []


def test_a_read_cut_short_leaves_no_copy_and_no_temporary_file(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    sha, data = blob(5000)
    assert hot.counts_whole_read(sha, len(data))
    stream = hot.keep(sha, len(data), pieces(data))
    next(stream)
    stream.close()  # the client went away
    assert sha not in hot and os.listdir(tmp_path) == []
    assert kept(hot, sha, data) == data and sha in hot  # and a later read may keep it


def test_least_recently_used_copies_leave_first_and_the_budget_holds(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 10_000, reads_to_keep=1)
    files = [blob(4000, seed) for seed in range(3)]
    kept(hot, *files[0])
    kept(hot, *files[1])
    assert served(hot, files[0][0], 4000) == files[0][1]  # used: now files[1] is the oldest
    kept(hot, *files[2])
    assert files[1][0] not in hot and not (tmp_path / files[1][0]).exists()
    assert files[0][0] in hot and files[2][0] in hot
    assert hot.total_bytes == 8000 <= hot.max_bytes
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == 8000


def test_files_over_the_budget_and_a_zero_budget_are_never_copied(tmp_path: Path) -> None:
    sha, data = blob(5000)
    assert not HotFiles(tmp_path / "a", 4999, reads_to_keep=1).counts_whole_read(sha, len(data))
    off = HotFiles(tmp_path / "b", 0, reads_to_keep=1)
    assert not off.enabled and not off.counts_whole_read(sha, len(data))
    assert not (tmp_path / "b").exists()


def test_a_truncated_copy_is_dropped_and_its_next_read_rewrites_it(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=3)
    sha, data = blob(5000)
    kept(hot, sha, data)
    with open(tmp_path / sha, "r+b") as f:
        f.truncate(4000)
    assert served(hot, sha, len(data)) is None
    assert sha not in hot and not (tmp_path / sha).exists()
    # The file was hot already: the read that falls back keeps it again, without 3 more reads.
    assert hot.counts_whole_read(sha, len(data))
    assert b"".join(hot.keep(sha, len(data), pieces(data))) == data
    assert served(hot, sha, len(data)) == data


def test_a_copy_changed_in_place_is_hashed_again_and_refused(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    sha, data = blob(5000)
    kept(hot, sha, data)
    path = tmp_path / sha
    before = path.stat().st_mtime_ns
    with open(path, "r+b") as f:  # same size, other bytes, a new mtime
        f.seek(100)
        f.write(b"\0" * 10)
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))
    assert served(hot, sha, len(data)) is None and not path.exists()


def test_copies_found_at_start_are_hashed_before_their_first_use(tmp_path: Path) -> None:
    good_sha, good = blob(3000, 1)
    bad_sha, bad = blob(3000, 2)
    first = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    kept(first, good_sha, good)
    kept(first, bad_sha, bad)
    path = tmp_path / bad_sha
    st_before = path.stat()
    with open(path, "r+b") as f:  # damage that keeps size and mtime: only a hash sees it
        f.write(b"\xff" * 8)
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    (tmp_path / f".{good_sha}.left-by-a-crash.tmp").write_bytes(b"partial")
    again = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)  # a restart
    assert again.total_bytes == 6000
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert served(again, good_sha, len(good)) == good
    assert served(again, bad_sha, len(bad)) is None and not path.exists()


def test_a_restart_over_budget_evicts_the_oldest(tmp_path: Path) -> None:
    first = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    files = [blob(4000, seed) for seed in range(3)]
    for i, (sha, data) in enumerate(files):
        kept(first, sha, data)
        os.utime(tmp_path / sha, ns=(i * 10**9, i * 10**9))
    smaller = HotFiles(tmp_path, 9000, reads_to_keep=1)
    assert [sha in smaller for sha, _ in files] == [False, True, True]


def test_retain_and_drop_delete_copies_of_files_no_longer_stored(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    (a, da), (b, db) = blob(100, 1), blob(100, 2)
    kept(hot, a, da)
    kept(hot, b, db)
    hot.retain(lambda shas: {s for s in shas if s == a})
    assert a in hot and b not in hot and not (tmp_path / b).exists()
    other = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)  # another process sharing the directory
    other.drop(a)
    assert not (tmp_path / a).exists()
    assert served(hot, a, len(da)) is None and a not in hot


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_ranges_of_a_copy_are_byte_exact(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([1, 7, CHUNK_BYTES - 1, CHUNK_BYTES + 3, 2 * CHUNK_BYTES + 11]))
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size))
    sha, content = blob(size, size)
    hot = HotFiles(tmp_path_factory.mktemp("hot"), 8 << 20, reads_to_keep=1)
    kept(hot, sha, content, pieces(content, 65536))
    assert served(hot, sha, size, start, end) == content[start:end]


def test_a_body_never_started_does_not_stop_a_later_read_from_keeping_the_copy(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    sha, data = blob(3000)
    assert hot.counts_whole_read(sha, len(data))
    abandoned = hot.keep(sha, len(data), pieces(data))  # the client left before the body started
    del abandoned
    assert kept(hot, sha, data) == data and sha in hot


def test_two_reads_keeping_the_same_file_write_one_copy(tmp_path: Path) -> None:
    hot = HotFiles(tmp_path, 1 << 20, reads_to_keep=1)
    sha, data = blob(3000)
    assert hot.counts_whole_read(sha, len(data)) and hot.counts_whole_read(sha, len(data))
    first, second = hot.keep(sha, len(data), pieces(data)), hot.keep(sha, len(data), pieces(data))
    head = next(first)
    assert b"".join(second) == data  # passes through: the first holds the claim
    assert head + b"".join(first) == data
    assert sha in hot and os.listdir(tmp_path) == [sha] and hot.total_bytes == len(data)
