"""Small synthetic models for tests: bases, fine-tunes, unrelated runs, as safetensors bytes.

Fine-tunes perturb a base the way training does (small relative updates), so their XOR/difference
against the base is mostly zero in the high bits, as on real hub models.
"""

from __future__ import annotations

import json
import struct

import numpy as np

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
