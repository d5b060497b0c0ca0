"""One contract for every object store backend, plus what only one backend can show."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.core.errors import InternalError, InvalidInput, StoreError, TransientStoreError
from storage.objectstore import InvalidKey, LocalObjectStore, ObjectNotFound, ObjectStore
from storage.objectstore import s3 as s3_backend
from storage.objectstore.s3 import S3ObjectStore
from tests.fixtures_s3 import S3_TEST_PART_SIZE, S3_TEST_REGION

DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes, every byte value, no repeating period at the end
INVALID_KEYS = ["", "/a", "a/", "a//b", ".", "..", "a/../b", "./a", "a b", "ä", "a\\b", "a\x00"]
INVALID_KEYS += ["k" * 256, "k/" * 256 + "k"]  # a segment or the whole key too long
VALID_ODD_KEYS = [".a", "..a", "a..b", "-", "_/-/.x", "A-Z_0.9", "k" * 255, "m" * 255 + "/" + "k" * 255]


def big_chunks(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """`total` bytes of a pattern that differs at every offset mod 251, so misplaced parts show."""
    block = bytes(i % 251 for i in range(chunk + 251))
    for offset in range(0, total, chunk):
        yield block[offset % 251 : offset % 251 + min(chunk, total - offset)]


class TestContract:
    def test_put_if_absent_creates_once_and_never_overwrites(self, object_store: ObjectStore) -> None:
        assert object_store.put_if_absent("t/one", DATA) is True
        assert object_store.put_if_absent("t/one", b"other bytes") is False
        assert object_store.get("t/one") == DATA

    def test_put_overwrites(self, object_store: ObjectStore) -> None:
        object_store.put("k", b"first")
        object_store.put("k", b"second, longer")
        assert object_store.get("k") == b"second, longer"

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, None), (5, None), (0, 4), (3, 700), (0, len(DATA)), (1000, 5000), (len(DATA), None),
         (5000, None), (5000, 6000), (7, 7), (len(DATA), len(DATA))],
    )  # fmt: skip
    def test_get_range(self, object_store: ObjectStore, start: int, end: int | None) -> None:
        object_store.put("r", DATA)
        assert object_store.get("r", start, end) == DATA[start:end]
        assert b"".join(object_store.iter_range("r", start, end, chunk_bytes=100)) == DATA[start:end]

    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(start=st.integers(0, 1100), length=st.none() | st.integers(0, 1100), chunk=st.integers(1, 300))
    def test_any_range_matches_slicing(
        self, object_store: ObjectStore, start: int, length: int | None, chunk: int
    ) -> None:
        object_store.put_if_absent("h", DATA)
        end = None if length is None else start + length
        assert object_store.get("h", start, end) == DATA[start:end]
        chunks = list(object_store.iter_range("h", start, end, chunk_bytes=chunk))
        assert b"".join(chunks) == DATA[start:end]
        assert all(0 < len(c) <= chunk for c in chunks)

    def test_empty_object(self, object_store: ObjectStore) -> None:
        assert object_store.put_if_absent("e", b"") is True
        assert object_store.get("e") == b""
        assert object_store.get("e", 0, 10) == b""
        assert list(object_store.iter_range("e")) == []
        info = object_store.head("e")
        assert info is not None and info.size == 0

    def test_bad_ranges_are_internal_errors(self, object_store: ObjectStore) -> None:
        object_store.put("r", DATA)
        for start, end in [(-1, None), (5, 4)]:
            with pytest.raises(InternalError):
                object_store.get("r", start, end)
            with pytest.raises(InternalError):
                object_store.iter_range("r", start, end)

    def test_missing_object(self, object_store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound) as raised:
            object_store.get("no/such")
        assert raised.value.status == 404
        with pytest.raises(ObjectNotFound):
            object_store.get("no/such", 3, 9)
        with pytest.raises(ObjectNotFound):
            object_store.iter_range("no/such")  # at the call, before any iteration
        assert object_store.head("no/such") is None
        assert object_store.exists("no/such") is False

    def test_head(self, object_store: ObjectStore) -> None:
        before = datetime.now(UTC) - timedelta(seconds=5)
        object_store.put("dir/obj", DATA)
        info = object_store.head("dir/obj")
        assert info is not None
        assert (info.key, info.size) == ("dir/obj", len(DATA))
        assert info.last_modified.utcoffset() == timedelta(0)
        assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)
        assert object_store.head("dir") is None  # a key's directory is not an object

    def test_delete_is_idempotent(self, object_store: ObjectStore) -> None:
        object_store.put("d/x", DATA)
        object_store.delete("d/x")
        object_store.delete("d/x")
        object_store.delete("never/there")
        assert object_store.head("d/x") is None
        assert list(object_store.list()) == []
        with pytest.raises(ObjectNotFound):
            object_store.get("d/x")
        assert object_store.put_if_absent("d/x", DATA) is True

    def test_list_is_sorted_and_filtered_by_prefix(self, object_store: ObjectStore) -> None:
        # '-' and '.' sort before '/', digits and letters after: a walk of directories must respect that.
        keys = ["b", "a0", "a/x", "a.b", "a-b", "ab/c/d", "ab/c.e", "ab/cd", "a/y/z", "Z"]
        for i, key in enumerate(keys):
            object_store.put(key, b"x" * i)
        listed = list(object_store.list())
        assert [info.key for info in listed] == sorted(keys)
        assert {info.key: info.size for info in listed} == {key: i for i, key in enumerate(keys)}

        def listed_keys(prefix: str) -> list[str]:
            return [info.key for info in object_store.list(prefix)]

        for prefix in ["a", "a/", "a/y", "ab/c", "ab/c/", "ab/c.", "zz", "a/y/z", "a/y/z/"]:
            assert listed_keys(prefix) == sorted(k for k in keys if k.startswith(prefix)), prefix

    def test_list_pages(self, object_store: ObjectStore) -> None:
        if isinstance(object_store, S3ObjectStore):
            object_store.list_page_size = 7
        keys = [f"p/{i:03d}" for i in range(30)]
        for key in reversed(keys):
            object_store.put(key, b"")
        assert [info.key for info in object_store.list("p/")] == keys
        assert [info.key for info in object_store.list("p/01")] == keys[10:20]

    @pytest.mark.parametrize("if_absent", [False, True])
    def test_put_stream_small(self, object_store: ObjectStore, if_absent: bool) -> None:
        chunks = [DATA[i : i + 100] for i in range(0, len(DATA), 100)]
        assert object_store.put_stream("s", iter(chunks), if_absent=if_absent) == len(DATA)
        assert object_store.get("s") == DATA
        assert object_store.put_stream("empty", iter([]), if_absent=if_absent) == 0
        assert object_store.get("empty") == b""

    def test_put_stream_in_parts(self, object_store: ObjectStore) -> None:
        total = 2 * S3_TEST_PART_SIZE + 1234567  # three parts on S3, the last one short
        expected = b"".join(big_chunks(total))
        assert object_store.put_stream("big", big_chunks(total)) == total
        assert object_store.get("big") == expected
        assert (
            object_store.get("big", S3_TEST_PART_SIZE - 10, S3_TEST_PART_SIZE + 10)
            == expected[S3_TEST_PART_SIZE - 10 : S3_TEST_PART_SIZE + 10]
        )
        # An existing object is kept; the stream is still read to the end.
        read: list[int] = []
        other = (read.append(len(c)) or c[::-1] for c in big_chunks(total))
        assert object_store.put_stream("big", other, if_absent=True) == total
        assert sum(read) == total
        assert object_store.get("big") == expected

    @pytest.mark.parametrize("total", [1000, 2 * S3_TEST_PART_SIZE + 5])
    def test_put_stream_if_absent_loses_to_a_writer_that_finishes_first(
        self, object_store: ObjectStore, total: int
    ) -> None:
        def chunks() -> Iterator[bytes]:
            for i, chunk in enumerate(big_chunks(total, chunk=1000 if total == 1000 else 1 << 20)):
                if i == 0:
                    object_store.put("contested", b"the other writer's")  # after our existence check
                yield chunk

        assert object_store.put_stream("contested", chunks(), if_absent=True) == total
        assert object_store.get("contested") == b"the other writer's"
        if isinstance(object_store, S3ObjectStore):
            uploads = object_store._client.list_multipart_uploads(Bucket=object_store.bucket)
            assert uploads.get("Uploads", []) == []

    @pytest.mark.parametrize("fail_after", [0, 3, 7])
    def test_failed_put_stream_leaves_nothing_visible(self, object_store: ObjectStore, fail_after: int) -> None:
        class SourceBroke(Exception):
            pass

        def chunks() -> Iterator[bytes]:
            for i, chunk in enumerate(big_chunks(2 * S3_TEST_PART_SIZE)):
                if i == fail_after:
                    raise SourceBroke
                yield chunk

        with pytest.raises(SourceBroke):
            object_store.put_stream("half", chunks())
        assert object_store.head("half") is None
        assert list(object_store.list()) == []

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_are_refused(self, object_store: ObjectStore, key: str) -> None:
        calls = [
            lambda: object_store.put(key, b"x"),
            lambda: object_store.put_if_absent(key, b"x"),
            lambda: object_store.put_stream(key, iter([b"x"])),
            lambda: object_store.get(key),
            lambda: object_store.iter_range(key),
            lambda: object_store.head(key),
            lambda: object_store.delete(key),
        ]
        for call in calls:
            with pytest.raises(InvalidKey) as raised:
                call()
            assert raised.value.status == 400
        assert list(object_store.list()) == []

    @pytest.mark.parametrize("prefix", ["/a", "a b", "a//", "../", "a/../b", "ä"])
    def test_invalid_list_prefixes_are_refused(self, object_store: ObjectStore, prefix: str) -> None:
        with pytest.raises(InvalidKey):
            object_store.list(prefix)

    def test_unusual_valid_keys(self, object_store: ObjectStore) -> None:
        for key in VALID_ODD_KEYS:
            object_store.put(key, key.encode())
        for key in VALID_ODD_KEYS:
            assert object_store.get(key) == key.encode()
        assert [info.key for info in object_store.list()] == sorted(VALID_ODD_KEYS)
        assert [info.key for info in object_store.list(".")] == ["..a", ".a"]

    def test_concurrent_put_if_absent_has_one_winner(self, object_store: ObjectStore) -> None:
        writers = 8
        data = DATA * 256
        for round_ in range(3):
            start = threading.Barrier(writers)

            def write(_: int, key: str = f"race/{round_}", start: threading.Barrier = start) -> bool:
                start.wait()
                return object_store.put_if_absent(key, data)

            with ThreadPoolExecutor(writers) as pool:
                results = list(pool.map(write, range(writers)))
            assert results.count(True) == 1, results
            assert object_store.get(f"race/{round_}") == data


# Each racer is a fresh interpreter that imports only the local backend, so it starts in ~0.1 s.
_RACER = """
import sys, time
from storage.objectstore.local import LocalObjectStore
root, start_at = sys.argv[1], float(sys.argv[2])
store = LocalObjectStore(root)
data = bytes(range(256)) * 4096
while time.time() < start_at:
    pass
