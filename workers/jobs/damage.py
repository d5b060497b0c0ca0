"""Checks of stored data against its content address, shared by `verify` and the repairing ingest.

A file is checked by reading it whole (from staging or its frames) and hashing; a tensor by decoding
every frame (its bases' too) and hashing its bytes, which are its id. Only our own errors count as
damage: anything else (the store unreachable) is no verdict and propagates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from storage.catalog import damage, files, plans
from storage.catalog.models import FileState
from storage.core.errors import DeltahubError
from workers.jobs.context import JobContext


def file_error(ctx: JobContext, sha256: str) -> tuple[str | None, int]:
    """(why the file does not read back byte-exact, or None; bytes read). A stored file is rebuilt from
    its frames, even while a staged copy of it waits for the ingest that repairs them."""
    with ctx.session() as s:
        stored = files.snapshot(s, sha256).state == FileState.STORED
    digest, read = hashlib.sha256(), 0
    try:
        for chunk in ctx.reader.read_file(sha256) if stored else ctx.read(sha256):
            digest.update(chunk)
            read += len(chunk)
    except DeltahubError as exc:
        return exc.message, read
    if digest.hexdigest() != sha256:
        return f"bytes hash to {digest.hexdigest()}", read
    return None, read


def tensor_error(ctx: JobContext, tensor_id: str) -> str | None:
    """Why the stored tensor does not decode to its bytes, or None; decoded a frame at a time."""
    with ctx.session() as s:
        tensors = plans.tensor_plans(s, [tensor_id])
    tensor = tensors.get(tensor_id)
    if tensor is None:
        return None  # collected meanwhile: nothing stored, nothing damaged
    digest = hashlib.sha256()
    try:
        for frame in tensor.frames:
            digest.update(ctx.reader.read_tensor(tensors, tensor_id, frame.raw_offset, frame.raw_end))
    except DeltahubError as exc:
        return exc.message
    if digest.hexdigest() != tensor_id:
        return f"tensor {tensor_id} decodes to bytes that hash to {digest.hexdigest()}"
    return None


def recheck(ctx: JobContext, repaired: set[str], *, files_too: Iterable[str] = ()) -> list[str]:
    """After tensors were re-encoded: drop the damage records of those of them, and of the tensors
    delta-coded against them, that decode again, and of every damaged file holding any of them (and of
    `files_too`) that now reads back byte-exact. Only what the repair touched is read again. Returns the
    files among those that are still damaged."""
    with ctx.session() as s:
        touched = repaired | damage.dependents(s, repaired)
        recorded = damage.damaged_tensors(s, touched)
        suspects = damage.damaged_among(s, damage.files_holding(s, touched) | set(files_too))
    healthy = {t for t in recorded if tensor_error(ctx, t) is None}
    with ctx.session() as s:
        damage.clear_tensors(s, healthy)
    still: list[str] = []
    for sha in sorted(suspects):
        error, _ = file_error(ctx, sha)
        with ctx.session() as s:
            if error is None:
                damage.clear_file(s, sha)
                damage.clear_tensors(s, damage.own_tensors(s, sha))
            else:
                still.append(sha)
    return still
