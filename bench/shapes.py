"""Real upload shapes of one fine-tune, made by transformers from the dev corpus's MiniLM base.

A short real fine-tune (a few AdamW steps on CPU, random token batches: the weights move as training
moves them) of `BertForSequenceClassification` built from the base directory, then saved the ways hub
uploads are saved:

- `base-shape`: the fine-tuned backbone alone (`model.bert.save_pretrained`), names and shapes as the base;
- `task-head`: the whole classification model (`bert.` prefix, `classifier.*` added);
- `token-head`: `BertForTokenClassification` (`bert.` prefix, no pooler, `classifier.*`) over the same backbone;
- `added-tokens`: the backbone after `resize_token_embeddings(+N)` (the embedding grew N rows);
- `resharded`: the backbone with `save_pretrained(max_shard_size=...)` (shards + index.json);
- `prefix-renamed`: the backbone's state dict under `base_model.model.` (as LoRA-merge scripts save it),
  written by `safetensors.torch.save_file`;
- `torch-bin`: the backbone's state dict as `pytorch_model.bin` written by `torch.save` (as transformers
  before 5 wrote it; transformers 5 saves only safetensors);
- `safetensors-f16`: the backbone's state dict in F16 (`safetensors.torch.save_file`), the reference for
  `gguf-f16`: its tensors are predicted from the F32 base's, rounded (cast prediction);
- `gguf-f32`, `gguf-f16`: the backbone written by gguf's `GGUFWriter` under llama.cpp's tensor names
  (`gguf.get_tensor_name_map`, what llama.cpp's converter uses), the pooler dropped as it drops it, and in
  `gguf-f16` the 2-D weights as F16 with 1-D tensors kept F32, as its converter's F16 output is;
- `onnx`: the backbone exported by `torch.onnx.export` (the TorchScript exporter, `dynamo=False`: the
  default one needs onnxscript) through a wrapper whose `forward(ids)` returns the last hidden state
  (transformers 5's forward does not trace directly); its MatMul initializers are the Linear weights
  transposed, under the exporter's own names (`onnx::MatMul_NNN`);
- `onnx-external`: the same export saved by onnx's `save_model(save_as_external_data=True)` (as every
  model past protobuf's 2 GB limit is): a small `model.onnx` and its weights in `model.onnx_data`;
- `gguf-q4_0`, then `gguf-q4_0-mixed`: two quantized releases (gguf's own quantizer), the second pushed
  after the first: it shares every tensor its mix leaves in Q4_0 bit for bit.

Every file is generated into a directory the caller owns; nothing here is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SHAPES = ("base-shape", "task-head", "token-head", "added-tokens", "resharded", "prefix-renamed", "torch-bin",
          "safetensors-f16", "gguf-f32", "gguf-f16", "onnx", "onnx-external")
WEIGHT_SUFFIXES = (".safetensors", ".index.json", ".bin", ".gguf", ".onnx", ".onnx_data")


def fine_tune(base_dir: Path, *, steps: int = 3, seed: int = 0, labels: int = 3):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=labels)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    vocab = model.config.vocab_size
    for _ in range(steps):
        ids = torch.randint(1000, vocab, (8, 32))
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.randint(0, labels, (8,)))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


def build_shapes(base_dir: Path, out: Path, *, steps: int = 3, added_tokens: int = 100,
                 shard_bytes: str = "20MB") -> dict[str, Path]:
    """Each shape's directory (weights and config, as save_pretrained writes them)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertForTokenClassification

    tuned = fine_tune(base_dir, steps=steps)
    dirs = {name: out / name for name in SHAPES}
    tuned.bert.save_pretrained(dirs["base-shape"])
    tuned.save_pretrained(dirs["task-head"])
    token = BertForTokenClassification.from_pretrained(base_dir, num_labels=5)
    missing = token.bert.load_state_dict(tuned.bert.state_dict(), strict=False)
    assert not missing.missing_keys, missing
    token.save_pretrained(dirs["token-head"])
    tuned.bert.save_pretrained(dirs["resharded"], max_shard_size=shard_bytes)
    dirs["prefix-renamed"].mkdir(parents=True, exist_ok=True)
    state = {f"base_model.model.{k}": v.contiguous() for k, v in tuned.bert.state_dict().items()}
    save_file(state, dirs["prefix-renamed"] / "model.safetensors", metadata={"format": "pt"})
    (dirs["prefix-renamed"] / "config.json").write_text(json.dumps(tuned.bert.config.to_dict()))
    dirs["torch-bin"].mkdir(parents=True, exist_ok=True)
    torch.save(tuned.bert.state_dict(), dirs["torch-bin"] / "pytorch_model.bin")
    dirs["safetensors-f16"].mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in tuned.bert.state_dict().items()},
              dirs["safetensors-f16"] / "model.safetensors", metadata={"format": "pt"})
    backbone = {k: v.detach().numpy() for k, v in tuned.bert.state_dict().items()}
    blocks = tuned.config.num_hidden_layers
    for name, dtype in (("gguf-f32", "F32"), ("gguf-f16", "F16")):
        write_gguf(backbone, dirs[name] / "model.gguf", blocks=blocks, types=lambda _, d=dtype: d)
    export_onnx(tuned.bert, dirs["onnx"] / "model.onnx")
    external_onnx(dirs["onnx"] / "model.onnx", dirs["onnx-external"] / "model.onnx")
    for name, types in QUANTIZED.items():
        write_gguf(backbone, out / name / "model.gguf", blocks=blocks, types=types)
        dirs[name] = out / name
    with torch.no_grad():
        tuned.bert.resize_token_embeddings(tuned.config.vocab_size + added_tokens)
    tuned.bert.save_pretrained(dirs["added-tokens"])
    return dirs


