"""Verify: re-read stored files (all, or a sample) and report every mismatch by repository and path."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from storage.catalog import repos as catalog_repos
from storage.core.errors import DeltahubError
from workers.jobs.context import JobContext


@dataclass(frozen=True, slots=True)
class Problem:
    sha256: str
    error: str
    # (repository, path) pairs that name the file at any commit.
    locations: tuple[tuple[str, str], ...]


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
    for sha in sorted(shas):
        digest = hashlib.sha256()
        try:
            for chunk in ctx.read(sha):
                digest.update(chunk)
                report.bytes_checked += len(chunk)
            if digest.hexdigest() != sha:
                raise ValueError(f"bytes hash to {digest.hexdigest()}")
        except (DeltahubError, ValueError) as exc:
            with ctx.session() as s:
                where = tuple(catalog_repos.locations(s, sha))
            report.problems.append(Problem(sha, str(exc), where))
        report.checked += 1
    return report
