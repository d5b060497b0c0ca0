"""PyTorch zip checkpoints: recognised by structure, cut into member spans that rebuild every byte."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.core.formats import registry
from storage.core.formats import torchpickle as tp
from storage.core.formats import torchzip as tz
from storage.core.formats.base import FileLayout
from storage.core.segments import Segment
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all

LIMIT = 1 << 20


def checkpoint(members: dict[str, bytes], *, archive: str = "archive", extra_first: bytes = b"") -> bytes:
    """A torch.save-shaped zip (stored members, data.pkl first) without needing torch."""
    buffer = io.BytesIO()
    buffer.write(extra_first)
    with zipfile.ZipFile(buffer, "a" if extra_first else "w", zipfile.ZIP_STORED) as archive_file:
        archive_file.writestr(f"{archive}/data.pkl", b"\x80\x02}q\x00.")
        for name, data in members.items():
            archive_file.writestr(f"{archive}/{name}", data)
    return buffer.getvalue()


def layout_of(data: bytes, *, limit: int = LIMIT) -> FileLayout:
    return tz.TorchZipFormat().layout(lambda a, b: data[a:b], len(data), max_header_bytes=limit)


def rebuilt(data: bytes, segments: tuple[Segment, ...]) -> bytes:
    return b"".join(data[s.offset : s.end] for s in segments)


def detected(data: bytes) -> str:
    return registry.detect_format(lambda a, b: data[a:b], len(data), max_header_bytes=LIMIT).format_id


def test_a_real_torch_save_checkpoint_is_recognised_and_tiled() -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(100, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)}, buffer)
    data = buffer.getvalue()
    assert detected(data) == "torchzip"
    layout = layout_of(data)
    found = [(t.name, t.dtype.name, t.shape) for t in layout.tensors or ()]
    assert found == [("w", "F32", (100,)), ("b", "BF16", (3,))]
    assert layout.opaque_because is None
    assert rebuilt(data, layout.segments) == data
    # The pickle's and each storage's data bytes, and the opaque runs before, between and after them.
    assert len(layout.segments) == 2 * (1 + 2) + 1


def saved(obj: object) -> bytes:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rezip(data: bytes, replace: dict[str, bytes | None] | None = None, *, deflate: str = "") -> bytes:
    """The checkpoint's members written again by Python's zipfile, some replaced (None: dropped)."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            body = replace.get(name.split("/", 1)[1], source.read(name))
            if body is not None:
                method = zipfile.ZIP_DEFLATED if name.endswith(deflate) and deflate else zipfile.ZIP_STORED
                target.writestr(name, body, compress_type=method)
    return out.getvalue()


def storage_bytes(tensor: object) -> bytes:
    return bytes(tensor.untyped_storage())  # type: ignore[attr-defined]


def test_a_state_dict_is_cut_into_one_named_tensor_per_storage() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    state = model.state_dict()
    data = saved(state)
    layout = layout_of(data)
    tensors = {t.name: t for t in layout.tensors or ()}
    assert list(tensors) == list(state)
    for name, value in state.items():
        entry = tensors[name]
        assert (entry.dtype.name, entry.shape) == ("F32", tuple(value.shape))
        assert data[entry.offset : entry.offset + entry.nbytes] == storage_bytes(value)
    named = [s for s in layout.segments if s.name is not None]
    assert [(s.name, s.offset, s.length) for s in named] == [(t.name, t.offset, t.nbytes) for t in tensors.values()]
    assert rebuilt(data, layout.segments) == data


def test_a_training_checkpoint_names_weights_and_optimizer_state_by_their_paths() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(6, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(3, 6)).sum().backward()
    optimizer.step()
    data = saved({"epoch": 7, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                  "scheduler": {"last_epoch": 7, "base_lrs": [0.001]}, "loss": 0.5})  # fmt: skip
    layout = layout_of(data)
    names = [t.name for t in layout.tensors or ()]
    assert names[:2] == ["model_state_dict.weight", "model_state_dict.bias"]
    assert "optimizer_state_dict.state.0.exp_avg" in names and "optimizer_state_dict.state.1.step" in names
    assert rebuilt(data, layout.segments) == data


