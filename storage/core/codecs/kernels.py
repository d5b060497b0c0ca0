"""The compiled kernels (`_kernels.c`), or a clear error saying how to build them.

There is deliberately no numpy fallback on the production path: it would be 2-3x slower (docs/codecs.md,
"Kernels") and a silently slow store is worse than a loud install error. The numpy specification
(`reference.py`) is only for tests.
"""

from __future__ import annotations

try:
    from storage.core.codecs._kernels import (
        crc32,
        empty,
        merge,
        merge_diff,
        merge_packed,
        split,
        split_diff,
        split_packed,
    )
except ImportError as error:  # pragma: no cover - only on a checkout whose extension was never built
    raise ImportError(
        "deltahub's compiled codec kernels (storage.core.codecs._kernels) are not built. From the repository "
        "root run `pip install -e .` (or `python setup.py build_ext --inplace`); it needs a C compiler "
        "and the Python headers (Debian: apt-get install gcc python3-dev)."
    ) from error

__all__ = ["crc32", "empty", "merge", "merge_diff", "merge_packed", "split", "split_diff", "split_packed"]
