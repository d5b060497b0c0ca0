"""Codec benchmark on the real corpus: size ratio and one-thread MB/s, side by side with the references.

    python -m bench.codecs --corpus /work/corpus

Rows per model pair (minilm-bf16, minilm-fp32): the base model's tensors coded alone, and the fine-tune's
tensors coded against the same-named base tensors. Every method runs over the tensors in file order;
runs are interleaved method by method so machine noise hits all of them alike, and the median of --runs
is reported. Every method's output is decoded and compared once before timing. Ends with PASS/FAIL per
target (on the BF16 pair).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import references
from storage.core.codecs import Codec, get_codec
from storage.core.dtypes import DTYPES
from storage.core.frames import DEFAULT_FRAME_BYTES, decode_tensor, encode_tensor

Tensor = tuple[str, str, bytes]  # name, dtype, raw bytes


def read_tensors(path: Path) -> list[Tensor]:
    """The tensors of a safetensors file in the order their bytes appear."""
    data = path.read_bytes()
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    ordered = sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])
    start = 8 + length
    return [(name, info["dtype"], data[start + info["data_offsets"][0] : start + info["data_offsets"][1]])
            for name, info in ordered]  # fmt: skip


@dataclass
class Method:
    name: str
    encode: Callable[[bytes, str, bytes | None], Any]
    decode: Callable[[Any, str, bytes | None], bytes]
    size: Callable[[Any], int]
    # Untimed, before each timed encode pass: a copy for an encoder that overwrites its input.
    prepare: Callable[[bytes], Any] = field(default=lambda raw: raw)
    encode_times: list[float] = field(default_factory=list)
    decode_times: list[float] = field(default_factory=list)
    encoded_bytes: int = 0


def reference(
    name: str, make: Callable[[str], tuple[Any, Any]], prepare: Callable[[bytes], Any] | None = None
) -> Method:
    cache: dict[str, tuple[Any, Any]] = {}

    def pair(dtype: str) -> tuple[Any, Any]:
        if dtype not in cache:
            cache[dtype] = make(dtype)
        return cache[dtype]

    method = Method(
        name,
        lambda raw, dtype, base: pair(dtype)[0](raw, base),
        lambda blob, dtype, base: pair(dtype)[1](blob, base),
        references.encoded_size,
    )
    if prepare is not None:
        method.prepare = prepare
    return method


def deltahub(name: str, candidates: list[Codec] | None, frame_bytes: int, verify: bool = False) -> Method:
    # verify=False is the codec's own speed; verify=True adds the write path's decode-and-compare, which
    # the engine always does (the references do no such check, so the targets are read without it).
    return Method(
        name,
        lambda raw, dtype, base: encode_tensor(
            raw, DTYPES[dtype], base, frame_bytes=frame_bytes, verify=verify, candidates=candidates
        ),
        lambda encoded, dtype, base: decode_tensor(encoded, base),
        lambda encoded: encoded.encoded_size,
    )


def deltahub_picked(work: list[tuple[str, bytes, bytes | None]], frame_bytes: int) -> Method:
    """Each tensor encoded straight with the codec the chooser picks for it: the chooser's sampling
    overhead is this row's encode time against the chooser's."""
    picked: dict[int, Codec] = {}
    for dtype, raw, base in work:
        encoded = encode_tensor(raw, DTYPES[dtype], base, frame_bytes=frame_bytes, verify=False)
        picked[id(raw)] = get_codec(encoded.codec_id, encoded.config)
    return Method(
        "deltahub chooser's picks, no sampling",
        lambda raw, dtype, base: encode_tensor(
            raw, DTYPES[dtype], base, frame_bytes=frame_bytes, verify=False, candidates=[picked[id(raw)]]
        ),
        lambda encoded, dtype, base: decode_tensor(encoded, base),
        lambda encoded: encoded.encoded_size,
    )


def run_row(methods: list[Method], work: list[tuple[str, bytes, bytes | None]], runs: int) -> int:
    total = sum(len(raw) for _, raw, _ in work)
    for method in methods:
        encoded = [method.encode(method.prepare(raw), dtype, base) for dtype, raw, base in work]
        for blob, (dtype, raw, base) in zip(encoded, work, strict=True):
            if method.decode(blob, dtype, base) != raw:
                raise SystemExit(f"{method.name} does not round-trip")
        method.encoded_bytes = sum(method.size(blob) for blob in encoded)
        method.encoded = encoded  # type: ignore[attr-defined]
    for _ in range(runs):
        for method in methods:
            inputs = [method.prepare(raw) for _, raw, _ in work]
            start = time.perf_counter()
            for (dtype, _, base), raw in zip(work, inputs, strict=True):
                method.encode(raw, dtype, base)
            method.encode_times.append(time.perf_counter() - start)
            del inputs
            start = time.perf_counter()
            for blob, (dtype, _, base) in zip(method.encoded, work, strict=True):  # type: ignore[attr-defined]
                method.decode(blob, dtype, base)
            method.decode_times.append(time.perf_counter() - start)
    return total


def mbps(total: int, times: list[float]) -> float:
    return total / 1e6 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.environ.get("DELTAHUB_CORPUS"), help="default: $DELTAHUB_CORPUS")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frame-bytes", type=int, default=DEFAULT_FRAME_BYTES)
    args = parser.parse_args()
    if not args.corpus:
        parser.error("give --corpus or set DELTAHUB_CORPUS")
    corpus = Path(args.corpus)
    results: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {}
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (one thread per method)")
    print("| model | row | method | ratio | encode MB/s | decode MB/s |\n|---|---|---|---|---|---|")
    for family, dtype in (("minilm-bf16", "BF16"), ("minilm-fp32", "F32")):
        base_tensors = read_tensors(corpus / family / "base" / "model.safetensors")
        tuned = read_tensors(corpus / family / "sre" / "model.safetensors")
        by_name = {name: (dt, raw) for name, dt, raw in base_tensors}
        plain_work = [(dt, raw, None) for _, dt, raw in base_tensors if dt == dtype]
        delta_work = [(dt, raw, by_name[name][1]) for name, dt, raw in tuned
                      if dt == dtype and name in by_name and len(by_name[name][1]) == len(raw)]  # fmt: skip
        plain_methods = [
            reference("zstd-3 raw", lambda dt: references.zstd_raw(3)),
            reference("zipnn", references.zipnn, references.ZIPNN_PREPARE),
            deltahub("deltahub plain skip=1", [get_codec("plain", {"skip": 1})], args.frame_bytes),
            deltahub("deltahub plain skip=3", [get_codec("plain", {"skip": 3})], args.frame_bytes),
            deltahub("deltahub packed skip=3", [get_codec("packed", {"skip": 3})], args.frame_bytes),
            deltahub("deltahub chooser", None, args.frame_bytes),
            deltahub("deltahub chooser, verify", None, args.frame_bytes, verify=True),
            deltahub_picked(plain_work, args.frame_bytes),
        ]
        delta_methods = [
            reference("zstd-3 raw", lambda dt: references.zstd_raw(3)),
            reference("zipnn delta (XOR)", lambda dt: references.zipnn(dt, delta=True)),
            reference("ZipLLM BitX reference", references.zipllm_bitx),
            deltahub("deltahub bitx", [get_codec("bitx")], args.frame_bytes),
            deltahub("deltahub diff", [get_codec("diff")], args.frame_bytes),
            deltahub("deltahub diff group", [get_codec("diff", {"group": True})], args.frame_bytes),
            deltahub("deltahub chooser", None, args.frame_bytes),
            deltahub("deltahub chooser, verify", None, args.frame_bytes, verify=True),
            deltahub_picked(delta_work, args.frame_bytes),
        ]
        for row, methods, work in (("base plain", plain_methods, plain_work),
                                   ("fine-tune delta vs base", delta_methods, delta_work)):  # fmt: skip
            total = run_row(methods, work, args.runs)
            for method in methods:
                ratio = method.encoded_bytes / total
                enc, dec = mbps(total, method.encode_times), mbps(total, method.decode_times)
                results.setdefault((dtype, row), {})[method.name] = (ratio, enc, dec)
                print(f"| {family} | {row} | {method.name} | {ratio:.4f} | {enc:.0f} | {dec:.0f} |", flush=True)
    verdicts = targets(results)
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    for line in notes(results):
        print(f"note: {line}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    sys.exit(0)


def targets(results: dict[tuple[str, str], dict[str, tuple[float, float, float]]]) -> list[tuple[str, bool]]:
    plain, delta = results[("BF16", "base plain")], results[("BF16", "fine-tune delta vs base")]
    ours_plain, zipnn = plain["deltahub chooser"], plain["zipnn"]
    ours_delta, bitx, zipnn_delta = (
        delta["deltahub chooser"],
        delta["ZipLLM BitX reference"],
        delta["zipnn delta (XOR)"],
    )
    return [
        (f"BF16 delta {ours_delta[0]:.4f} <= 0.85 x BitX reference {bitx[0]:.4f} "
         f"({ours_delta[0] / bitx[0]:.3f}x)", ours_delta[0] <= 0.85 * bitx[0]),
        (f"BF16 plain {ours_plain[0]:.4f} <= zipnn {zipnn[0]:.4f}", ours_plain[0] <= zipnn[0]),
        (f"BF16 plain encode {ours_plain[1]:.0f} >= zipnn compress {zipnn[1]:.0f} MB/s", ours_plain[1] >= zipnn[1]),
        (f"BF16 plain decode {ours_plain[2]:.0f} >= zipnn decompress {zipnn[2]:.0f} MB/s", ours_plain[2] >= zipnn[2]),
        (f"BF16 delta encode {ours_delta[1]:.0f} >= zipnn delta compress {zipnn_delta[1]:.0f} MB/s",
         ours_delta[1] >= zipnn_delta[1]),
        (f"BF16 delta decode {ours_delta[2]:.0f} >= zipnn delta decompress {zipnn_delta[2]:.0f} MB/s",
         ours_delta[2] >= zipnn_delta[2]),
    ]  # fmt: skip


def notes(results: dict[tuple[str, str], dict[str, tuple[float, float, float]]]) -> list[str]:
    """What the targets leave out: the engine's verified encode, and what the chooser's sampling costs."""
    lines = []
    for (dtype, row), methods in results.items():
        zipnn = methods.get("zipnn") or methods.get("zipnn delta (XOR)")
        chooser, verified = methods["deltahub chooser"], methods["deltahub chooser, verify"]
        picked = methods["deltahub chooser's picks, no sampling"]
        if zipnn is not None:
            lines.append(f"{dtype} {row}: encode with verify {verified[1]:.0f} MB/s vs zipnn compress {zipnn[1]:.0f}")
        lines.append(f"{dtype} {row}: chooser sampling costs {picked[1] / chooser[1] - 1:.0%} of encode time "
                     f"({chooser[1]:.0f} MB/s against {picked[1]:.0f} coding with its picks directly)")  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
