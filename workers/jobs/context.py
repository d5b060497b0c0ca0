"""What a job may use of the hub: settings, the object store, the reader and catalog sessions.

Jobs are typed against this Protocol, not the concrete `storage.app.hub.Hub`, which satisfies it
structurally; a job therefore cannot reach for the HTTP-facing use cases, and a test or another runner
can hand a job any object that has these four things.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.app.reader import Reader
    from storage.objectstore import ObjectStore
    from storage.settings import Settings


class JobContext(Protocol):
    settings: Settings
    store: ObjectStore
    reader: Reader

    def session(self) -> AbstractContextManager[Session]:
        """A catalog transaction: committed when the block ends, rolled back if it raises."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a file, from staging or rebuilt from its frames (verify reads both)."""
        ...

    def forget_files(self, sha256s: Iterable[str]) -> None:
        """Files GC deleted from the catalog: their hot copies (storage/app/hotfiles.py) are deleted."""
        ...
