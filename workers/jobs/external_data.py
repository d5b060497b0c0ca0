"""Ingest's side of ONNX external data (storage/core/formats/onnx_data.py): a blob that an ONNX model
beside it in the same revision names as its external data is cut into that model's tensors."""

from __future__ import annotations

import logging

from storage.catalog import files, relatives
from storage.core.errors import InvalidInput
from storage.core.formats.base import FileLayout
from storage.core.formats.onnx import FORMAT_ID as ONNX
from storage.core.formats.onnx import OnnxFormat
from storage.core.formats.onnx_data import data_layout, references
from workers.jobs.context import JobContext

log = logging.getLogger(__name__)


def external_data_layout(ctx: JobContext, sha256: str, repo_id: int | None, size: int) -> FileLayout | None:
    """The file's layout as the external data of an ONNX model beside it, or None (it stays a blob).
    The first model (by path) naming the file decides; a model that does not parse names nothing."""
    if repo_id is None:
        return None
    with ctx.session() as s:
        found = relatives.files_beside(s, sha256, repo_id, ONNX)
    if found is None:
        return None
    path, models = found
    for model_path, model_sha in models:
        with ctx.session() as s:
            model_size = files.snapshot(s, model_sha).size

        def read(start: int, end: int, sha: str = model_sha) -> bytes:
            return b"".join(ctx.read(sha, start, end))

        try:
            externals = OnnxFormat().externals(read, model_size, max_header_bytes=ctx.settings.max_header_bytes,
                                               max_tensors=ctx.settings.max_header_tensors)  # fmt: skip
        except InvalidInput:
            continue
        placed = references(model_path, externals, path)
        if not placed:
            continue
        layout = data_layout(placed, size)
        if isinstance(layout, str):
            log.warning("file %s is named as external data by %s but stays a blob: %s", sha256, model_path, layout)
            return None
        return layout
    return None