def test_shared_storages_and_views_with_offsets_are_one_segment_of_storage_bytes() -> None:
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32)
    only_views = torch.arange(10, dtype=torch.int64)
    data = saved({"head": base[4:10], "grid": base.view(4, 6), "t": base.view(4, 6).t(), "a": only_views[2:],
                  "b": only_views[:3]})  # fmt: skip
    layout = layout_of(data)
    tensors = {t.name: t for t in layout.tensors or ()}
    # Covered whole and contiguously by "grid": its name and shape; only views: the first one's name, 1-D.
    assert (tensors["grid"].shape, tensors["grid"].nbytes) == ((4, 6), 96)
    assert (tensors["a"].dtype.name, tensors["a"].shape) == ("I64", (10,))
    assert set(tensors) == {"grid", "a"}
    assert data[tensors["grid"].offset : tensors["grid"].offset + 96] == storage_bytes(base)
    assert rebuilt(data, layout.segments) == data


def test_a_non_contiguous_tensor_covering_its_storage_is_kept_one_dimensional() -> None:
    torch = pytest.importorskip("torch")
    data = saved({"t": torch.arange(12, dtype=torch.float16).view(3, 4).t()})
    (entry,) = layout_of(data).tensors or ()
    assert (entry.name, entry.dtype.name, entry.shape) == ("t", "F16", (12,))


def _members_and_ends(data: bytes) -> tuple[list[tz.Member], dict[bytes, int]]:
    _, members, ends = tz._members(lambda a, b: data[a:b], len(data), max_header_bytes=LIMIT)
    return members, ends


def test_a_pickle_larger_than_max_header_bytes_is_not_read() -> None:
    torch = pytest.importorskip("torch")
    data = saved({"w" * 3000: torch.ones(2)})  # a pickle larger than the central directory
    limit = len(zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")) - 1
    with pytest.raises(tz.StoragesUnread, match=r"^storages kept as opaque bytes: data\.pkl of"):
        tz.read_storages(lambda a, b: data[a:b], *_members_and_ends(data), max_header_bytes=limit, max_tensors=100)
    layout = layout_of(data, limit=limit)
    assert layout.tensors is None and rebuilt(data, layout.segments) == data


def test_messages_name_what_is_wrong() -> None:
    with pytest.raises(tz.StorageSizeMismatch) as size:
        layout_of(rezip(_SMALL, {"data/0": b"\0" * 12}))
    assert size.value.message == (
        "storage '0' declares 4 elements of float32 (16 bytes), but its member holds 12"
    )
    with pytest.raises(tz.StorageMissing) as missing:
        layout_of(rezip(_SMALL, {"data/0": None}))
    assert missing.value.message == "the pickle declares storage '0', but the archive has no member 'archive/data/0'"
    with pytest.raises(tp.ForbiddenGlobal) as forbidden:
        tp.read_checkpoint(b"\x80\x02cos\nsystem\n.", max_tensors=1)
    assert forbidden.value.message == "global 'os.system' at byte 2 is not one a checkpoint of tensors needs"


_TORCH = pytest.importorskip("torch")
_REAL = saved({"w": _TORCH.arange(64.0).view(8, 8), "v": {"b": _TORCH.ones(3)}})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_REAL) - 1), st.integers(1, 255))
def test_a_damaged_real_checkpoint_is_refused_with_its_error_or_tiles(position: int, flip: int) -> None:
    """A flipped byte anywhere (pickle, local headers, storages, directory): a TorchZipError, or a layout
    that covers every byte; no other exception escapes."""
    data = bytearray(_REAL)
    data[position] ^= flip
    try:
        layout = layout_of(bytes(data))
    except tz.TorchZipError:
        return
    assert rebuilt(bytes(data), layout.segments) == bytes(data)


def _all_dtypes() -> list[str]:
    torch = pytest.importorskip("torch")
    names = {}
    for name in sorted(n for n, v in vars(torch).items() if isinstance(v, torch.dtype)):
        dtype = getattr(torch, name)
        try:
            saved({"x": torch.zeros(48, dtype=torch.uint8).view(dtype)})
        except Exception:  # dtypes torch itself cannot save (int1..7, quantized without a quantizer)
            continue
        names[str(dtype)] = str(dtype).removeprefix("torch.")  # one name per dtype (float32, not also float)
    return sorted(names.values())


