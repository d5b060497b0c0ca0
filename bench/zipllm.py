"""The ZipLLM reference, for comparison in the same run: what it would store for a corpus.

ZipLLM (NSDI'26) stores: each unique file once; each unique tensor once; a tensor of a model with a
declared base as BitX against the same-named base tensor (XOR, then an exponent byte stream and a
sign+mantissa byte stream, zstd-3 each); everything else zstd-3. Its public code deltas only against
the declared root and needs that declaration; this reproduces that accounting on our corpus.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

ZSTD_LEVEL = 3
_WIDTH = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}
_EXPONENT_BITS = {"BF16": 8, "F16": 5, "F32": 8, "F64": 11}


def zstd3(data: bytes) -> int:
    return len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)) if data else 0


def bitx_size(target: bytes, base: bytes, dtype: str) -> int:
    """ZipLLM's BitX: XOR, split into an exponent stream and a sign+mantissa stream, zstd-3 each."""
    width = _WIDTH.get(dtype)
    if width is None:
        xor = np.frombuffer(target, np.uint8) ^ np.frombuffer(base, np.uint8)
        return zstd3(xor.tobytes())
    utype = {2: "<u2", 4: "<u4", 8: "<u8"}[width]
    x = np.frombuffer(target, utype) ^ np.frombuffer(base, utype)
    bits = width * 8
    ebits = _EXPONENT_BITS[dtype]
    mbits = bits - 1 - ebits
    exponent = (x >> x.dtype.type(mbits)) & x.dtype.type((1 << ebits) - 1)
    sign = x >> x.dtype.type(bits - 1)
    mantissa = x & x.dtype.type((1 << mbits) - 1)
    sign_mantissa = (sign << x.dtype.type(mbits)) | mantissa
    exp_bytes = exponent.astype("<u2" if ebits > 8 else "<u1").tobytes()
    sm_bytes = sign_mantissa.astype(utype).tobytes()
    return zstd3(exp_bytes) + zstd3(sm_bytes)


def read_safetensors(path: Path) -> tuple[bytes, dict[str, tuple[str, list[int], bytes]]]:
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    tensors = {
        name: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]])
        for name, v in header.items()
    }
    return data[: 8 + n], tensors


@dataclass
class ZipLLMAccount:
    files: int = 0
    unique_files: int = 0
    logical_bytes: int = 0
    stored_bytes: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: {"bitx": 0, "zstd_tensors": 0, "zstd_other": 0})


def zipllm_reference(models: Iterable[tuple[str, Path, list[str], str | None]]) -> ZipLLMAccount:
    """models: (repo, directory, files, declared base repo). Bases are looked up by repo name."""
    models = list(models)
    dirs = {repo: (d, files) for repo, d, files, _ in models}
    account = ZipLLMAccount()
    seen_files: set[str] = set()
    seen_tensors: set[str] = set()
    for _repo, directory, files, declared in models:
        for name in files:
            path = directory / name
            data = path.read_bytes()
            account.files += 1
            account.logical_bytes += len(data)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen_files:
                continue
            seen_files.add(digest)
            account.unique_files += 1
            if not name.endswith(".safetensors"):
                size = zstd3(data)
                account.stored_bytes += size
                account.by_source["zstd_other"] += size
                continue
            prefix, tensors = read_safetensors(path)
            account.stored_bytes += zstd3(prefix)
            base_tensors = {}
            if declared and declared in dirs and (dirs[declared][0] / name).exists():
                base_tensors = read_safetensors(dirs[declared][0] / name)[1]
            for tname, (dtype, shape, raw) in tensors.items():
                tdigest = hashlib.sha256(raw).hexdigest()
                if tdigest in seen_tensors:
                    continue
                seen_tensors.add(tdigest)
                base = base_tensors.get(tname)
                if base is not None and base[0] == dtype and base[1] == shape:
                    size = bitx_size(raw, base[2], dtype)
                    account.by_source["bitx"] += size
                else:
                    size = zstd3(raw)
                    account.by_source["zstd_tensors"] += size
                account.stored_bytes += size
    return account
