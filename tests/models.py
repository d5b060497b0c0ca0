"""Small synthetic models for tests: bases, fine-tunes, unrelated runs, as safetensors bytes.

Fine-tunes perturb a base the way training does (small relative updates), so their XOR/difference
against the base is mostly zero in the high bits, as on real hub models.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

LAYOUT = {
    "embeddings.weight": (512, 64),
    "layer.0.attn.weight": (64, 64),
    "layer.0.attn.bias": (64,),
    "layer.0.mlp.weight": (256, 64),
    "layer.1.attn.weight": (64, 64),
    "layer.1.mlp.weight": (256, 64),
    "norm.weight": (64,),
}


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_weights(seed: int, layout: dict[str, tuple[int, ...]] = LAYOUT) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * 0.05).astype(np.float32) for name, shape in layout.items()}


def finetune(weights: dict[str, np.ndarray], seed: int, scale: float = 1e-3,
             frozen: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: w if name in frozen else (w * (1 + scale * rng.standard_normal(w.shape))).astype(np.float32)
        for name, w in weights.items()
    }


def to_safetensors(weights: dict[str, np.ndarray], dtype: str = "F32",
                   metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name, w in weights.items():
        raw = to_bf16_bits(w).tobytes() if dtype == "BF16" else w.astype(np.float32).tobytes()
        header[name] = {"dtype": dtype, "shape": list(w.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def to_gguf(weights: dict[str, np.ndarray], *, quantized: str | None = None) -> bytes:
    """A GGUF from the real writer: the weights as F32 and, named `quantized`, a Q8_0 copy of one."""
    gguf = pytest.importorskip("gguf")
    from gguf import quants

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        for name, w in weights.items():
            writer.add_tensor(name, w)
        if quantized is not None:
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(quantized, quants.quantize(weights["layer.0.attn.weight"], q8), raw_dtype=q8)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def to_torch(weights: dict[str, np.ndarray], *, prefix: str = "", extra: str | None = None) -> bytes:
    """torch.save of a state dict, every name after `prefix` (a task head's `bert.`), and an `extra`
    8-float tensor."""
    torch = pytest.importorskip("torch")
    state = {f"{prefix}{name}": torch.from_numpy(w.copy()) for name, w in weights.items()}
    if extra is not None:
        state[extra] = torch.zeros(8)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def to_onnx(weights: dict[str, np.ndarray]) -> bytes:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(w, name) for name, w in weights.items()],
    )  # fmt: skip
    return bytes(helper.make_model(graph, producer_name="deltahub-test").SerializeToString())


def to_onnx_external(weights: dict[str, np.ndarray], location: str = "model.onnx_data") -> tuple[bytes, bytes]:
    """(model, data file) as onnx's own `save_model(save_as_external_data=True)` writes them: every
    initializer's bytes in one data file at `location`, named by the model."""
    pytest.importorskip("onnx")
    import onnx

    model = onnx.load_from_string(to_onnx(weights))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=0)  # fmt: skip
        return path.read_bytes(), (Path(tmp) / location).read_bytes()


DATASET_ROWS = 120_000


def dataset(rows: int, seed: int = 0) -> bytes:
    """`rows` JSON lines; 120,000 are past the chunking threshold (storage/core/formats/blob.py CHUNKED_FROM)."""
    rng = np.random.default_rng(seed)
    return b"".join(b'{"id": %d, "x": %d}\n' % (i, int(v)) for i, v in enumerate(rng.integers(0, 1 << 40, rows)))
