"""Content hashes of tensors and whole files."""

from __future__ import annotations

import array
import dataclasses
import hashlib
import io
import itertools
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.formats import safetensors as sf
from storage.core.hashing import HashingReader, Sha256Writer, TensorKey, digest_chunks, tensor_digest

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector


def test_tensor_digest_is_sha256_of_the_raw_bytes_whatever_the_buffer() -> None:
    assert tensor_digest(b"abc") == ABC_SHA256
    assert tensor_digest(bytearray(b"abc")) == ABC_SHA256
    assert tensor_digest(memoryview(b"xabcx")[1:4]) == ABC_SHA256
    assert tensor_digest(b"") == hashlib.sha256().hexdigest()


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_chunked_digest_equals_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert digest_chunks(chunks) == tensor_digest(data)


def test_writer_hashes_counts_and_forwards() -> None:
    sink = io.BytesIO()
    writer = Sha256Writer(sink)
    words = array.array("I", [1, 2, 3])
    assert writer.write(b"a") == 1
    assert writer.write(memoryview(words)) == 12  # bytes, not items
    assert writer.write(b"bc") == 2
    expected = b"a" + words.tobytes() + b"bc"
    assert (sink.getvalue(), writer.size, writer.hexdigest()) == (expected, 15, hashlib.sha256(expected).hexdigest())
    assert Sha256Writer().hexdigest() == hashlib.sha256().hexdigest()


def test_a_file_is_parsed_and_hashed_in_one_pass() -> None:
    header = json.dumps({"b": {"dtype": "I16", "shape": [2], "data_offsets": [3, 7]},
                         "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}).encode()  # fmt: skip
    blob = struct.pack("<Q", len(header)) + header + b"abc" + b"\x01\x00\x02\x00"
    reader = HashingReader(io.BytesIO(blob))
    parsed = sf.read_header(reader, file_size=len(blob))
    keys = [
        TensorKey(tensor_digest(data), info.dtype.name, info.shape) for info, data in sf.iter_tensors(reader, parsed)
    ]
    assert (reader.hexdigest(), reader.size) == (hashlib.sha256(blob).hexdigest(), len(blob))
    assert keys == [TensorKey(ABC_SHA256, "U8", (3,)), TensorKey(tensor_digest(b"\x01\x00\x02\x00"), "I16", (2,))]


def test_tensor_keys_differ_by_dtype_and_shape_and_are_frozen() -> None:
    key = TensorKey(ABC_SHA256, "U8", (3,))
    assert len({key, TensorKey(ABC_SHA256, "U8", (3,)), TensorKey(ABC_SHA256, "I8", (3,)),
                TensorKey(ABC_SHA256, "U8", (1, 3))}) == 3  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.dtype = "I8"  # type: ignore[misc]
