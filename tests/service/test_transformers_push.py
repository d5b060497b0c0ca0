"""transformers, unmodified, against a real deltahub server: push_to_hub a model and a tokenizer into a
repository that does not exist yet, then from_pretrained them back (nothing comes from the internet:
the model is built from a config, the tokenizer from a local vocabulary)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import WRITE_TOKEN, RunningService

SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer
repo, vocab, revision = sys.argv[1:4]
torch.manual_seed(0)
config = BertConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16)
model = BertModel(config)
tokenizer = BertTokenizer(vocab)
model.push_to_hub(repo)                       # the repository does not exist yet
tokenizer.push_to_hub(repo)
model.push_to_hub(repo, revision=revision)    # transformers creates the branch, then commits to it
back = AutoModel.from_pretrained(repo)
on_branch = AutoModel.from_pretrained(repo, revision=revision)
tokens = AutoTokenizer.from_pretrained(repo)
same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
same_branch = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), on_branch.state_dict().values()))
print(json.dumps({"same": same, "same_branch": same_branch, "ids": tokens("hello world")["input_ids"],
                  "keys": sorted(back.state_dict()) == sorted(model.state_dict())}))
"""


def test_push_to_hub_into_a_new_repository_and_back(service: RunningService, tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n")
    # The client as pip installs it: hf_xet enabled, so model.safetensors travels by Xet.
    env = {
        **{k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"},
        "HF_ENDPOINT": service.url,
        "HF_TOKEN": WRITE_TOKEN,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "org/new-bert", str(vocab), "experiment"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"same": True, "same_branch": True, "ids": [2, 5, 6, 3], "keys": True}
    head = service.hub.resolve("org/new-bert", "main")
    files = {e.path for e in service.hub.list_tree("org/new-bert", head.oid)}
    assert {".gitattributes", "README.md", "config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert "experiment" in service.hub.list_branches("org/new-bert")
    # The weights travelled by Xet (the client's default), and were staged like an LFS upload.
    counters = service.counters()
    assert counters["xet_xorbs_received"] >= 1 and counters["xet_files_staged"] >= 1, counters
