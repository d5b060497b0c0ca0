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
  written by `safetensors.torch.save_file`.

Every file is generated into a directory the caller owns; nothing here is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = ("base-shape", "task-head", "token-head", "added-tokens", "resharded", "prefix-renamed")


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
    with torch.no_grad():
        tuned.bert.resize_token_embeddings(tuned.config.vocab_size + added_tokens)
    tuned.bert.save_pretrained(dirs["added-tokens"])
    return dirs


def weight_files(directory: Path) -> dict[str, bytes]:
    """The directory's files (weights, index, config) by relative path, as a push sends them."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
