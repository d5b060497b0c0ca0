"""Any file no other format claims: one opaque segment, stored whole (deduplicated and plain-coded)."""

from __future__ import annotations

from storage.core.dtypes import DTYPES
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange
from storage.core.segments import Segment

FORMAT_ID = "blob"


class BlobFormat(FileFormat):
    format_id = FORMAT_ID

    def recognise(self, head: bytes, size: int) -> bool:
        return False  # the fallback: never claimed by content

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        return FileLayout(FORMAT_ID, size, (Segment(0, 0, size, None, DTYPES["U8"], (size,)),), None)
