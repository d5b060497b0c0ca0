"""Read plans cached in process, least recently used evicted first, bounded by entries and bytes.

A plan is cached under its file's plan key (storage/catalog/plans.py `FileHead.plan_key`): the file's
sha256, when it was stored and its plan version, which the catalog bumps whenever a tensor the file
reads through is re-encoded. A reader looks the key up (one primary-key query) on every request, so a
rebase, a settle or a file stored again after GC is never read through a stale plan.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from storage.catalog.plans import FilePlan


class PlanCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, FilePlan] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> FilePlan | None:
        with self._lock:
            plan = self._entries.get(key)
            if plan is not None:
                self._entries.move_to_end(key)
            return plan

    def put(self, key: Hashable, plan: FilePlan) -> None:
        weight = plan.weight
        if weight > self.max_bytes or self.max_entries <= 0:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.weight
            self._entries[key] = plan
            self._bytes += weight
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.weight

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
