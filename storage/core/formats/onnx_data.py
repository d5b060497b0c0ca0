"""ONNX external data files, cut into tensors by the model that names them.

A model past protobuf's 2 GB limit (and any model saved with `save_as_external_data`) keeps its
initializers' bytes in data files beside the `.onnx`: each external initializer names a `location`
(a path relative to the model's directory), an `offset` and a `length`. A data file has no structure
of its own, so nothing in its bytes says it is one: it is uploaded as a blob, and ingest, finding a
model in the same directory of the same revision whose initializers name it, cuts it here into one
tensor segment per initializer and opaque spans between them. Its tensors then dedup and delta like
any other (the same weights as a safetensors twin store once).

Everything the model says is hostile input and checked against the data file: a location that is
absolute, has a backslash, a `..` or `.` component, an empty component or a NUL names no file (never
resolved, never opened: the data file is looked up by path among the revision's files); offsets and
lengths are decimal integers; every tensor lies inside the file, its length is what its dtype and dims
need, no two overlap and no name repeats. A reference that breaks a rule is not used: when any tensor
naming the file cannot be placed, the file stays a blob (its bytes are kept as they are; a layout from
part of the references would be correct too, but a model that lies about one tensor says nothing
reliable about the rest).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from storage.core.dtypes import DType
from storage.core.formats.base import FileLayout, TensorEntry
from storage.core.formats.blob import FORMAT_ID as BLOB
from storage.core.formats.onnx import External
from storage.core.segments import Segment, opaque

# Decimal digits an offset or a length may have (2**63 has 19).
MAX_DIGITS = 19


@dataclass(frozen=True, slots=True)
class Placed:
    """An external initializer's bytes in its data file."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def resolve(model_path: str, location: str) -> str | None:
    """The repository path `location` names, relative to the model at `model_path`; None when the
    location is not a plain relative path."""
    parts = location.split("/")
    if not location or "\\" in location or "\x00" in location or location.startswith("/"):
        return None
    if any(part in ("", ".", "..") for part in parts):
        return None
    return posixpath.join(posixpath.dirname(model_path), location)


def _number(text: bytes | None, default: int | None) -> int | None:
    if text is None:
        return default
    if not text or len(text) > MAX_DIGITS or not text.isdigit() or not text.isascii():
        return None
    return int(text)


def references(model_path: str, tensors: Sequence[External], data_path: str) -> list[Placed | str]:
    """For each initializer naming `data_path`: where it lies, or why it cannot be placed."""
    out: list[Placed | str] = []
    for t in tensors:
        entries = dict(t.entries)
        try:
            location = entries.get(b"location", b"").decode("utf-8")
        except UnicodeDecodeError:
            continue  # names no path we could hold
        if resolve(model_path, location) != data_path:
            continue
        count = 1
        for d in t.shape:
            count *= d
        needed = t.dtype.nbytes(count)
        offset, length = _number(entries.get(b"offset"), 0), _number(entries.get(b"length"), needed)
        if offset is None or length is None:
            out.append(f"initializer {t.name!r}: offset or length is not a decimal integer")
        elif length != needed:
            out.append(f"initializer {t.name!r}: length {length} but {t.dtype.name} {list(t.shape)} needs {needed}")
        else:
            out.append(Placed(t.name, t.dtype, t.shape, offset, length))
    return out


def data_layout(placed: Sequence[Placed | str], size: int) -> FileLayout | str:
    """The data file of `size` bytes cut at its initializers, or why it cannot be (it stays a blob)."""
    reasons = [p for p in placed if isinstance(p, str)]
    if reasons:
        return reasons[0]
    tensors = sorted((p for p in placed if isinstance(p, Placed)), key=lambda p: (p.offset, p.nbytes))
    if not tensors:
        return "no initializer names it"
    segments: list[Segment] = []
    entries: list[TensorEntry] = []
    names: set[str] = set()
    position = 0
    for t in tensors:
        if t.name in names:
            return f"initializer {t.name!r} is listed twice"
        names.add(t.name)
        if t.offset < position:
            return f"initializer {t.name!r} at {t.offset} overlaps the bytes before {position}"
        if t.offset + t.nbytes > size:
            return f"initializer {t.name!r} ends at {t.offset + t.nbytes}, past the file's {size} bytes"
        if t.offset > position:
            segments.append(opaque(len(segments), position, t.offset - position))
        segments.append(Segment(len(segments), t.offset, t.nbytes, t.name, t.dtype, t.shape))
        entries.append(TensorEntry(t.name, t.dtype, t.shape, t.offset, t.nbytes))
        position = t.offset + t.nbytes
    if size > position:
        segments.append(opaque(len(segments), position, size - position))
    return FileLayout(BLOB, size, tuple(segments), tuple(entries))
