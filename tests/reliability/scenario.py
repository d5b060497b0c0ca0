"""The workload the crash tests cut short: a small model family arriving in the order hubs see it.

Before the cut (``PRE``): a fine-tune whose declared base does not exist yet, and an unrelated model.
The cut run (``STEPS``): the base arrives (its ingest rebases the fine-tune onto it), a second fine-tune
arrives (delta-coded against the base, one tensor frozen so it deduplicates), the unrelated model is
deleted and GC runs. Between them these reach every crash point of the worker side.

Every step is idempotent, as a client's retry is: a push whose files are already on the branch makes no
new commit, a deletion of a repository that is gone is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import jobs
from storage.core.errors import RepoNotFound, RevisionNotFound
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.gc import collect_garbage
from workers.jobs.ingest import run_ingest

# Small frames and packs, so that a model of ~150 kB has dozens of frames and several packs to cut between.
HUB_SETTINGS = {"frame_bytes": 16 << 10, "pack_target_bytes": 48 << 10}
# Uploads stream in pieces of this size, so "mid-stream" has a middle.
UPLOAD_CHUNK = 32 << 10

Files = dict[str, bytes]


@functools.cache
def models() -> dict[str, Files]:
    base = make_weights(11)
    declares_base = b'{"_name_or_path": "org/base", "model_type": "toy"}'
    # Every repository also holds the .gitattributes its initial commit wrote (see _with_initial).
    return {
        repo_id: {".gitattributes": MODEL_GITATTRIBUTES, **files}
        for repo_id, files in _pushed(base, declares_base).items()
    }


def _pushed(base: dict, declares_base: bytes) -> dict[str, Files]:  # type: ignore[type-arg]
    return {
        "org/tuned": {
            "model.safetensors": to_safetensors(finetune(base, 12), "BF16", metadata={"format": "pt"}),
            "config.json": declares_base,
        },
        "org/old": {
            "model.safetensors": to_safetensors(make_weights(13), "BF16"),
            "notes.txt": b"an unrelated run, deleted later\n" * 50,
        },
        "org/base": {
            "model.safetensors": to_safetensors(base, "BF16", metadata={"format": "pt"}),
            "README.md": b"---\nlicense: mit\n---\n# the base\n",
        },
        "org/tuned2": {
            "model.safetensors": to_safetensors(
                finetune(base, 14, frozen=("embeddings.weight",)), "BF16", metadata={"format": "pt"}
            ),
            "config.json": declares_base,
        },
    }


PRE = ("org/tuned", "org/old")
STEPS = ("push org/base", "push org/tuned2", "drop org/old")
# Repositories (and their files) that exist once every step has run.
FINAL = ("org/tuned", "org/base", "org/tuned2")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files() -> dict[str, bytes]:
    """Every file the scenario ever uploads, by SHA-256."""
    return {sha256(data): data for files in models().values() for data in files.values()}


def chunks(data: bytes, size: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def push(hub: Hub, repo_id: str, files: Files) -> list[int]:
    """Upload and commit `files` unless the branch already holds them; the ids of the jobs queued."""
    with hub.session() as s:
        before = set(jobs.unfinished_jobs(s))
    hub.create_repo(repo_id, exist_ok=True)  # its initial commit's ingest counts as this push's
    try:
        head = hub.resolve(repo_id, "main")
        held = {e.path: e.file.sha256 for e in hub.list_tree(repo_id, head.oid)}
    except RevisionNotFound:
        held = {}
    if all(held.get(path) == sha256(data) for path, data in files.items()):
        with hub.session() as s:
            return sorted(set(jobs.unfinished_jobs(s)) - before)
    additions = []
    for path, data in files.items():
        info = hub.upload(chunks(data), expected_sha256=sha256(data), expected_size=len(data))
        additions.append(FileAddition(path, info.sha256))
    hub.commit(repo_id, "main", message=f"upload {sorted(files)}", additions=additions)
    with hub.session() as s:
        return sorted(set(jobs.unfinished_jobs(s)) - before)


def run_jobs(hub: Hub, job_ids: list[int]) -> None:
    for job_id in job_ids:
        run_ingest(hub, job_id)


def run_step(hub: Hub, step: str) -> None:
    verb, repo_id = step.split(" ")
    if verb == "push":
        run_jobs(hub, push(hub, repo_id, models()[repo_id]))
    elif verb == "drop":
        with contextlib.suppress(RepoNotFound):
            hub.delete_repo(repo_id)
        collect_garbage(hub, grace_seconds=0)
    else:
        raise ValueError(step)


def run_pre(hub: Hub) -> None:
    for repo_id in PRE:
        run_jobs(hub, push(hub, repo_id, models()[repo_id]))


def run_steps(hub: Hub) -> None:
    for step in STEPS:
        run_step(hub, step)
