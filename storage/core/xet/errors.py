"""One exception per rule of the Xet formats; each docstring's first line is its message template.

All are `InvalidInput` (HTTP 400): they describe an upload that breaks the protocol, never a fault of
ours. Hashes in messages are printed the way the protocol prints them (`hashing.hash_to_hex`).
"""

from __future__ import annotations

from storage.core.errors import InvalidInput


class XetFormatError(InvalidInput):
    """invalid Xet data: {detail}"""


# --- xorbs -----------------------------------------------------------------------------------------


class XorbError(XetFormatError):
    """invalid xorb: {detail}"""


class XorbTooLarge(XorbError):
    """xorb is {size} bytes, more than the limit of {limit}"""


class XorbEmpty(XorbError):
    """xorb holds no chunks"""


class TooManyChunks(XorbError):
    """xorb holds more than {limit} chunks"""


class XorbDataTooLarge(XorbError):
    """xorb's chunks add up to more than {limit} uncompressed bytes"""


class ChunkHeaderTruncated(XorbError):
    """chunk {index} at byte {offset}: header needs 8 bytes but {available} remain"""


class ChunkVersionUnsupported(XorbError):
    """chunk {index} at byte {offset}: header version {version} is not supported (only 0)"""


class UnknownCompression(XorbError):
    """chunk {index} at byte {offset}: unknown compression scheme {scheme}"""


class ChunkTooLarge(XorbError):
    """chunk {index} at byte {offset}: {length} uncompressed bytes, more than the limit of {limit}"""


class EmptyChunk(XorbError):
    """chunk {index} at byte {offset}: declares 0 uncompressed bytes"""


class CompressedChunkTooLarge(XorbError):
    """chunk {index} at byte {offset}: {length} compressed bytes, more than the limit of {limit}"""


class ChunkDataTruncated(XorbError):
    """chunk {index} at byte {offset}: header declares {length} compressed bytes but {available} remain"""


class StoredChunkSizeMismatch(XorbError):
    """chunk {index} at byte {offset}: stored uncompressed, yet declares {compressed} compressed and {uncompressed} uncompressed bytes"""  # noqa: E501


class DecompressionFailed(XorbError):
    """chunk {index} at byte {offset}: {scheme} data does not decompress: {reason}"""


class DecompressionBomb(XorbError):
    """chunk {index} at byte {offset}: {scheme} data expands past the declared {declared} bytes"""


class DecompressedSizeMismatch(XorbError):
    """chunk {index} at byte {offset}: declares {declared} uncompressed bytes but decompresses to {actual}"""


class XorbFooterInvalid(XorbError):
    """xorb footer at byte {offset}: {problem}"""


class XorbFooterMismatch(XorbError):
    """xorb footer disagrees with the chunks: {problem}"""


class XorbHashMismatch(XorbError):
    """xorb hashes to {actual}, not {expected}"""


# --- shards ----------------------------------------------------------------------------------------


class ShardError(XetFormatError):
    """invalid shard: {detail}"""


class ShardTooLarge(ShardError):
    """shard is {size} bytes, more than the limit of {limit}"""


class ShardTruncated(ShardError):
    """shard ends inside the {part} at byte {offset}: {needed} bytes needed, {available} remain"""


class ShardBadMagic(ShardError):
    """shard does not start with the MDB shard tag"""


class ShardVersionUnsupported(ShardError):
    """shard {part} version {version} is not supported (only {supported})"""


class ShardFooterSizeInvalid(ShardError):
    """shard header declares a {size}-byte footer; only 0 (none) or {expected} are valid"""


class ShardFooterInvalid(ShardError):
    """shard footer: {problem}"""


class ShardTrailingBytes(ShardError):
    """shard has {count} bytes after its {part} at byte {offset}"""


class UnknownFileFlags(ShardError):
    """file {file}: unknown flag bits {flags:#010x}"""


class FileWithoutTerms(ShardError):
    """file {file}: has no terms"""


class TooManyEntries(ShardError):
    """{part} {entry}: declares {count} entries after its header, but only {limit} fit in the rest of the shard"""


class InvalidTermRange(ShardError):
    """file {file} term {term}: chunk range [{start}, {end}) is empty or inverted"""


class InvalidTermLength(ShardError):
    """file {file} term {term}: unpacked length {length} is outside 1..{limit}"""


class XorbEntryEmpty(ShardError):
    """xorb {xorb}: lists no chunks"""


class XorbEntryChunkInvalid(ShardError):
    """xorb {xorb} chunk {index}: {problem}"""


class XorbEntrySizeMismatch(ShardError):
    """xorb {xorb}: declares {declared} bytes but its chunks add up to {actual}"""


class DuplicateXorbEntry(ShardError):
    """xorb {xorb} is listed twice"""


# --- file reconstructions (a shard's file entries checked against the chunks they name) --------------


class FileCheckError(XetFormatError):
    """file does not match its chunks: {detail}"""


class UnknownXorb(FileCheckError):
    """file {file} term {term}: xorb {xorb} is neither stored nor in this upload"""


class TermOutOfRange(FileCheckError):
    """file {file} term {term}: chunks [{start}, {end}) reach past xorb {xorb}'s {count} chunks"""


class TermLengthMismatch(FileCheckError):
    """file {file} term {term}: declares {declared} bytes but its chunks add up to {actual}"""


class FileHashMismatch(FileCheckError):
    """file's chunks hash to {actual}, not {expected}"""


class VerificationMissing(FileCheckError):
    """file {file}: has {terms} terms but {entries} verification entries"""


class VerificationMismatch(FileCheckError):
    """file {file} term {term}: verification hash {declared} does not match the chunks' {actual}"""


class Sha256Mismatch(FileCheckError):
    """file {file}: content has SHA-256 {actual}, the shard says {declared}"""
