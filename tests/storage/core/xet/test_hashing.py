"""Xet hashes: hex form, keyed chunk hashes, the merkle aggregation and file hashes."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.xet import hashing
from storage.core.xet.hashing import (
    chunk_hash,
    file_hash,
    hash_to_hex,
    hex_to_hash,
    merkle_root,
    swap_words,
    verification_hash,
    xorb_hash,
)

hashes = st.binary(min_size=32, max_size=32)


@given(hashes)
def test_hex_round_trips(digest: bytes) -> None:
    assert hex_to_hash(hash_to_hex(digest)) == digest
    assert hash_to_hex(digest) == swap_words(digest).hex()


def test_hex_reverses_each_word() -> None:
    # The protocol prints a hash as four little-endian u64 numbers: byte 0 is the 16th hex pair.
    digest = bytes(range(32))
    assert hash_to_hex(digest) == "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"


@pytest.mark.parametrize("text", ["", "00" * 31, "zz" * 32, "0" * 65, "g" + "0" * 63])
def test_hex_refuses_anything_but_64_hex_digits(text: str) -> None:
    with pytest.raises(ValueError):
        hex_to_hash(text)


def test_chunk_hash_is_blake3_keyed_with_the_data_key() -> None:
    assert chunk_hash(b"abc") == blake3.blake3(b"abc", key=hashing.DATA_KEY).digest()
    assert chunk_hash(b"abc") != blake3.blake3(b"abc").digest()


def test_no_chunks_hash_to_zero() -> None:
    assert xorb_hash([]) == file_hash([]) == bytes(32)


def test_one_chunk_is_its_own_xorb_hash() -> None:
    digest = chunk_hash(b"x")
    assert xorb_hash([(digest, 1)]) == digest
    assert file_hash([(digest, 1)]) == blake3.blake3(digest, key=bytes(32)).digest()


def _leaves(count: int) -> list[tuple[bytes, int]]:
    return [(chunk_hash(i.to_bytes(4, "little")), 1000 + i) for i in range(count)]


def _node(group: list[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_to_hex(h)} : {size}\n" for h, size in group)
    return blake3.blake3(text.encode(), key=hashing.INTERNAL_NODE_KEY).digest(), sum(size for _, size in group)


def test_two_and_three_leaves_make_one_node() -> None:
    # A group has at least two members, and a cut after the third of three still takes all three.
    for count in (2, 3):
        leaves = _leaves(count)
        assert xorb_hash(leaves) == _node(leaves)[0]


def test_groups_end_after_a_hash_that_is_zero_mod_4() -> None:
    leaves = _leaves(40)
    # Recompute the first level by the rule: from the third member on, a member whose last 8 bytes
    # (as a little-endian number) are 0 mod 4 closes the group; no group exceeds 9.
    level, start = [], 0
    while start < len(leaves):
        end = min(start + 9, len(leaves))
        if len(leaves) - start > 2:
            for i in range(start + 2, end):
                if int.from_bytes(leaves[i][0][24:], "little") % 4 == 0:
                    end = i + 1
                    break
        else:
            end = len(leaves)
        level.append(_node(leaves[start:end]))
        start = end
    assert 1 < len(level) < len(leaves)
    assert merkle_root(leaves) == merkle_root(level)


def test_sizes_are_part_of_the_hash() -> None:
    leaves = _leaves(5)
    moved = [(leaves[0][0], leaves[0][1] + 1), *leaves[1:]]
    assert xorb_hash(leaves) != xorb_hash(moved)


def test_file_hash_is_the_root_keyed_with_the_salt() -> None:
    leaves = _leaves(12)
    root = xorb_hash(leaves)
    assert file_hash(leaves) == blake3.blake3(root, key=bytes(32)).digest()
    salt = bytes(range(32))
    assert file_hash(leaves, salt) == blake3.blake3(root, key=salt).digest()


def test_verification_hash_covers_the_raw_chunk_hashes() -> None:
    digests = [h for h, _ in _leaves(3)]
    assert verification_hash(digests) == blake3.blake3(b"".join(digests), key=hashing.VERIFICATION_KEY).digest()
    assert verification_hash(digests) != verification_hash(digests[:2])
