"""Any file no other format claims: opaque bytes, cut into content-defined chunks when large.

A small blob is one segment, stored whole. A blob of `CHUNKED_FROM` bytes or more (a dataset shard, an
optimizer state, a tokenizer file, an archive) is cut where its content says, with the Xet gear hash
(storage/core/xet/chunking.py), into chunks of `min_chunk`..`max_chunk` bytes; each chunk is a segment,
so the next version of the file, with rows inserted, appended or changed, shares every chunk its edits
did not touch: those are deduplicated like tensors, and only the changed chunks are stored. The cut
depends on the bytes alone (never on the name or on what is already stored), so the same bytes always
give the same segments.

Unlike a tensor format's layout, a chunked layout reads the whole file (in `READ_BYTES` pieces, so in
bounded memory); it runs at ingest only, never in the upload request.
"""

from __future__ import annotations

from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange
from storage.core.segments import Segment
from storage.core.xet.chunking import Chunker

FORMAT_ID = "blob"
U8 = DTYPES["U8"]

# Below this a blob is one segment: a chunk row and frame per ~256 KiB would cost more catalog than the
# dedup of a small file (a config, a README) can save.
CHUNKED_FROM = 1 << 20
# The gear hash offers a boundary every 64 KiB on average; skipping `MIN_CHUNK` bytes after each cut gives
# chunks of ~MIN_CHUNK + 64 KiB. Measured by bench/chunked_blobs.py (a 50 MB JSONL shard, then a version
# with a run of rows relabelled, a run deleted and 2.5% appended): with 192 KiB the second version adds
# 0.046 of the first's stored bytes, and coding each chunk alone costs < 0.1% over coding the file whole;
# 32 KiB adds 0.040 for 2.6x the segments, 960 KiB resynchronises late after an edit and adds 0.44.
# The chunker runs at ~95 MB/s on one core (zstd -3: ~290 MB/s on the same bytes, same run).
MIN_CHUNK = 192 << 10
MAX_CHUNK = 1 << 20
# Segments one blob may have (as MAX_TENSORS bounds a tensor file's rows): past `MAX_SEGMENTS` * 256 KiB
# (~25 GB) the chunk sizes double, in powers of two of the file size, so a bigger blob keeps its row count.
MAX_SEGMENTS = MAX_TENSORS
READ_BYTES = 8 << 20


def chunk_bounds(size: int) -> tuple[int, int]:
    """(min_chunk, max_chunk) for a blob of `size` bytes: the defaults, doubled until the expected
    segment count is within MAX_SEGMENTS."""
    scale = 1
    while size // (MIN_CHUNK * scale) > MAX_SEGMENTS:
        scale *= 2
    return MIN_CHUNK * scale, MAX_CHUNK * scale


def chunk_ends(read: ReadRange, size: int) -> list[int]:
    """End offsets of the file's content-defined chunks, ascending; the last is `size`."""
    low, high = chunk_bounds(size)
    chunker = Chunker(min_chunk=low, max_chunk=high)
    ends: list[int] = []
    position = 0
    for start in range(0, size, READ_BYTES):
        for chunk in chunker.feed(read(start, min(size, start + READ_BYTES))):
            position += len(chunk)
            ends.append(position)
    for chunk in chunker.finish():
        position += len(chunk)
        ends.append(position)
    if position != size:
        raise IntegrityError(detail=f"blob of {size} bytes read back as {position} bytes while chunking it")
    return ends


class BlobFormat(FileFormat):
    format_id = FORMAT_ID

    def recognise(self, head: bytes, size: int) -> bool:
        return False  # the fallback: never claimed by content

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        if size < CHUNKED_FROM:
            return FileLayout(FORMAT_ID, size, (Segment(0, 0, size, None, U8, (size,)),), None)
        segments, start = [], 0
        for seq, end in enumerate(chunk_ends(read, size)):
            segments.append(Segment(seq, start, end - start, None, U8, (end - start,)))
            start = end
        return FileLayout(FORMAT_ID, size, tuple(segments), None)
