"""The restricted checkpoint pickle reader: real torch.save pickles read, hostile ones refused, nothing run."""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import zipfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core.formats import torchpickle as tp

torch = pytest.importorskip("torch")
MAX = 1000


def pickled(obj: object) -> bytes:
    """The data.pkl torch.save writes for `obj`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def read(data: bytes, max_tensors: int = MAX) -> tp.Checkpoint:
    return tp.read_checkpoint(data, max_tensors=max_tensors)


def by_name(checkpoint: tp.Checkpoint) -> dict[str | None, tp.TensorDecl]:
    return {t.name: t for t in checkpoint.tensors}


def test_a_state_dict_declares_each_storage_and_names_each_tensor() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    found = read(pickled(model.state_dict()))
    assert [t.name for t in found.tensors] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    weight = by_name(found)["0.weight"]
    assert (weight.dtype, weight.offset, weight.shape, weight.stride) == ("float32", 0, (3, 4), (4, 1))
    assert found.storages[weight.storage] == tp.StorageDecl(weight.storage, "float32", 12)


def test_a_training_checkpoint_names_tensors_through_nested_dicts_and_lists() -> None:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    checkpoint = {"epoch": 3, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "history": [torch.zeros(2)], "loss": 0.25, "note": b"bytes", "dtype": torch.float16,
                  "device": torch.device("cpu"), "size": torch.Size([1, 2]), "flags": {True, None}}  # fmt: skip
    found = read(pickled(checkpoint))
    names = [t.name for t in found.tensors]
    assert names[:2] == ["state_dict.weight", "state_dict.bias"]
    assert {"optimizer.state.0.exp_avg", "optimizer.state.1.exp_avg_sq", "optimizer.state.0.step"} <= set(names)
    assert "history.0" in names
    assert len(found.storages) == len(found.tensors) == 2 + 6 + 1


def test_shared_storages_views_and_parameters() -> None:
    base = torch.arange(20, dtype=torch.float64)
    param = torch.nn.Parameter(torch.ones(3))
    found = read(pickled({"view": base[2:5], "t": base.view(4, 5).t(), "all": base, "p": param, "tied": param}))
    names = by_name(found)
    assert names["view"].storage == names["all"].storage == names["t"].storage
    assert (names["view"].offset, names["view"].shape, names["view"].stride) == (2, (3,), (1,))
    assert (names["t"].shape, names["t"].stride, names["t"].contiguous()) == ((5, 4), (1, 5), False)
    assert names["all"].extent() == 20 and names["view"].extent() == 5
    # One parameter object reached twice is one tensor, named by the first path.
    assert "tied" not in names and names["p"].dtype == "float32"
    assert found.storages[names["all"].storage].numel == 20


def test_new_dtypes_come_from_rebuild_tensor_v3_over_untyped_storages() -> None:
    found = read(pickled({"u": torch.ones(3, dtype=torch.uint16), "f8": torch.ones(2).to(torch.float8_e5m2)}))
    names = by_name(found)
    assert (names["u"].dtype, names["f8"].dtype) == ("uint16", "float8_e5m2")
    assert found.storages[names["u"].storage] == tp.StorageDecl(names["u"].storage, None, 6)  # bytes


def test_tensors_no_path_names_are_kept_unnamed() -> None:
    t = torch.ones(2)
    found = read(pickled({(1, 2): t, "x": {3.5: torch.zeros(1)}, (3,): {"a": torch.zeros(2)}, "ok": t}))
    # The tensor under (1, 2) is named by the first usable path that reaches it.
    assert [d.name for d in found.tensors] == ["ok", None, None]
    assert read(pickled(torch.ones(1))).tensors[0].name is None  # a bare tensor has no path


def test_a_cyclic_or_shared_structure_is_walked_once() -> None:
    looped: list[Any] = [torch.ones(1)]
    looped.append(looped)
    assert [t.name for t in read(pickled({"l": looped})).tensors] == ["l.0"]
    shared: list[Any] = [torch.ones(1)]
    for _ in range(40):  # 2**40 paths, 40 containers
        shared = [shared, shared]
    assert len(read(pickled({"s": shared})).tensors) == 1


# Hostile pickles: each refused with its own error, nothing executed, nothing but PickleError raised.
class Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("executed",))


def _op(code: bytes, *args: bytes) -> bytes:
    return code + b"".join(args)


_STORAGE = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
HOSTILE: list[tuple[str, bytes, type[tp.PickleError]]] = [
    ("os.system global", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", tp.ForbiddenGlobal),
    ("an arbitrary callable", pickle.dumps(Boom(), protocol=2), tp.ForbiddenGlobal),
    ("a class instance", pickle.dumps(zipfile.ZipInfo(), protocol=2), tp.ForbiddenGlobal),
    ("REDUCE of a string", b"\x80\x02X\x01\x00\x00\x00a)R.", tp.ForbiddenCall),
    ("admitted global, wrong args", b"\x80\x02ccollections\nOrderedDict\n]\x85R.", tp.ForbiddenCall),
    ("BUILD on a list", b"\x80\x02]}b.", tp.ForbiddenCall),
    ("NEWOBJ", b"\x80\x02ccollections\nOrderedDict\n)\x81.", tp.ForbiddenOpcode),
    ("protocol 4 framing", pickle.dumps({"a": 1}, protocol=4), tp.ForbiddenOpcode),
    ("truncated", pickled({"w": torch.ones(2)})[:-9], tp.PickleTruncated),
    ("no STOP", b"\x80\x02}", tp.PickleTruncated),
    ("a memo never put", b"\x80\x02h\x07.", tp.MalformedPickle),
    ("stack underflow", b"\x80\x02s.", tp.MalformedPickle),
    ("unhashable key", b"\x80\x02}]K\x01s.", tp.MalformedPickle),
    ("rebuild with a string storage", b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(X\x01\x00\x00\x00sK\x00)))"
     b"\x89ccollections\nOrderedDict\n)RtR.", tp.MalformedPickle),
    ("negative offset", b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + _STORAGE + b"J\xff\xff\xff\xff)"
     b")\x89ccollections\nOrderedDict\n)RtR.", tp.MalformedPickle),
    ("persistent id of a module", b"\x80\x02(X\x06\x00\x00\x00moduleK\x00K\x00K\x00K\x00tQ.", tp.BadPersistentId),
    ("deep MARKs", b"\x80\x02" + b"(" * (tp.MAX_DEPTH + 1), tp.PickleTooDeep),
    ("deep nesting without MARK", b"\x80\x02]" + b"\x85" * (tp.MAX_DEPTH + 1) + b".", tp.PickleTooDeep),
]  # fmt: skip
HOSTILE.append(("too many objects", b"\x80\x02]" + b"N" * (tp.MIN_OBJECTS + 1) + b".", tp.PickleTooLarge))
HOSTILE.append(("huge memo", b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(tp.MIN_OBJECTS + 1))
                + b".", tp.PickleTooLarge))  # fmt: skip


@pytest.mark.parametrize(("data", "error"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_each_hostile_pickle_is_refused_with_its_own_error(
    data: bytes, error: type[tp.PickleError], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(error):
        read(data)
    assert "executed" not in capsys.readouterr().out


def test_more_storages_than_max_tensors_are_refused_before_anything_is_built_for_them() -> None:
    data = pickled({str(i): torch.ones(1) for i in range(5)})
    assert len(read(data, max_tensors=5).tensors) == 5
    with pytest.raises(tp.TooManyStorages):
        read(data, max_tensors=4)


_REAL = pickled({"a": torch.ones(3), "b": {"c": torch.zeros(2, 2, dtype=torch.bfloat16)}, "n": [1, 2.5, None]})


def test_every_prefix_of_a_real_pickle_is_refused_cleanly() -> None:
    for end in range(len(_REAL) - 1):
        with pytest.raises(tp.PickleError):
            read(_REAL[:end])


@settings(max_examples=300)
@given(st.integers(0, len(_REAL) - 1), st.integers(1, 255))
def test_a_damaged_pickle_reads_or_raises_only_pickle_errors(position: int, flip: int) -> None:
    data = bytearray(_REAL)
    data[position] ^= flip
    with contextlib.suppress(tp.PickleError):
        read(bytes(data))


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_pickle_errors(data: bytes) -> None:
    with contextlib.suppress(tp.PickleError):
        read(b"\x80\x02" + data)
