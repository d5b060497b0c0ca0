"""Object keys: every prefix deltahub writes under, in one place (docs/format.md, "Object keys").

Names are random, never content hashes: no two ingests ever share an object, so GC cannot delete an
object a concurrent ingest has just found "already present".
"""

from __future__ import annotations

import uuid

STAGING_PREFIX = "staging/"
PACK_PREFIX = "packs/"
FRAME_PREFIX = "frames/"
# Every prefix holding deltahub's objects: GC sweeps the ones the catalog does not know.
ALL_PREFIXES = (PACK_PREFIX, FRAME_PREFIX, STAGING_PREFIX)


def staging_key() -> str:
    return f"{STAGING_PREFIX}{uuid.uuid4().hex}"


def pack_key() -> str:
    return f"{PACK_PREFIX}{uuid.uuid4().hex}"


def frame_key() -> str:
    return f"{FRAME_PREFIX}{uuid.uuid4().hex}"
