"""zipregen: torch.save archives regenerate from their recipes byte for byte; any other zip gets none."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.core.formats import torchzip as tz
from storage.core.formats import zipregen as zr

torch = pytest.importorskip("torch")
LIMIT = 1 << 24
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.uint8, torch.bool]


def recipe_of(data: bytes) -> tuple[zr.Recipe | None, dict[bytes, tz.StorageSpan]]:
    def read(a: int, b: int) -> bytes:
        return data[a:b]

    directory, members, ends = tz._members(read, len(data), max_header_bytes=LIMIT)
    spans = tz.read_storages(read, members, ends, max_header_bytes=LIMIT, max_tensors=100_000)
    return zr.derive(read, len(data), directory, spans.keys()), spans


def assert_regenerates(data: bytes) -> zr.Recipe:
    recipe, spans = recipe_of(data)
    assert recipe is not None
    built = zr.rebuild(recipe)
    # The spans left outside are exactly the data the torchzip layout cuts out, in file order.
    assert list(built.spans) == sorted((s.offset, s.nbytes) for s in spans.values())
    assert zr.assemble(recipe, [data[a : a + n] for a, n in built.spans]) == data
    assert zr.decode(*zr.encode(recipe)) == recipe
    # Runs and spans tile the file: any range is served from them alone.
    pieces = sorted([(a, run) for a, run in built.runs] + [(a, data[a : a + n]) for a, n in built.spans])
    at = 0
    for a, piece in pieces:
        assert a == at
        at += len(piece)
    assert at == len(data)
    return recipe


def saved(obj: object, stem: str = "archive") -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{stem}.pth"
        torch.save(obj, path)
        return path.read_bytes()


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
stems = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=30)


@st.composite
def state_dicts(draw: st.DrawFn) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in draw(st.lists(names, max_size=8, unique=True)):
        dtype = draw(st.sampled_from(DTYPES))
        shape = tuple(draw(st.lists(st.integers(0, 9), max_size=3)))
        tensor = (torch.rand(shape) * 100).to(dtype)
        if out and draw(st.booleans()):
            # A view of a storage another entry holds: the storage is written once.
            source = out[draw(st.sampled_from(sorted(out)))]
            tensor = source.reshape(-1)[: draw(st.integers(0, source.numel()))]  # type: ignore[attr-defined]
        out[name] = tensor
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=state_dicts(), stem=stems)
def test_real_torch_save_archives_regenerate_byte_exact(state: dict[str, object], stem: str) -> None:
    recipe = assert_regenerates(saved(state, stem))
    assert recipe.prefix == stem.encode() + b"/"


def test_a_series_shares_its_recipe_shape_and_differs_in_a_few_hundred_bytes() -> None:
    weights = {"w": torch.rand(64, 32), "b": torch.rand(32), "steps": torch.tensor(3)}
    one = assert_regenerates(saved(weights, "run_epoch_1"))
    weights["w"] = weights["w"] + 1
    two = assert_regenerates(saved(weights, "run_epoch_2"))
    (shape_one, varying_one), (shape_two, varying_two) = zr.encode(one), zr.encode(two)
    assert shape_one == shape_two
    assert varying_one != varying_two and len(varying_two) < 200


CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", "/nonexistent"))


@pytest.mark.skipif(not (CORPUS / "series/geatnet-atomprop").is_dir(), reason="set DELTAHUB_CORPUS")
def test_the_dev_corpus_geatnet_epochs_regenerate_and_share_one_shape() -> None:
    epochs = sorted((CORPUS / "series/geatnet-atomprop").glob("epoch_*/*.pth"))
    assert epochs
    shapes = {zr.encode(assert_regenerates(path.read_bytes()))[0] for path in epochs}
    assert len(shapes) == 1


def test_a_transformers_state_dict_regenerates() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    assert_regenerates(saved(transformers.BertModel(config).state_dict(), "pytorch_model"))


def test_a_lying_crc_in_the_central_directory_gets_no_recipe_and_the_layout_still_rebuilds() -> None:
    data = bytearray(saved({"w": torch.rand(10)}))
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 16, struct.unpack_from("<I", data, cd + 16)[0] ^ 1)
    lying = bytes(data)
    assert recipe_of(lying)[0] is None
    layout = tz.TorchZipFormat().layout(lambda a, b: lying[a:b], len(lying), max_header_bytes=LIMIT)
    assert b"".join(lying[s.offset : s.end] for s in layout.segments) == lying


def test_a_changed_pad_fill_or_extra_field_gets_no_recipe() -> None:
    data = saved({"w": torch.rand(10)})
    padded = data.replace(b"FB", b"FC", 1)
    assert recipe_of(padded)[0] is None
    filled = bytearray(data)
    filled[data.index(b"ZZ")] = ord("Y")
    assert recipe_of(bytes(filled))[0] is None


def rezip(data: bytes, **options: object) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            with target.open(name, "w", **options) as member:  # type: ignore[arg-type]
                member.write(source.read(name))
    return out.getvalue()


def test_another_writers_zip_and_zip64_fields_get_no_recipe() -> None:
    data = saved({"w": torch.rand(10), "b": torch.rand(3)})
    assert recipe_of(rezip(data))[0] is None
    assert recipe_of(rezip(data, force_zip64=True))[0] is None


def test_a_member_outside_the_archive_folder_gets_no_recipe() -> None:
    data = saved({"w": torch.rand(10)}, "model")
    out = io.BytesIO()
    out.write(data)
    moved = data.replace(b"model/version", b"other/version")
    assert moved != data
    assert recipe_of(moved)[0] is None


def test_a_damaged_recipe_does_not_decode() -> None:
    shape, varying = zr.encode(assert_regenerates(saved({"w": torch.rand(4)})))
    for bad in ((shape[:-1], varying), (shape, varying[:-1]), (shape + b"\0", varying), (b"XXXX" + shape[4:], varying)):
        with pytest.raises(zr.RecipeDecodeError):
            zr.decode(*bad)
