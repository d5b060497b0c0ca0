"""Print the hostile-input tables of docs/reliability.md from the cases test_hostile_input.py runs:
`python -m tests.reliability.hostile_table` (the doc is regenerated from this, never typed by hand)."""

from __future__ import annotations

from tests.reliability.test_hostile_input import CASES, FILE_CASES, KNOWN_GAPS


def rows() -> list[str]:
    out = ["| # | bad input | status | error message |", "|---|---|---|---|"]
    for number, case in enumerate(CASES, start=1):
        message = case.message or "(no error: " + str(case.status) + ")"
        shown = message + ("…" if not case.exact else "")
        gap = f" ⚠ known gap: {KNOWN_GAPS[case.name]}" if case.name in KNOWN_GAPS else ""
        out.append(f"| {number} | {case.name}{gap} | {case.status} | `{shown.replace('|', '¦')}` |")
    return out


def file_rows() -> list[str]:
    out = ["| # | hostile file (path) | commit | stored as | tensors | the parser's refusal, logged by ingest |",
           "|---|---|---|---|---|---|"]
    for number, case in enumerate(FILE_CASES, start=1):
        answer = f"{case.status} `{case.message}`" if case.message else str(case.status)
        tensors = ", ".join(case.tensors) or "none"
        stored = f"`{case.kind}`" if case.kind else "nothing at the path"
        reason = f"`{case.reason.replace('|', '¦')}`" if case.reason else "—"
        out.append(f"| F{number} | {case.name} (`{case.path}`) | {answer} | {stored} | "
                   f"{tensors if case.kind else '—'} | {reason} |")
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
    print()
    print("\n".join(file_rows()))
