"""The reader rebuilds files from frames; data written by format v1 (and its catalog) still reads back.

`v1_catalog` builds, at catalog revision 0001 and with raw SQL as v1 wrote it, a store holding only v1
frames (the committed golden ones, and v1-written cast deltas), then migrates the catalog to head and
reads every file back through the real Reader, whole and in ranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.app.reader import FrameCache, Reader
from storage.catalog.db import make_engine, session_factory, upgrade
from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES
from storage.core.errors import FileNotStored, IntegrityError
from storage.core.frames import read_frame_header
from storage.core.packs import PackBuilder
from storage.objectstore import LocalObjectStore, ObjectStore
from tests.storage.core.golden.make_v2 import cast_recipe_bytes
from tests.storage.core.golden.v1_writer import encode_frame_v1

GOLDEN = Path(__file__).parents[1] / "core" / "golden"


def _manifest(directory: str) -> dict[str, dict[str, Any]]:
    frames = json.loads((GOLDEN / directory / "manifest.json").read_text())["frames"]
    return {entry["file"]: entry for entry in frames}


@dataclass
class Tensor:
    id: str
    dtype: str
    raw: bytes
    blob: bytes
    base: Tensor | None = None
    codec: str = "plain"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain_v1(raw: bytes, dtype: str) -> Tensor:
    codec = get_codec("plain", {"skip": 1 if DTYPES[dtype].kind == "float" else 0, "level": None})
    return Tensor(_sha(raw), dtype, raw, encode_frame_v1(codec, raw, DTYPES[dtype]))


def _golden(directory: str, name: str, base: Tensor | None = None) -> Tensor:
    entry = _manifest(directory)[name]
    raw = cast_recipe_bytes(entry["input"])
    return Tensor(_sha(raw), entry["dtype"], raw, (GOLDEN / directory / name).read_bytes(), base, entry["codec"])


def _v1_tensors() -> list[Tensor]:
    """Bases first: plain v1 frames of the golden bases, then the golden v1 deltas against them."""
    v1, cast = _manifest("v1"), _manifest("v1-cast")
    out = [_golden("v1", "00-plain-bf16.frame"), _golden("v1", "10-plain-bf16.frame")]  # 10: an empty tensor
    for directory, name in [("v1", "11-bitx-bf16.frame"), ("v1", "16-diff-bf16.frame"),
                            ("v1-cast", "00-bitx-bf16-from-f32.frame"), ("v1-cast", "02-diff-bf16-from-f32.frame"),
                            ("v1-cast", "04-diff-f16-from-f32.frame")]:  # fmt: skip
        entry = (v1 if directory == "v1" else cast)[name]
        base = _plain_v1(cast_recipe_bytes(entry["base"]), entry.get("base_dtype") or entry["dtype"])
        out += [base, _golden(directory, name, base)]
    return out


@dataclass
class Catalog:
    reader: Reader
    files: dict[str, bytes]
    store: ObjectStore
    url: str


def build_v1_catalog(url: str, store: ObjectStore) -> Catalog:
    upgrade(url, "0001_initial")
    tensors = _v1_tensors()
    assert all(read_frame_header(t.blob).version == 1 for t in tensors)
    packer = PackBuilder(target_bytes=1 << 30, solo_bytes=1 << 30)
    tickets = {t.id: packer.add(t.blob) for t in tensors}
    packer.seal()
    (pack,) = packer.take_sealed()
    store.put_if_absent(pack.key, pack.data)
    # Two files: every delta tensor back to back, and the bases on their own.
    groups = [[t for t in tensors if t.base is not None] + tensors[:2], [t for t in tensors if t.base is None]]
    files = {_sha(b"".join(t.raw for t in group)): b"".join(t.raw for t in group) for group in groups}
    when = datetime(2026, 11, 30, tzinfo=UTC).replace(tzinfo=None)
    engine = make_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("INSERT INTO store_objects (key, size, kind, created_at) VALUES (:k, :s, 'pack', :w)"),
                   {"k": pack.key, "s": len(pack.data), "w": when})  # fmt: skip
        for t in tensors:
            placed = packer.placement(tickets[t.id])
            db.execute(
                sa.text("INSERT INTO tensors (id, dtype, shape, nbytes, codec, codec_config, base_tensor_id, "
                        "chain_depth, created_at) "
                        "VALUES (:id, :dtype, :shape, :n, :codec, :config, :base, :depth, :w)"),
                {"id": t.id, "dtype": t.dtype, "shape": json.dumps([len(t.raw) // DTYPES[t.dtype].itemsize]),
                 "n": len(t.raw), "codec": t.codec, "config": "{}", "base": t.base.id if t.base else None,
                 "depth": 1 if t.base else 0, "w": when},
            )  # fmt: skip
            db.execute(
                sa.text("INSERT INTO frames (tensor_id, seq, raw_offset, raw_length, object_key, object_offset, "
                        "object_length, checksum) VALUES (:t, 0, 0, :n, :k, :o, :l, :c)"),
                {"t": t.id, "n": len(t.raw), "k": placed.key, "o": placed.offset, "l": placed.length,
                 "c": read_frame_header(t.blob).checksum},
            )  # fmt: skip
        for group in groups:
            data = b"".join(t.raw for t in group)
            db.execute(sa.text("INSERT INTO file_objects (sha256, size, kind, state, created_at) "
                               "VALUES (:s, :n, 'blob', 'stored', :w)"), {"s": _sha(data), "n": len(data), "w": when})
            offset = 0
            for seq, t in enumerate(group):
                db.execute(sa.text('INSERT INTO file_segments (file_sha256, seq, "offset", length, tensor_id, name) '
                                   "VALUES (:f, :q, :o, :n, :t, :name)"),
                           {"f": _sha(data), "q": seq, "o": offset, "n": len(t.raw), "t": t.id, "name": f"t{seq}"})
                offset += len(t.raw)  # fmt: skip
    engine.dispose()
    upgrade(url)  # 0002_formats and anything after: the data must not notice
    return Catalog(Reader(store, session_factory(make_engine(url))), files, store, url)


@pytest.fixture
def v1_catalog(database_url: str, tmp_path: Path) -> Catalog:
    return build_v1_catalog(database_url, LocalObjectStore(tmp_path / "objects"))


def test_v1_data_and_catalog_read_back_byte_exact_after_migrating(v1_catalog: Catalog) -> None:
    for sha, data in v1_catalog.files.items():
        assert b"".join(v1_catalog.reader.read_file(sha)) == data
        for start, end in [(0, 1), (7, 5000), (len(data) - 3, len(data)), (len(data) // 2, len(data) // 2)]:
            assert b"".join(v1_catalog.reader.read_file(sha, start, end)) == data[start:end]


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_any_range_of_a_v1_file_reads_back(data: st.DataObject) -> None:
    catalog = _shared_catalog()
    sha, content = data.draw(st.sampled_from(sorted(catalog.files.items())))
    start = data.draw(st.integers(0, len(content)))
    end = data.draw(st.integers(start, len(content)))
    assert b"".join(catalog.reader.read_file(sha, start, end)) == content[start:end]


_SHARED: list[Catalog] = []


def _shared_catalog() -> Catalog:
    if not _SHARED:
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="deltahub-v1-catalog-"))
        _SHARED.append(build_v1_catalog(f"sqlite:///{directory / 'c.sqlite3'}", LocalObjectStore(directory / "o")))
    return _SHARED[0]


def test_a_damaged_frame_is_never_served(v1_catalog: Catalog) -> None:
    sha = next(iter(v1_catalog.files))
    (key,) = [info.key for info in v1_catalog.store.list("packs/")]
    data = bytearray(v1_catalog.store.get(key))
    data[-3] ^= 0x40  # inside the last frame's payload
    v1_catalog.store.put(key, bytes(data))
    with pytest.raises(IntegrityError):
        b"".join(v1_catalog.reader.read_file(sha))


def test_an_unknown_file_is_not_stored(v1_catalog: Catalog) -> None:
    with pytest.raises(FileNotStored):
        v1_catalog.reader.plan("0" * 64)


def test_frame_cache_evicts_least_recently_used_and_skips_oversized() -> None:
    cache = FrameCache(10)
    cache.put(("a", 0, 4), b"aaaa")
    cache.put(("b", 0, 4), b"bbbb")
    assert cache.get(("a", 0, 4)) == b"aaaa"  # a is now the most recent
    cache.put(("c", 0, 4), b"cccc")
    assert cache.get(("b", 0, 4)) is None and cache.get(("a", 0, 4)) == b"aaaa"
    cache.put(("big", 0, 11), b"x" * 11)
    assert cache.get(("big", 0, 11)) is None