def export_onnx(model, path: Path) -> None:  # type: ignore[no-untyped-def]
    """`model` (a transformers encoder) as `torch.onnx.export` writes it, input ids in, hidden states out."""
    import warnings

    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, ids):  # type: ignore[no-untyped-def]
            return self.m(input_ids=ids, return_dict=False)[0]

    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapper(), (torch.randint(0, 1000, (1, 16)),), str(path), dynamo=False)


def external_onnx(source: Path, path: Path) -> None:
    """The model at `source` saved again with every initializer in one external data file beside `path`."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx.load(str(source)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx_data", size_threshold=0)  # fmt: skip


def _mixed(name: str) -> str:
    """Q4_0, but the value projections and feed-forward outputs in Q8_0 (as llama.cpp's *_M mixes give
    attn_v and ffn_down more bits than the *_S ones)."""
    return "Q8_0" if name.split(".")[-2] in ("attn_v", "ffn_down") else "Q4_0"


# Two quantized releases of the fine-tune, pushed in this order after the F32 base: the second shares
# every tensor the mix leaves in Q4_0 bit for bit with the first.
QUANTIZED = {"gguf-q4_0": lambda _: "Q4_0", "gguf-q4_0-mixed": _mixed}
PUSHED_AFTER = {"gguf-q4_0-mixed": "gguf-q4_0"}  # a shape measured on a hub that holds the other already


def write_gguf(state: dict, path: Path, *, blocks: int, types: Callable[[str], str]) -> None:  # type: ignore[type-arg]
    """A BERT state dict as llama.cpp's converter writes it: its tensor names, the pooler and anything
    the name map does not know dropped, 1-D tensors in F32 and each 2-D weight in `types(gguf name)`
    (F32, F16, or a block type gguf's own quantizer writes: Q4_0, Q8_0)."""
    import gguf
    import numpy as np
    from gguf import quants

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_block_count(blocks)
    for name, array in state.items():
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            continue
        kind = types(mapped) if array.ndim > 1 else "F32"
        if kind in ("F32", "F16"):
            writer.add_tensor(mapped, array.astype(np.float16 if kind == "F16" else np.float32))
        else:
            block = gguf.GGMLQuantizationType[kind]
            writer.add_tensor(mapped, quants.quantize(array.astype(np.float32), block), raw_dtype=block)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def weight_files(directory: Path) -> dict[str, bytes]:
    """The directory's files (weights, index, config) by relative path, as a push sends them."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
