"""Verify: re-read stored files (all, or a sample) and report every mismatch by repository and path.

What it finds damaged it records in the catalog (storage/catalog/damage.py): a damaged file counts as
not held, so a push of the same bytes is asked for the bytes and its ingest repairs the file; tensors
delta-coded against damaged data are damaged too, and so is every file holding one. Each problem says
what repairs it (docs/reliability.md, "Repairing damaged data"). A file that reads back byte-exact loses
any damage record it had.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.catalog import damage
from storage.catalog import repos as catalog_repos
from storage.catalog.models import FileObject, FileState
from workers.jobs.context import JobContext
from workers.jobs.damage import file_error, tensor_error

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Problem:
    sha256: str
    error: str
    # (repository, path) pairs that name the file at any commit.
    locations: tuple[tuple[str, str], ...]
    # What repairs it, in words for the operator.
    repair: str = ""


@dataclass
class VerifyReport:
    checked: int = 0
    bytes_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ctx: JobContext, *, sample: int | None = None, seed: int | None = None) -> VerifyReport:
    with ctx.session() as s:
        shas = catalog_repos.all_file_shas(s)
    if sample is not None and sample < len(shas):
        shas = random.Random(seed).sample(shas, sample)
    report = VerifyReport()
    errors: dict[str, str] = {}
    broken: dict[str, str] = {}  # damaged tensors: id → error
    for sha in sorted(shas):
        error, read = file_error(ctx, sha)
        report.bytes_checked += read
        report.checked += 1
        with ctx.session() as s:
            if error is None:
                damage.clear_file(s, sha)
                damage.clear_tensors(s, damage.own_tensors(s, sha))
                continue
            errors[sha] = error
            own = damage.own_tensors(s, sha)
        for tensor_id in sorted(own - broken.keys()):
            tensor_problem = tensor_error(ctx, tensor_id)
            if tensor_problem is not None:
                broken[tensor_id] = tensor_problem
    with ctx.session() as s:
        # What was delta-coded against damaged data cannot decode either, wherever it is used.
        for tensor_id in damage.dependents(s, broken):
            broken.setdefault(tensor_id, "delta-coded against a damaged tensor")
        for tensor_id, error in broken.items():
            damage.record_tensor(s, tensor_id, error)
        for sha in sorted(damage.files_holding(s, broken) - errors.keys()):
            errors[sha] = "holds a damaged tensor (found while verifying other files)"
        for sha, error in errors.items():
            damage.record_file(s, sha, error)
        report.problems = [_problem(s, sha, error, broken) for sha, error in sorted(errors.items())]
    return report


def _problem(s: Session, sha: str, error: str, broken: dict[str, str]) -> Problem:
    where = tuple(catalog_repos.locations(s, sha))
    return Problem(sha, error, where, _repair(s, sha, where, broken))


def _named(where: tuple[tuple[str, str], ...]) -> str:
    return " or ".join(f"{repo}/{path}" for repo, path in where) or "the same file (no repository names it now)"


def _repair(s: Session, sha: str, where: tuple[tuple[str, str], ...], broken: dict[str, str]) -> str:
    file = s.get(FileObject, sha)
    if file is not None and file.state != FileState.STORED:
        return f"its staged upload is damaged: push {_named(where)} again (the same bytes) to stage it anew"
    if file is not None and file.staging_key is not None:
        return "its bytes were pushed again and are served from that copy; the queued repair re-encodes them"
    mine = damage.own_tensors(s, sha) & broken.keys()
    if not mine:
        return (f"no stored tensor is damaged, yet the file does not rebuild: push {_named(where)} again; "
                "if verify still names it, restore the catalog from a backup")
    # The tensors whose own frames are damaged (their base, if any, is healthy): their holders repair them.
    sources: set[str] = set()
    for tensor_id in mine:
        source, current = tensor_id, damage.base_of(s, tensor_id)
        while current is not None and current in broken:
            source, current = current, damage.base_of(s, current)
        sources.add(source)
    others = sorted(damage.files_holding(s, sources - mine) - {sha})
    text = f"push {_named(where)} again (the same bytes): its {len(mine)} damaged tensor(s) are re-encoded from them"
    if others:
        names = sorted({f"{r}/{p}" for other in others for r, p in catalog_repos.locations(s, other)})
        text += ("; it is delta-coded against damaged data of " + (", ".join(names) or "an unreferenced file")
                 + ", and pushing that again repairs this file too")
    return text
