"""The storage report of `deltahub admin report` and `admin families`: a stable JSON document and tables.

The JSON shape is documented in docs/cli.md ("admin report --format json") and versioned by its
``format`` key: fields may be added, but none is renamed or removed without a new format number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from service.cli.common import human_bytes, percent
from storage.app.hub import Hub
from storage.catalog import repos as catalog_repos
from storage.catalog.accounting import namespace_report, storage_report

REPORT_FORMAT = 1
SAVING_SOURCES = ("file_dedup", "tensor_dedup", "chunk_dedup", "delta_coding", "plain_coding", "overhead")
TOP_REPOSITORIES = 10


def build_report(hub: Hub) -> dict[str, Any]:
    with hub.session() as s:
        raw = storage_report(s, top=0)
        shas = {m["sha256"] for fam in raw["families"] for m in fam["members"]}
        shas |= {fam["root"] for fam in raw["families"] if fam["root"]}
        where = {sha: [{"repo_id": r, "path": p} for r, p in catalog_repos.locations(s, sha)] for sha in shas}
        by_namespace = namespace_report(s)
    logical, physical = int(raw["logical_bytes"]), int(raw["physical_bytes"])
    families = []
    for fam in raw["families"]:
        root = fam["root"]
        families.append(
            {
                "id": fam["id"],
                "fingerprint": fam["fingerprint"],
                "base": {"sha256": root, "locations": where.get(root, [])} if root else None,
                "members": [
                    {
                        "sha256": m["sha256"],
                        "size": m["size"],
                        "base_sha256": m["base"],
                        "locations": where[m["sha256"]],
                    }
                    for m in fam["members"]
                ],
                "logical_bytes": fam["logical_bytes"],
                "physical_bytes": fam["physical_bytes"],
                "saved_bytes": fam["logical_bytes"] - fam["physical_bytes"],
            }
        )
    repositories = sorted(
        (
            {key: row[key] for key in ("repo_id", "files", "logical_bytes", "physical_bytes", "exclusive_bytes")}
            for row in raw["repositories"]
        ),
        key=lambda row: (-row["physical_bytes"], row["repo_id"]),
    )
    return {
        "format": REPORT_FORMAT,
        "logical_bytes": logical,
        "physical_bytes": physical,
        "saved_bytes": logical - physical,
        "saved_fraction": (logical - physical) / logical if logical else 0.0,
        "savings": {source: int(raw["savings"].get(source, 0)) for source in SAVING_SOURCES},
        "families": families,
        "repositories": repositories,
        "namespaces": by_namespace["namespaces"],
        "namespace_totals": {
            **{key: by_namespace["totals"][key] for key in ("exclusive_bytes", "shared_bytes")},
            # Pack headers, objects awaiting GC, files no repository names: physical, but no namespace's.
            "unattributed_bytes": physical - by_namespace["totals"]["attributed_bytes"],
        },
    }


def _where(locations: list[dict[str, str]], sha256: str | None) -> str:
    if not locations:
        return sha256[:12] if sha256 else "-"
    first = f"{locations[0]['repo_id']}:{locations[0]['path']}"
    return first if len(locations) == 1 else f"{first} (+{len(locations) - 1})"


def print_report(console: Console, report: dict[str, Any]) -> None:
    logical = report["logical_bytes"]
    summary = Table(title="Storage", title_justify="left")
    for column in ("logical", "physical", "saved", "saved %"):
        summary.add_column(column, justify="right")
    summary.add_row(
        human_bytes(logical),
        human_bytes(report["physical_bytes"]),
        human_bytes(report["saved_bytes"]),
        percent(report["saved_bytes"], logical),
    )
    console.print(summary)

    sources = Table(title="Savings by source", title_justify="left")
    sources.add_column("source")
    sources.add_column("saved", justify="right")
    sources.add_column("% of logical", justify="right")
    for source, amount in report["savings"].items():
        sources.add_row(source.replace("_", " "), human_bytes(amount), percent(amount, logical))
    console.print(sources)

    print_families(console, report, detail=False)
    for key, title in (("physical_bytes", "physical"), ("exclusive_bytes", "exclusive (freed if deleted)")):
        top = sorted(report["repositories"], key=_by(key))[:TOP_REPOSITORIES]
        table = Table(title=f"Top repositories by {title} bytes", title_justify="left")
        table.add_column("repository", overflow="fold")
        for column in ("files", "logical", "physical", "exclusive"):
            table.add_column(column, justify="right")
        for row in top:
            table.add_row(
                row["repo_id"],
                str(row["files"]),
                human_bytes(row["logical_bytes"]),
                human_bytes(row["physical_bytes"]),
                human_bytes(row["exclusive_bytes"]),
            )
        console.print(table)
    print_namespaces(console, report)


def print_namespaces(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="Namespaces", title_justify="left")
    table.add_column("namespace", overflow="fold")
    table.add_column("kind")
    for column in ("repos", "logical", "quota", "used %", "physical", "exclusive", "shared"):
        table.add_column(column, justify="right")
    for row in report["namespaces"]:
        quota = row["quota_bytes"]
        table.add_row(
            row["namespace"],
            row["kind"] or "-",
            str(row["repositories"]),
            human_bytes(row["logical_bytes"]),
            "none" if quota is None else human_bytes(quota),
            "-" if quota is None else percent(row["logical_bytes"], quota),
            human_bytes(row["physical_bytes"]),
            human_bytes(row["exclusive_bytes"]),
            human_bytes(row["shared_bytes"]),
        )
    if not report["namespaces"]:
        console.print("no namespaces yet")
        return
    console.print(table)
    totals = report["namespace_totals"]
    console.print(
        f"physical {human_bytes(report['physical_bytes'])} = exclusive {human_bytes(totals['exclusive_bytes'])}"
        f" + shared {human_bytes(totals['shared_bytes'])} (each shared byte once)"
        f" + unattributed {human_bytes(totals['unattributed_bytes'])} (pack overhead, objects awaiting gc)",
        soft_wrap=True,
    )


def print_families(console: Console, report: dict[str, Any], *, detail: bool) -> None:
    table = Table(title="Families", title_justify="left")
    table.add_column("family", justify="right")
    table.add_column("base", overflow="fold")
    if detail:
        table.add_column("member", overflow="fold")
        table.add_column("delta against", overflow="fold")
        table.add_column("size", justify="right")
    else:
        table.add_column("members", justify="right")
        for column in ("logical", "physical", "saved"):
            table.add_column(column, justify="right")
    for fam in report["families"]:
        base = fam["base"]
        base_name = _where(base["locations"], base["sha256"]) if base else "-"
        if not detail:
            table.add_row(
                str(fam["id"]),
                base_name,
                str(len(fam["members"])),
                human_bytes(fam["logical_bytes"]),
                human_bytes(fam["physical_bytes"]),
                human_bytes(fam["saved_bytes"]),
            )
            continue
        by_sha = {m["sha256"]: m for m in fam["members"]}
        for member in fam["members"]:
            against = by_sha.get(member["base_sha256"] or "")
            against_name = (
                _where(against["locations"], against["sha256"])
                if against
                else (member["base_sha256"][:12] if member["base_sha256"] else "-")
            )
            table.add_row(
                str(fam["id"]),
                base_name,
                _where(member["locations"], member["sha256"]),
                against_name,
                human_bytes(member["size"]),
            )
    if not report["families"]:
        console.print("no families yet: they form as safetensors files are stored")
        return
    console.print(table)


def _by(key: str) -> Callable[[dict[str, Any]], tuple[int, str]]:
    """Largest `key` first, then by name."""
    return lambda row: (-int(row[key]), str(row["repo_id"]))
