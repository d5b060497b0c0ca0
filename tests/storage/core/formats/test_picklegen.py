"""picklegen: torch.save's data.pkl rebuilds from its template and values byte for byte; a series shares
its template; any other pickle gets no recipe; a damaged recipe raises one RecipeDecodeError per rule."""

from __future__ import annotations

import functools
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.core.formats import picklegen as pg
from storage.core.formats import zipregen

torch = pytest.importorskip("torch")
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.uint8, torch.bool]


def data_pkl(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def assert_regenerates(data: bytes) -> pg.Recipe:
    recipe = pg.derive(data)
    assert recipe is not None
    assert pg.rebuild(recipe) == data
    decoded = pg.decode(*pg.encode(recipe))
    assert decoded == recipe
    assert pg.rebuild(decoded) == data
    return recipe


@st.composite
def tensors(draw: st.DrawFn) -> object:
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=4)))
    return (torch.rand(shape) * 100).to(dtype)


def views(pool: list[object]) -> st.SearchStrategy[object]:
    """A tensor of the pool, or a view of its storage: an offset slice, a reshape or a transpose."""

    @st.composite
    def view(draw: st.DrawFn) -> object:
        source = draw(st.sampled_from(pool))
        flat = source.reshape(-1)  # type: ignore[attr-defined]
        kind = draw(st.sampled_from(["same", "slice", "transpose"]))
        if kind == "slice":
            start = draw(st.integers(0, flat.numel()))
            return flat[start : draw(st.integers(start, flat.numel()))]
        if kind == "transpose" and source.dim() >= 2:  # type: ignore[attr-defined]
            return source.transpose(0, 1)  # type: ignore[attr-defined]
        return source

    return view()


keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
scalars = (
    st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20) | st.none() | st.booleans()
    | st.binary(max_size=10)
)  # fmt: skip


@st.composite
def checkpoints(draw: st.DrawFn) -> object:
    pool = draw(st.lists(tensors(), min_size=1, max_size=4))
    leaves = views(pool) | tensors() | scalars
    tree = st.recursive(
        leaves,
        lambda children: (
            st.dictionaries(keys, children, max_size=4)
            | st.lists(children, max_size=4)
            | st.lists(children, max_size=4).map(tuple)
            | st.dictionaries(keys, children, max_size=4).map(OrderedDict)
        ),
        max_leaves=24,
    )
    return draw(tree)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(obj=checkpoints())
def test_real_torch_save_pickles_regenerate_byte_exact(obj: object) -> None:
    assert_regenerates(data_pkl(obj))


def test_ints_at_every_width_boundary_regenerate() -> None:
    # Where the pickler switches BININT1 -> BININT2 -> BININT -> LONG1, and where LONG1's two's complement
    # drops a sign byte (-2**39 is five bytes, not six).
    edges = [sign * 2**k + d for k in range(80) for d in (-1, 0, 1) for sign in (1, -1)]
    recipe = assert_regenerates(data_pkl({"edges": edges, "w": torch.zeros(2**16 + 1, dtype=torch.int8)}))
    assert set(edges) <= set(recipe.values)


def test_wide_memo_indices_parameters_and_a_transformers_state_dict_regenerate() -> None:
    # Past 256 memo entries the pickler writes LONG_BINPUT and LONG_BINGET.
    many = assert_regenerates(data_pkl({f"layer.{i}.weight": torch.zeros(2) for i in range(300)}))
    assert len(many.ops) > 2000
    params = list(torch.nn.Linear(3, 2).parameters())  # nn.Parameter: _rebuild_parameter
    assert_regenerates(data_pkl(params))
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    assert_regenerates(data_pkl(transformers.BertModel(config).state_dict()))


