"""Hostile model files for test_hostile_input.py's file table: real files written by the real tools
(torch.save, the gguf package's writer, onnx), then damaged or made to lie in one place each.

Builders run when a row is sent, not at import, so the doc table prints without torch, gguf or onnx.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.models import to_gguf, to_onnx, to_safetensors, to_torch

# Two small tensors, so that one can lie about the other and every file stays a few KB.
WEIGHTS: dict[str, tuple[int, ...]] = {"a.weight": (8, 4), "b.weight": (4,)}
# Where a pickle's payload would leave its mark if anything ran it (the table asserts it never appears).
MARKER = Path("/tmp/deltahub-hostile-pickle-ran")

Build = Callable[[], bytes]


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in WEIGHTS.items()}


# -- PyTorch zip checkpoints ----------------------------------------------------------------------------

def torch_file() -> bytes:
    return to_torch(weights())


def _central(data: bytes, member: str) -> int:
    """Offset of `member`'s central directory entry in the checkpoint (zip's own walk of the directory)."""
    at = data.rindex(b"PK\x05\x06")
    at = int(struct.unpack_from("<I", data, at + 16)[0])  # the directory's first entry
    while data[at : at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46 : at + 46 + name_len] == member.encode():
            return at
        at += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"no central directory entry for {member}")


def _storage(data: bytes, index: int) -> str:
    return next(n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.endswith(f"/data/{index}"))


def torch_storage_past_its_member() -> bytes:
    """Storage 0's central directory entry claims 64 KiB: more than lies before the next member."""
    data = bytearray(torch_file())
    entry = _central(bytes(data), _storage(bytes(data), 0))
    struct.pack_into("<II", data, entry + 20, 1 << 16, 1 << 16)  # compressed, uncompressed size
    return bytes(data)


def torch_storages_overlap() -> bytes:
    """Storage 1's central directory entry points at storage 0's local header: two storages, one span."""
    data = bytearray(torch_file())
    first = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(_storage(bytes(data), 0)).header_offset
    struct.pack_into("<I", data, _central(bytes(data), _storage(bytes(data), 1)) + 42, first)
    return bytes(data)


