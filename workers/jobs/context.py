"""What a job may use of the hub: the settings, the object store, the reader and catalog sessions."""

from __future__ import annotations

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

    def session(self) -> AbstractContextManager[Session]: ...