@pytest.mark.parametrize("dtype_name", _all_dtypes())
def test_every_dtype_torch_can_save_rebuilds_and_is_a_tensor_where_deltahub_codes_it(dtype_name: str) -> None:
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    value = torch.arange(96, dtype=torch.uint8).view(dtype).reshape(2, -1)
    data = saved({"x": value, "empty": torch.zeros(0, 32, dtype=torch.uint8).view(dtype)})
    layout = layout_of(data)
    assert rebuilt(data, layout.segments) == data
    storage = [s for s in layout.segments if data[s.offset : s.end] == storage_bytes(value)]
    ours = tz.TORCH_DTYPES.get(str(dtype).removeprefix("torch."))
    if ours is None:  # kept as its own opaque span: deduplicated, never coded as numbers
        assert storage and all(s.name is None and s.dtype.name == "U8" for s in storage)
        assert layout.tensors == ()
    else:
        assert [(t.name, t.dtype.name, t.shape) for t in layout.tensors or ()] == [
            ("x", ours, tuple(value.shape)), ("empty", ours, (0, 32 // dtype.itemsize))
        ]


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["float32", "float16", "bfloat16", "int8", "bool", "complex64", "float64", "uint16"]),
            st.lists(st.integers(0, 5), max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_any_saved_tensors_rebuild_exactly_with_their_storage_bytes(specs: list[tuple[str, list[int], bool]]) -> None:
    torch = pytest.importorskip("torch")
    state = {}
    for i, (dtype_name, shape, transpose) in enumerate(specs):
        count = 1
        for d in shape:
            count *= d
        dtype = getattr(torch, dtype_name)
        value = torch.arange(count * dtype.itemsize, dtype=torch.uint8).view(dtype).reshape(shape)
        state[f"t{i}"] = value.t() if transpose and value.dim() == 2 else value
    data = saved(state)
    layout = layout_of(data)
    assert rebuilt(data, layout.segments) == data
    entries = {t.name: t for t in layout.tensors or ()}
    assert set(entries) == set(state)
    for name, value in state.items():
        entry = entries[name]
        assert data[entry.offset : entry.offset + entry.nbytes] == storage_bytes(value)


_SMALL = saved({"w": pytest.importorskip("torch").ones(4)})
_NUMEL = b"K\x04t"  # the persistent id's numel, 4, then TUPLE
_PICKLE = zipfile.ZipFile(io.BytesIO(_SMALL)).read("archive/data.pkl")


STORAGE_RULES = [
    ("storage member missing", rezip(_SMALL, {"data/0": None}), tz.StorageMissing),
    ("storage size mismatch", rezip(_SMALL, {"data/0": b"\0" * 12}), tz.StorageSizeMismatch),
    ("tensor outside its storage", rezip(_SMALL, {"data/0": b"\0" * 8, "data.pkl": _PICKLE.replace(_NUMEL, b"K\x02t")}),
     tz.TensorOutsideStorage),
]  # fmt: skip


def _bad_local_header(data: bytes, member: str) -> bytes:
    offset = next(i.header_offset for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename.endswith(member))
    return data[:offset] + b"PK\x07\x07" + data[offset + 4 :]


STORAGE_RULES.append(("storage local header", _bad_local_header(_SMALL, "data/0"), tz.LocalHeaderMismatch))


@pytest.mark.parametrize(("data", "error"), [r[1:] for r in STORAGE_RULES], ids=[r[0] for r in STORAGE_RULES])
def test_storage_bytes_that_contradict_the_pickle_have_their_own_error_and_stay_a_blob(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        layout_of(data)
    assert issubclass(error, tz.TorchZipError)
    assert detected(data) == "blob"


def _two_pickles() -> bytes:
    out = io.BytesIO(_SMALL)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("other/data.pkl", _PICKLE)
    return out.getvalue()


UNREAD = [
    ("forbidden global", rezip(_SMALL, {"data.pkl": b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R."})),
    ("truncated pickle", rezip(_SMALL, {"data.pkl": _PICKLE[:-5]})),
    ("compressed storage", rezip(_SMALL, deflate="data/0")),
    ("big-endian storages", rezip(_SMALL, {"byteorder": b"big"})),
    ("two pickles", _two_pickles()),
]  # fmt: skip


@pytest.mark.parametrize("data", [u[1] for u in UNREAD], ids=[u[0] for u in UNREAD])
def test_a_checkpoint_the_reader_does_not_follow_stays_member_spans(data: bytes) -> None:
    with pytest.raises((tp.PickleError, tz.StoragesUnread)) as refused:
        tz.read_storages(lambda a, b: data[a:b], *_members_and_ends(data), max_header_bytes=LIMIT, max_tensors=100)
    layout = layout_of(data)
    assert layout.opaque_because == refused.value.message  # what ingest logs for the operator
    assert layout.tensors is None and all(s.name is None and s.dtype.name == "U8" for s in layout.segments)
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert [s.offset for s in layout.segments][:-1] == [i.header_offset for i in infos]
    assert rebuilt(data, layout.segments) == data
    assert detected(data) == "torchzip"


def member_spans(data: bytes) -> FileLayout:
    return tz.member_spans(lambda a, b: data[a:b], len(data), max_header_bytes=LIMIT)


def test_unreferenced_members_stay_in_the_opaque_runs() -> None:
    data = checkpoint({"data/0": b"\1" * 1000, "data/1": b"\2" * 10, "version": b"3\n"})
    layout = layout_of(data)  # the pickle, an empty dict, declares no storage
    assert layout.tensors == () and [s.name for s in layout.segments] == [None] * 3
    assert rebuilt(data, layout.segments) == data


def test_member_spans_are_one_span_per_member() -> None:
    data = checkpoint({"data/0": b"\1" * 1000, "data/1": b"\2" * 10, "version": b"3\n"})
    layout = member_spans(data)
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    starts = [s.offset for s in layout.segments]
    assert [i.header_offset for i in infos] == starts[:-1]
    assert all(s.dtype.name == "U8" and s.name is None for s in layout.segments)
    assert rebuilt(data, layout.segments) == data


def test_bytes_before_the_first_member_are_a_span_of_their_own() -> None:
    data = checkpoint({"data/0": b"x" * 64}, extra_first=b"#!prefix\n")
    layout = member_spans(data)
    assert layout.segments[0].offset == 0 and layout.segments[0].length == len(b"#!prefix\n")
    assert rebuilt(data, layout.segments) == data
    assert rebuilt(data, layout_of(data).segments) == data


def test_a_zip_that_is_not_a_checkpoint_is_a_blob() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive_file:
        archive_file.writestr("readme.txt", "hi")
        archive_file.writestr("a/b/data.pkl", "nested too deep")
    data = buffer.getvalue()
    with pytest.raises(tz.NotACheckpoint):
        layout_of(data)
    assert detected(data) == "blob"


def test_recognition_is_by_content_never_by_name() -> None:
    data = checkpoint({"data/0": b"z" * 8})
    assert detected(data) == "torchzip"
    assert detected(b"PK\x03\x04" + b"\0" * 100) == "blob"  # the magic alone is not enough
    assert detected(b"\0" * 8 + data) == "blob"


def _zip64(members: list[tuple[bytes, bytes]]) -> bytes:
    """A tiny zip whose directory uses zip64 fields for every offset, as writers do past 4 GiB."""
    out, entries = bytearray(), bytearray()
    for name, body in members:
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 0, 0, 0, 0, len(body), len(body), len(name), 0)
        out += name + body
        extra = struct.pack("<HHQ", 1, 8, offset)
        entries += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, 0, len(body), len(body),
                               len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra  # fmt: skip
    cd_offset = len(out)
    out += entries
    record = len(out)
    out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(members), len(members), len(entries),
                       cd_offset)  # fmt: skip
    out += struct.pack("<4sIQI", b"PK\x06\x07", 0, record, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


def test_zip64_directories_are_read() -> None:
    data = _zip64([(b"archive/data.pkl", b"pickle"), (b"archive/data/0", b"\0" * 40)])
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["archive/data.pkl", "archive/data/0"]
    layout = layout_of(data)
    assert [s.offset for s in layout.segments][:2] == [0, 30 + 16 + 6]
    assert rebuilt(data, layout.segments) == data


def _with_eocd(data: bytes, **fields: int) -> bytes:
    at = data.rfind(b"PK\x05\x06")
    names = ["magic", "disk", "cd_disk", "disk_entries", "entries", "cd_size", "cd_offset", "comment"]
    values = dict(zip(names, struct.unpack_from("<4sHHHHIIH", data, at), strict=True)) | fields
    return data[:at] + struct.pack("<4sHHHHIIH", *values.values()) + data[at + 22 :]


GOOD = checkpoint({"data/0": b"\7" * 200, "data/1": rb"\8" * 50})
_CD = struct.unpack_from("<I", GOOD, GOOD.rfind(b"PK\x05\x06") + 16)[0]
_SECOND_ENTRY = GOOD.find(b"PK\x01\x02", _CD + 4)

RULES = [
    ("no end record", GOOD[:-10], tz.NoEndRecord),
    ("multi disk", _with_eocd(GOOD, disk=1), tz.MultiDiskArchive),
    ("directory out of bounds", _with_eocd(GOOD, cd_offset=len(GOOD)), tz.CentralDirectoryOutOfBounds),
    ("entry count", _with_eocd(GOOD, entries=2, disk_entries=2), tz.EntryCountMismatch),
    ("bad entry signature", GOOD[:_SECOND_ENTRY] + b"PK\x09\x09" + GOOD[_SECOND_ENTRY + 4 :], tz.BadCentralEntry),
    ("member out of bounds", GOOD[: _SECOND_ENTRY + 42] + struct.pack("<I", _CD) + GOOD[_SECOND_ENTRY + 46 :],
     tz.MemberOutOfBounds),
    ("members overlap", GOOD[: _SECOND_ENTRY + 42] + struct.pack("<I", 1) + GOOD[_SECOND_ENTRY + 46 :],
     tz.MembersOverlap),
    ("zip64 without locator", _with_eocd(GOOD, cd_offset=0xFFFFFFFF), tz.BadZip64Record),
]  # fmt: skip


@pytest.mark.parametrize(("data", "error"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_broken_rule_has_its_own_error_and_the_file_stays_a_blob(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        layout_of(data)
    assert issubclass(error, tz.TorchZipError)
    assert detected(data) == "blob"


def test_the_central_directory_is_bounded_by_max_header_bytes() -> None:
    with pytest.raises(tz.CentralDirectoryTooLarge):
        layout_of(GOOD, limit=10)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.from_regex(r"data/[0-9]{1,3}", fullmatch=True), st.binary(max_size=300), max_size=6))
def test_any_checkpoint_tiles_and_rebuilds_exactly(members: dict[str, bytes]) -> None:
    data = checkpoint(members)
    layout = layout_of(data)
    assert rebuilt(data, layout.segments) == data


@settings(max_examples=200)
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255))
def test_damaged_checkpoints_are_refused_or_still_tile(position: int, flip: int) -> None:
    """Whatever a hostile directory says, the parse fails with its own error or covers every byte."""
    data = bytearray(GOOD)
    data[position] ^= flip
    try:
        layout = layout_of(bytes(data))
    except tz.TorchZipError:
        return
    assert rebuilt(bytes(data), layout.segments) == bytes(data)


def test_a_pushed_checkpoint_is_stored_as_torchzip_and_reads_back(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    data = checkpoint({"data/0": bytes(range(256)) * 40, "data/1": b"\1" * 999, "version": b"3\n"})
    ingest_all(hub, push(hub, "org/ckpt", {"pytorch_model.bin": data}))
    sha = hashlib.sha256(data).hexdigest()
    info = hub.file_info(sha)
    assert (info.kind, info.state) == ("torchzip", "stored")
    assert read_all(hub, sha) == data
    assert read_all(hub, sha, 100, 5000) == data[100:5000]
