"""Object keys: every prefix deltahub writes under, in one place (docs/format.md, "Object keys").

Names are random, never content hashes: no two ingests ever share an object, so GC cannot delete an
object a concurrent ingest has just found "already present".
"""

from __future__ import annotations

import uuid

STAGING_PREFIX = "staging/"
PACK_PREFIX = "packs/"
FRAME_PREFIX = "frames/"
# Xorbs as the Xet CAS received them (their chunks, uncompressed), until a file holds those chunks;
# a xorb that is exactly one file becomes that file's staging copy (docs/format.md, "Xet uploads").
XORB_PREFIX = "xet/xorbs/"
# The prefixes the main GC sweep lists: it deletes what neither a store object nor a staging key names.
# Xorb copies are swept by the Xet GC instead (workers/jobs/gc.py), which also knows the xorb rows.
ALL_PREFIXES = (PACK_PREFIX, FRAME_PREFIX, STAGING_PREFIX)


def staging_key() -> str:
    return f"{STAGING_PREFIX}{uuid.uuid4().hex}"


def pack_key() -> str:
    return f"{PACK_PREFIX}{uuid.uuid4().hex}"


def frame_key() -> str:
    return f"{FRAME_PREFIX}{uuid.uuid4().hex}"


def xorb_key() -> str:
    # Random like the others: a xorb received again after GC took its copy gets a new object, never one
    # a staged file may still own.
    return f"{XORB_PREFIX}{uuid.uuid4().hex}"
