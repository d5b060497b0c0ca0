"""The Xet protocol's hashes: chunk, xorb (merkle), file and verification-range hashes.

Every hash is 32 bytes of BLAKE3 output, keyed differently per use so that a chunk hash can never be
passed off as a node or file hash. Hashes travel as raw bytes in xorbs and shards; in URLs and in the
client's output they are printed as hex with each 8-byte word reversed (the reference implementation
stores a hash as four little-endian u64 and prints each u64 as a number), so `hash_to_hex` is not
`bytes.hex()`.

The xorb hash is the root of a tree whose shape is set by the content: nodes are cut into groups of 2
to 9, a group ending after the first member (from the third on) whose hash is 0 mod 4. A node's hash is
the keyed hash of its children printed as `"{hex} : {size}\n"` lines, and its size is theirs summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import blake3

HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)

# The spec's keys (random numbers fixed once by the protocol's authors); they separate the hash uses.
DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
     157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)  # fmt: skip
INTERNAL_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
     93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)  # fmt: skip
VERIFICATION_KEY = bytes(
    [127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
     164, 205, 38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195]
)  # fmt: skip
# Files are hashed with an all-zero salt: the key exists so that other deployments could salt theirs.
FILE_SALT = ZERO_HASH

_MEAN_BRANCHING = 4
_MAX_GROUP = 2 * _MEAN_BRANCHING + 1
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

Buffer = bytes | bytearray | memoryview
ChunkRef = tuple[bytes, int]  # (chunk hash, uncompressed length)


def chunk_hash(data: Buffer) -> bytes:
    """The hash of one chunk's (uncompressed) bytes."""
    return blake3.blake3(data, key=DATA_KEY).digest()


def swap_words(digest: bytes) -> bytes:
    """Reverse each 8-byte word of a 32-byte value (its own inverse): between a hash's stored bytes and
    the bytes its hex form spells. A shard stores a file's SHA-256 this way too."""
    if len(digest) != HASH_BYTES:
        raise ValueError(f"a Xet hash is {HASH_BYTES} bytes, got {len(digest)}")
    return b"".join(digest[i : i + 8][::-1] for i in range(0, HASH_BYTES, 8))


def hash_to_hex(digest: bytes) -> str:
    """A hash as the protocol prints it: four 8-byte words, each byte-reversed, in hex."""
    return swap_words(digest).hex()


def hex_to_hash(text: str) -> bytes:
    """The inverse of `hash_to_hex`; ValueError unless `text` is exactly 64 hex digits."""
    if not is_hex_hash(text):
        raise ValueError(f"a Xet hash is {2 * HASH_BYTES} hex digits, got {text[:80]!r}")
    return swap_words(bytes.fromhex(text))


def is_hex_hash(text: str) -> bool:
    return len(text) == 2 * HASH_BYTES and _HEX_DIGITS.issuperset(text)


def _node_hash(group: Sequence[ChunkRef]) -> ChunkRef:
    text = "".join(f"{hash_to_hex(digest)} : {size}\n" for digest, size in group)
    return blake3.blake3(text.encode("ascii"), key=INTERNAL_NODE_KEY).digest(), sum(size for _, size in group)


def _group_end(nodes: Sequence[ChunkRef], start: int) -> int:
    remaining = len(nodes) - start
    if remaining <= 2:
        return len(nodes)
    end = start + min(_MAX_GROUP, remaining)
    for index in range(start + 2, end):
        # The reference reads the hash's last 8 bytes as a little-endian u64; mod 4 needs only byte 24.
        if nodes[index][0][24] % _MEAN_BRANCHING == 0:
            return index + 1
    return end


def merkle_root(nodes: Iterable[ChunkRef]) -> bytes:
    """The root of the aggregation tree over (hash, size) leaves; the zero hash for no leaves."""
    level = list(nodes)
    if not level:
        return ZERO_HASH
    while len(level) > 1:
        parents: list[ChunkRef] = []
        start = 0
        while start < len(level):
            end = _group_end(level, start)
            parents.append(_node_hash(level[start:end]))
            start = end
        level = parents
    return level[0][0]


def xorb_hash(chunks: Iterable[ChunkRef]) -> bytes:
    """A xorb's hash from its chunks' (hash, uncompressed length), in xorb order."""
    return merkle_root(chunks)


def file_hash(chunks: Iterable[ChunkRef], salt: bytes = FILE_SALT) -> bytes:
    """A file's hash from its chunks' (hash, length) in file order; the zero hash for an empty file."""
    leaves = list(chunks)
    if not leaves:
        return ZERO_HASH
    return blake3.blake3(merkle_root(leaves), key=salt).digest()


def verification_hash(chunk_hashes: Iterable[bytes]) -> bytes:
    """The range hash a shard's verification entry holds for one term: proof the uploader had the
    chunks the term names, since it needs their hashes, not just the xorb's."""
    return blake3.blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()