def training_run(steps: int) -> list[dict[str, object]]:
    """Checkpoints of a small model trained with Adam: model and optimizer state dicts, epoch and loss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2), torch.nn.LayerNorm(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = []
    for epoch in range(steps):
        loss = model(torch.rand(16, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append({"epoch": epoch, "global_step": 1000 * epoch + 7, "loss": loss.item(),
                    "model": model.state_dict(), "optimizer": optimizer.state_dict()})  # fmt: skip
    return out


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.AdamW(p, lr=1e-3),
    lambda p: torch.optim.RMSprop(p), lambda p: torch.optim.Adagrad(p),
])  # fmt: skip
def test_optimizer_state_dicts_after_a_step_regenerate(make: object) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = make(model.parameters())  # type: ignore[operator]
    model(torch.rand(5, 3)).sum().backward()
    optimizer.step()
    assert_regenerates(data_pkl(optimizer.state_dict()))


def test_a_training_series_shares_its_template_and_varies_in_a_few_bytes() -> None:
    encoded = [pg.encode(assert_regenerates(data_pkl(c))) for c in training_run(3)]
    assert len({template for template, _ in encoded}) == 1
    varying = [v for _, v in encoded]
    assert len(set(varying)) == 3  # epoch, step and loss differ
    assert all(len(v) < 80 for v in varying)


def test_numbers_of_tensor_shapes_stay_in_the_template_and_the_others_are_values() -> None:
    recipe = assert_regenerates(data_pkl({"w": torch.zeros(300, 7), "epoch": 70_000, "lr": 0.5}))
    # Storage numel 2100, offset 0, shape (300, 7), stride (7, 1): the template's; epoch and lr: values.
    assert recipe.values == (70_000, pickle.dumps(0.5, protocol=2)[3:11])
    assert recipe.ops.count(b"i"[0]) == 6


CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", "/nonexistent"))


@pytest.mark.skipif(not (CORPUS / "series/geatnet-atomprop").is_dir(), reason="set DELTAHUB_CORPUS")
def test_the_dev_corpus_geatnet_epochs_share_one_template() -> None:
    encoded = set()
    for path in sorted((CORPUS / "series/geatnet-atomprop").glob("epoch_*/*.pth")):
        with zipfile.ZipFile(path) as archive:
            pkl = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
        encoded.add(pg.encode(assert_regenerates(pkl)))
    assert len(encoded) == 1  # and, as their pickles are the same, one varying part
    ((_, varying),) = encoded
    assert len(varying) < 64


@pytest.mark.parametrize("protocol", [0, 1, 3, 4, 5])
def test_another_pickle_protocol_gets_no_recipe(protocol: int) -> None:
    state = {"epoch": 3, "names": ["a", "b"], "lr": 0.1}
    assert pg.derive(pickle.dumps(state, protocol=protocol)) is None
    assert_regenerates(pickle.dumps(state, protocol=2))


def test_hand_edited_pickles_get_no_recipe() -> None:
    data = data_pkl({"w": torch.rand(3), "epoch": 5})
    assert_regenerates(data)
    edits = [
        data.replace(b"K\x05", b"M\x05\x00"),  # an int written wider than the pickler writes it
        data.replace(b"q\x01", b"q\x09", 1),  # a memo index out of sequence
        data.replace(b"q\x01", b"r\x01\x00\x00\x00", 1),  # a memo index in the wide opcode
        data[:-1],  # no STOP
        data + b"N",  # bytes after STOP
        data[:-1] + b"\x93.",  # STACK_GLOBAL: not an opcode torch's loader admits at protocol 2
        b"",
        b"\x80\x02\x8a",  # a LONG1 cut before its length
        b"\x80\x02X\x05\x00\x00\x00ab",  # a string cut short
        b"\x80\x02ctorch\nFloatStorage",  # a GLOBAL with no end of line
    ]
    for edited in edits:
        assert edited != data
        assert pg.derive(edited) is None


def test_a_storage_key_that_is_not_the_next_number_is_kept_as_a_string() -> None:
    data = data_pkl({"a": torch.rand(2), "b": torch.rand(3)})
    renamed = data.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x007")
    assert renamed != data
    recipe = assert_regenerates(renamed)
    assert b"7" in recipe.strings


def damaged(template: bytes, varying: bytes) -> dict[type[pg.RecipeDecodeError], list[tuple[bytes, bytes]]]:
    return {
        pg.NotAPickleRecipe: [(b"DHPX" + template[4:], varying), (template, b"DHPT" + varying[4:]),
                              (template[:4] + b"\x02" + template[5:], varying)],
        pg.RecipeTruncated: [(template[:-1], varying), (template[:8], varying), (template, varying[:-1])],
        pg.RecipeTrailingBytes: [(template + b"\x00", varying), (template, varying + b"\x00")],
    }


def test_a_damaged_recipe_raises_one_error_per_rule() -> None:
    template, varying = pg.encode(assert_regenerates(data_pkl({"w": torch.rand(3), "epoch": 5, "lr": 0.1})))
    for error, cases in damaged(template, varying).items():
        for bad in cases:
            with pytest.raises(error):
                pg.decode(*bad)
    recipe = pg.decode(template, varying)
    rules: list[tuple[type[pg.RecipeDecodeError], pg.Recipe]] = [
        (pg.UnknownRecipeOp, pg.Recipe(recipe.ops.replace(b".", b"!"), recipe.strings, recipe.fixed, recipe.values)),
        (pg.UnknownRecipeOp, pg.Recipe(recipe.ops + b"N.", recipe.strings, recipe.fixed, recipe.values)),
        (pg.UnknownRecipeOp, pg.Recipe(recipe.ops[:-1], recipe.strings, recipe.fixed, recipe.values)),
        # A GET before any PUT, and a string the table does not hold.
        (pg.RecipeOutOfRange, pg.Recipe(b"h" + recipe.ops, recipe.strings, (0, *recipe.fixed), recipe.values)),
        (pg.RecipeOutOfRange, pg.Recipe(b"X" + recipe.ops, recipe.strings, (len(recipe.strings), *recipe.fixed),
                                        recipe.values)),
        # A table string no op uses.
        (pg.RecipeTrailingBytes, pg.Recipe(recipe.ops, (*recipe.strings, b"spare"), recipe.fixed, recipe.values)),
        # A GLOBAL line that is not "module\nname\n".
        (pg.RecipeOutOfRange, pg.Recipe(b"c" + recipe.ops, (b"no newline", *recipe.strings),
                                        (0, *(i + 1 for i in recipe.fixed)), recipe.values)),
    ]
    for error, bad_recipe in rules:
        with pytest.raises(error):
            pg.decode(*pg.encode(bad_recipe))
    with pytest.raises(pg.RecipeOutOfRange):  # a number not in its shortest form
        pg.decode(template, varying[:5] + b"\x85\x00" + varying[6:])
    # The reader of zip recipes catches these too.
    assert issubclass(pg.RecipeDecodeError, zipregen.RecipeDecodeError)


@functools.cache
def checkpoint_pickle() -> bytes:
    return data_pkl(training_run(1)[0])


@functools.cache
def checkpoint_recipe() -> tuple[bytes, bytes]:
    return pg.encode(assert_regenerates(checkpoint_pickle()))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_damage_decodes_to_a_recipe_or_raises_recipe_decode_error(data: st.DataObject) -> None:
    template, varying = checkpoint_recipe()
    parts = [bytearray(template), bytearray(varying)]
    part = parts[data.draw(st.integers(0, 1))]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(part) - 1))
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip":
            part[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del part[at:]
        else:
            part[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        if not part:
            break
    try:
        recipe = pg.decode(bytes(parts[0]), bytes(parts[1]))
    except pg.RecipeDecodeError:
        return
    pg.rebuild(recipe)  # whatever decodes, rebuilds


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_derive_on_any_damaged_pickle_returns_none_or_a_recipe_that_rebuilds_it(data: st.DataObject) -> None:
    pkl = bytearray(checkpoint_pickle())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(pkl) - 1))
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip":
            pkl[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del pkl[at : at + data.draw(st.integers(1, 8))]
        else:
            pkl[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        if not pkl:
            break
    recipe = pg.derive(bytes(pkl))
    assert recipe is None or pg.rebuild(recipe) == pkl