def torch_storage_smaller_than_declared() -> bytes:
    """The pickle declares storage 0's 32 floats; its member (directory and local header) says 16."""
    data = bytearray(torch_file())
    name = _storage(bytes(data), 0)
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    struct.pack_into("<II", data, _central(bytes(data), name) + 20, info.file_size // 2, info.file_size // 2)
    struct.pack_into("<II", data, info.header_offset + 18, info.file_size // 2, info.file_size // 2)
    return bytes(data)


class _Runs:
    """Pickled, this calls `how` with `arg` when unpickled: what `torch.load(weights_only=False)` would do."""

    def __init__(self, how: Callable[[str], object], arg: str) -> None:
        self.how, self.arg = how, arg

    def __reduce__(self) -> tuple[Callable[[str], object], tuple[str]]:
        return self.how, (self.arg,)


def torch_with_global(how: str, *, protocol: int = 2, marker: Path = MARKER) -> bytes:
    """torch.save of a state dict with one more entry whose unpickling creates `marker`: through
    `os.system` or `builtins.eval` (GLOBAL, or with protocol 4 FRAME and STACK_GLOBAL; then REDUCE)."""
    import builtins
    import os

    import torch

    assert how in ("os.system", "builtins.eval"), how
    payload = (_Runs(os.system, f"touch {marker}") if how == "os.system"
               else _Runs(builtins.eval, f"open({str(marker)!r}, 'w').close()"))  # fmt: skip
    state: dict[str, object] = {name: torch.from_numpy(w) for name, w in weights().items()}
    state["config"] = payload
    buffer = io.BytesIO()
    torch.save(state, buffer, pickle_protocol=protocol)
    return buffer.getvalue()


# builtins.eval pushed as two strings (BINUNICODE, which protocol 2 has) and looked up by STACK_GLOBAL.
STACK_EVAL = b"X\x08\x00\x00\x00builtinsX\x04\x00\x00\x00eval\x93"


def torch_stack_global(marker: Path = MARKER) -> bytes:
    """torch_with_global("builtins.eval")'s pickle with its GLOBAL as STACK_GLOBAL (protocol 4's way),
    every other opcode unchanged, the members zipped again by Python's zipfile."""
    data = torch_with_global("builtins.eval", marker=marker)
    source = zipfile.ZipFile(io.BytesIO(data))
    name = next(n for n in source.namelist() if n.endswith("/data.pkl"))
    pickle = source.read(name)
    assert pickle.count(b"c__builtin__\neval\n") == 1
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for member in source.namelist():
            body = source.read(member)
            target.writestr(member, pickle.replace(b"c__builtin__\neval\n", STACK_EVAL)
                            if member == name else body)
    return out.getvalue()


def torch_unknown_opcode() -> bytes:
    """The pickle's first opcode after PROTO 2 (EMPTY_DICT) replaced by 0xFF, which no protocol defines."""
    data = bytearray(torch_file())
    at = data.index(b"\x80\x02}")
    data[at + 2] = 0xFF
    return bytes(data)


# -- GGUF -----------------------------------------------------------------------------------------------

def gguf_file() -> bytes:
    return to_gguf(weights())


def _info(data: bytes, name: str) -> int:
    """Offset of tensor `name`'s info just after its name: n_dims u32, dims u64 each, type u32, offset u64."""
    key = struct.pack("<Q", len(name)) + name.encode()
    at = data.index(key)
    return at + len(key)


def _gguf_field(data: bytes, name: str, field: str) -> int:
    """Offset of tensor `name`'s ggml type (`field` "type") or data offset ("offset")."""
    at = _info(data, name)
    n_dims = int(struct.unpack_from("<I", data, at)[0])
    return at + 4 + 8 * n_dims + (0 if field == "type" else 4)


def gguf_patched(name: str, field: str, value: Callable[[int], int]) -> Build:
    """The real GGUF with tensor `name`'s ggml type or data offset replaced by `value(old)`."""

    def build() -> bytes:
        data = bytearray(gguf_file())
        at = _gguf_field(bytes(data), name, field)
        form = "<I" if field == "type" else "<Q"
        struct.pack_into(form, data, at, value(struct.unpack_from(form, data, at)[0]))
        return bytes(data)

    return build


def gguf_infos_cut() -> bytes:
    """The real GGUF cut off inside its last tensor info (after b.weight's name, before its dims)."""
    data = gguf_file()
    return data[: _info(data, "b.weight") + 2]


def gguf_version(version: int) -> bytes:
    data = bytearray(gguf_file())
    struct.pack_into("<I", data, 4, version)
    return bytes(data)


def gguf_bad_magic() -> bytes:
    return b"GGUX" + gguf_file()[4:]


# -- ONNX -----------------------------------------------------------------------------------------------

def onnx_file() -> bytes:
    return to_onnx(weights())


def onnx_external(location: str) -> bytes:
    """The real model with initializer b.weight moved to external data at `location` (its raw bytes
    dropped, as onnx's external-data helper leaves them once written out)."""
    import onnx
    from onnx import external_data_helper

    model = onnx.load_from_string(onnx_file())
    tensor = next(t for t in model.graph.initializer if t.name == "b.weight")
    external_data_helper.set_external_data(tensor, location=location, offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    return bytes(model.SerializeToString())


def onnx_dims_lie() -> bytes:
    """Initializer b.weight says dims [5] while its raw_data holds 4 floats."""
    import onnx

    model = onnx.load_from_string(onnx_file())
    tensor = next(t for t in model.graph.initializer if t.name == "b.weight")
    tensor.dims[0] = 5
    return bytes(model.SerializeToString())


def safetensors_file() -> bytes:
    return to_safetensors(weights())


def cut(build: Build, keep: float) -> Build:
    """The file `build` makes, cut off after `keep` of its bytes."""
    return lambda: (lambda data: data[: int(len(data) * keep)])(build())
