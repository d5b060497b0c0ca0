"""The registry of file formats: which format a file is (by its content), and its parsed layout.

Every way of reading a file's structure goes through here with a ranged-read callable, bounded by
`max_header_bytes`: staging at upload, ingest, lineage on stored files. The catalog stores a file's
format id (file_objects.kind), so a stored file is always re-read by the format that parsed it.
Formats are tried in registration order; a file none of them claims, or whose claimed structure does
not parse, is a blob.
"""

from __future__ import annotations

from storage.core.errors import IntegrityError, InvalidInput
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange
from storage.core.formats.blob import BlobFormat

_FORMATS: dict[str, FileFormat] = {}
_FALLBACK = BlobFormat()


class UnknownFormat(IntegrityError):
    """unknown file format {format_id!r}: the catalog names a format this version does not have"""


def register_format(fmt: FileFormat) -> FileFormat:
    """Make `fmt` recognisable and its stored files readable. A format id is never reused."""
    existing = _FORMATS.get(fmt.format_id)
    if existing is not None and type(existing) is not type(fmt):
        raise ValueError(f"format id {fmt.format_id!r} is already registered to {type(existing).__name__}")
    if fmt.format_id == _FALLBACK.format_id:
        raise ValueError(f"format id {fmt.format_id!r} is the fallback's")
    _FORMATS[fmt.format_id] = fmt
    return fmt


def get_format(format_id: str) -> FileFormat:
    if format_id == _FALLBACK.format_id:
        return _FALLBACK
    fmt = _FORMATS.get(format_id)
    if fmt is None:
        raise UnknownFormat(format_id=format_id)
    return fmt


def registered_formats() -> list[FileFormat]:
    """Every format, in detection order, the fallback (blob) last."""
    return [*_FORMATS.values(), _FALLBACK]


def parses_tensors(format_id: str) -> bool:
    return get_format(format_id).parses_tensors


def probe_bytes() -> int:
    """Leading bytes `sniff_format` needs to see."""
    return max((fmt.probe_bytes for fmt in _FORMATS.values()), default=0)


def sniff_format(head: bytes, size: int) -> FileFormat:
    """The first format whose cheap content sniff claims the file (its first `probe_bytes()` bytes);
    blob when none does. What an upload records while the request streams: parsing waits for ingest."""
    for fmt in _FORMATS.values():
        if fmt.recognise(head[: fmt.probe_bytes], size):
            return fmt
    return _FALLBACK


def detect_format(read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS) -> FileFormat:
    """The first format that recognises the file and parses it; blob when none does."""
    probe = probe_bytes()
    head = read(0, min(size, probe)) if probe else b""
    for fmt in _FORMATS.values():
        if not fmt.recognise(head[: fmt.probe_bytes], size):
            continue
        try:
            fmt.layout(read, size, max_header_bytes=max_header_bytes, max_tensors=max_tensors)
        except InvalidInput:
            continue  # looks like it, but is not: kept as the bytes it is
        return fmt
    return _FALLBACK


def read_layout(
    format_id: str, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
) -> FileLayout:
    """The layout of a file of format `format_id` (what upload sniffed and the catalog recorded)."""
    return get_format(format_id).layout(read, size, max_header_bytes=max_header_bytes, max_tensors=max_tensors)
