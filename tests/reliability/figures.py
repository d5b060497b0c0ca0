"""The figures the reliability suite reports (docs/reliability.md): collected as tests pass.

Set ``DELTAHUB_RELIABILITY_REPORT=<path>`` to have them written there as JSON when the session ends;
they are also printed in pytest's terminal summary.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Figures:
    kill_points: set[str] = field(default_factory=set)  # distinct crash points survived
    kill_runs: int = 0  # processes killed and recovered from (points × backends × variants)
    outages: int = 0  # S3 outages ridden out
    concurrent_clients: int = 0  # the most clients that pushed and pulled at once
    bad_inputs: int = 0  # hostile requests answered with the expected status and message
    fuzz_iterations: int = 0  # parser runs on generated input
    bytes_checked: int = 0  # bytes of committed files read back after a crash or under load
    bytes_lost: int = 0  # of those, bytes that did not come back exact (must stay 0)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def survived(self, point: str, bytes_checked: int, bytes_lost: int) -> None:
        with self._lock:
            self.kill_points.add(point.split(":")[0])
            self.kill_runs += 1
            self.bytes_checked += bytes_checked
            self.bytes_lost += bytes_lost

    def clients(self, count: int) -> None:
        with self._lock:
            self.concurrent_clients = max(self.concurrent_clients, count)

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        data["kill_points"] = len(self.kill_points)
        data["kill_point_names"] = sorted(self.kill_points)
        return data

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


FIGURES = Figures()
