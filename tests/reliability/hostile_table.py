"""Print the hostile-input table of docs/reliability.md from the cases test_hostile_input.py runs:
`python -m tests.reliability.hostile_table` (the doc is regenerated from this, never typed by hand)."""

from __future__ import annotations

from tests.reliability.test_hostile_input import CASES, KNOWN_GAPS


def rows() -> list[str]:
    out = ["| # | bad input | status | error message |", "|---|---|---|---|"]
    for number, case in enumerate(CASES, start=1):
        message = case.message or "(no error: " + str(case.status) + ")"
        shown = message + ("…" if not case.exact else "")
        gap = f" ⚠ known gap: {KNOWN_GAPS[case.name]}" if case.name in KNOWN_GAPS else ""
        out.append(f"| {number} | {case.name}{gap} | {case.status} | `{shown.replace('|', '¦')}` |")
    return out


if __name__ == "__main__":
    print("\n".join(rows()))