print(store.put_if_absent("race", data))
"""


class TestLocal:
    def test_processes_race_with_one_winner(self, tmp_path: Path) -> None:
        root = str(tmp_path / "store")
        start_at = time.time() + 1.0
        racers = [
            subprocess.Popen([sys.executable, "-c", _RACER, root, str(start_at)], stdout=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        results = [racer.communicate(timeout=30)[0].strip() for racer in racers]
        assert all(racer.returncode == 0 for racer in racers)
        assert sorted(results) == ["False", "False", "False", "True"]
        assert LocalObjectStore(root).get("race") == bytes(range(256)) * 4096
        assert list((tmp_path / "store" / "tmp").iterdir()) == []

    def test_writes_leave_no_temp_files(self, local_store: LocalObjectStore) -> None:
        local_store.put("a", DATA)
        local_store.put_if_absent("a", DATA)
        local_store.put_stream("b", iter([DATA]), if_absent=True)
        with pytest.raises(ZeroDivisionError):
            local_store.put_stream("c", (1 // 0 for _ in range(1)))
        assert list((local_store.root / "tmp").iterdir()) == []
        assert sorted(p.name for p in (local_store.root / "objects").iterdir()) == ["a", "b"]

    def test_stale_temp_files_are_removed_and_never_listed(self, local_store: LocalObjectStore) -> None:
        stale = local_store.root / "tmp" / "abandoned.tmp"
        fresh = local_store.root / "tmp" / "in-progress.tmp"
        stale.write_bytes(b"half an object")
        fresh.write_bytes(b"being written")
        hour_ago = time.time() - 3600
        os.utime(stale, (hour_ago, hour_ago))
        assert list(local_store.list()) == []
        assert local_store.remove_stale_temp_files(timedelta(minutes=10)) == 1
        assert not stale.exists() and fresh.exists()

    def test_key_and_its_directory_cannot_both_be_objects(self, local_store: LocalObjectStore) -> None:
        local_store.put("a/b", b"x")
        with pytest.raises(InvalidKey):
            local_store.put_if_absent("a", b"y")
        with pytest.raises(InvalidKey):
            local_store.put("a", b"y")
        local_store.put("c", b"x")
        with pytest.raises(InvalidKey):
            local_store.put("c/d", b"y")
        with pytest.raises(ObjectNotFound):
            local_store.get("a")
        assert [info.key for info in local_store.list()] == ["a/b", "c"]


class TestS3:
    def test_large_objects_go_up_in_parts_and_aborts_leave_no_upload(self, s3_store: S3ObjectStore) -> None:
        total = 2 * S3_TEST_PART_SIZE + 1
        s3_store.put_stream("big", big_chunks(total))
        etag = s3_store._client.head_object(Bucket=s3_store.bucket, Key="deltahub/big")["ETag"]
        assert etag.strip('"').endswith("-3")  # a multipart ETag counts its parts

        def broken() -> Iterator[bytes]:
            yield from big_chunks(S3_TEST_PART_SIZE + 1)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            s3_store.put_stream("broken", broken())
        uploads = s3_store._client.list_multipart_uploads(Bucket=s3_store.bucket)
        assert uploads.get("Uploads", []) == []

    def test_listing_past_a_thousand_keys(self, s3_store: S3ObjectStore) -> None:
        keys = [f"many/{i:04d}" for i in range(1001)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: s3_store.put(key, b""), keys))
        assert [info.key for info in s3_store.list("many/")] == keys

    def test_prefix_isolates_stores_on_one_bucket(self, s3_store: S3ObjectStore, s3_endpoint: str) -> None:
        other = S3ObjectStore(
            s3_store.bucket, prefix="/other/", endpoint_url=s3_endpoint, region=S3_TEST_REGION,
            access_key_id="testing", secret_access_key="testing",
        )  # fmt: skip
        unprefixed = S3ObjectStore(
            s3_store.bucket, endpoint_url=s3_endpoint, region=S3_TEST_REGION,
            access_key_id="testing", secret_access_key="testing",
        )  # fmt: skip
        s3_store.put("k", b"mine")
        assert other.put_if_absent("k", b"theirs") is True
        assert s3_store.get("k") == b"mine" and other.get("k") == b"theirs"
        assert [info.key for info in s3_store.list()] == ["k"]
        assert [info.key for info in unprefixed.list()] == ["deltahub/k", "other/k"]

    @pytest.mark.parametrize(
        ("code", "status", "expected"),
        [
            ("SlowDown", 503, TransientStoreError),
            ("InternalError", 500, TransientStoreError),
            ("SomethingNew", 502, TransientStoreError),
            ("ConditionalRequestConflict", 409, TransientStoreError),
            ("AccessDenied", 403, StoreError),
            ("NoSuchBucket", 404, StoreError),
            ("NoSuchKey", 404, ObjectNotFound),
        ],
    )
    def test_vendor_errors_map_to_ours(self, code: str, status: int, expected: type[Exception]) -> None:
        vendor = ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "GetObject",
        )
        error = s3_backend._client_error(vendor, "k")
        assert type(error) is expected

    def test_part_size_below_the_s3_minimum_is_refused(self) -> None:
        with pytest.raises(InvalidInput):
            S3ObjectStore("bucket", part_size=(5 << 20) - 1)

    def test_missing_bucket_is_a_store_error(self, s3_endpoint: str) -> None:
        store = S3ObjectStore(
            "no-such-bucket-here", endpoint_url=s3_endpoint, region=S3_TEST_REGION,
            access_key_id="testing", secret_access_key="testing",
        )  # fmt: skip
        for call in (lambda: store.get("k"), lambda: store.put("k", b"x"), lambda: list(store.list())):
            with pytest.raises(StoreError) as raised:
                call()
            assert not isinstance(raised.value, TransientStoreError | ObjectNotFound)
            assert raised.value.status == 503
            assert "NoSuchBucket" in raised.value.message

    def test_unreachable_server_is_transient(self) -> None:
        with closed_port() as port:
            store = S3ObjectStore(
                "bucket", endpoint_url=f"http://127.0.0.1:{port}", region=S3_TEST_REGION,
                access_key_id="testing", secret_access_key="testing", connect_timeout=0.5, max_attempts=1,
            )  # fmt: skip
            began = time.monotonic()
            for call in (
                lambda: store.get("k"),
                lambda: store.put_if_absent("k", b"x"),
                lambda: store.head("k"),
            ):
                with pytest.raises(TransientStoreError) as raised:
                    call()
                assert raised.value.status == 503
            assert time.monotonic() - began < 10


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, so nobody else takes it, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
