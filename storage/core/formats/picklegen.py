"""Regenerating a torch.save `data.pkl` from a template and its values, verified byte for byte.

torch.save pickles with Python's pickler at protocol 2, which writes every object one way: an int as
BININT1, BININT2, BININT or LONG1 by its value, every memoized object PUT at the next memo index
(BINPUT below 256, LONG_BINPUT above), a GET as BINGET or LONG_BINGET by the index. So the opcode stream
with those choices left out, its strings (keys, globals, locations) and its GET references is the
pickle's *template*; its numbers are the *values*. Of the numbers, those inside a tensor's rebuild call
or its storage's persistent id (`('storage', type, key, location, numel)`, offset, shape, stride) are
the checkpoint's shape and stay in the template; every other int and every float (epoch, step, loss,
learning rates, a parameter group's indices, `_metadata` versions) is a value. Every checkpoint of a
training series, or every state dict of one architecture, then has a byte-identical template (it
dedups) and a varying part of a few bytes per number.

A recipe is used only when what it rebuilds equals the pickle (`derive` rebuilds and compares): another
protocol, a hand-written pickle (a non-sequential memo, an int written wider than needed, an opcode
torchpickle's reader does not admit) gets no recipe and keeps its opaque span. Nothing is executed:
the opcodes are walked, never interpreted.

Encoded in two parts, each self-describing (magic, version):
  template  b"DHPT" 01 | n_strings, each (length, bytes) | n_ops, ops | template arguments
  varying   b"DHPV" 01 | values
Numbers are LEB128 varints in their shortest form (ints zigzag-coded); ops are one byte each (the
pickle's opcode where it has no argument). The template's arguments follow its ops in op order: a
string or GLOBAL line as 0 when it is the table's next new string (the table is in order of first use)
and as its index + 1 when it repeats, a GET as its memo index, a shape int as its value. A storage key
that is the next of torch's "0", "1", ... is an op of its own with no argument. The varying part holds
each value int, and each float as its 8 pickled bytes. Not yet wired into ingest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from storage.core.formats import zipregen
from storage.core.formats.torchpickle import MAX_DEPTH

_PROTOCOL = b"\x80\x02"
_TEMPLATE_MAGIC, _VARYING_MAGIC, _VERSION = b"DHPT", b"DHPV", 1
# The ops of a recipe beyond the pickle's own argument-free opcodes. An int is `_VALUE` (in the varying
# part) or `_SHAPE` (in the template); the pickle's opcode for it follows from the value on rebuild.
_VALUE, _SHAPE, _FLOAT, _PUT, _GET = b"I"[0], b"i"[0], b"G"[0], b"q"[0], b"h"[0]
_UNICODE, _STRING, _GLOBAL = b"X"[0], b"U"[0], b"c"[0]
# A BINUNICODE of the next storage key: torch names storages "0", "1", ... in order of first use.
_KEY = b"k"[0]
_MARK, _TUPLE, _PERSID, _STOP = b"("[0], b"t"[0], b"Q"[0], b"."[0]
# The argument-free opcodes torchpickle admits: ( ) R b a e s u t Q N ] } NEWFALSE NEWTRUE EMPTY_SET
# TUPLE1-3 and STOP.
_BARE = frozenset(b"()Rbaesut]}Q.N" + bytes([0x89, 0x88, 0x8F, 0x85, 0x86, 0x87]))
_TO_MARK = frozenset(b"teu")  # TUPLE APPENDS SETITEMS: they pop to their MARK
_OPS = _BARE | {_VALUE, _SHAPE, _FLOAT, _PUT, _GET, _UNICODE, _STRING, _GLOBAL, _KEY}
_MAX_GLOBAL_LINE = 256
# A LONG1 holds at most 255 bytes: 2,040 bits, 292 varint bytes.
_MAX_VARINT = 300


class RecipeDecodeError(zipregen.RecipeDecodeError):
    """A stored pickle recipe that does not decode: damage, reported by the reader as such."""


class NotAPickleRecipe(RecipeDecodeError):
    """The bytes do not start with a version 1 template or varying magic."""


class RecipeTruncated(RecipeDecodeError):
    """A part ends inside a number, a string or an op list."""


class RecipeTrailingBytes(RecipeDecodeError):
    """A part holds bytes past what its ops consume."""


class UnknownRecipeOp(RecipeDecodeError):
    """An op that is no recipe op, or an op list that does not end in its only STOP."""


class RecipeOutOfRange(RecipeDecodeError):
    """A string index past the table, a GET of a memo entry not yet put, or a number or string too
    large for the opcode that would carry it."""


@dataclass(frozen=True, slots=True)
class Recipe:
    ops: bytes  # one recipe op per pickle opcode after PROTO 2
    strings: tuple[bytes, ...]  # distinct strings and GLOBAL lines, in order of first use
    fixed: tuple[int, ...]  # the template's arguments, in op order
    values: tuple[int | bytes, ...]  # the varying ints and floats (8 pickled bytes), in op order


def derive(pickle_bytes: bytes) -> Recipe | None:
    """The recipe of a protocol 2 pickle as torch.save writes it, or None when the rebuild would differ."""
    data = bytes(pickle_bytes)
    tokens = _tokens(data)
    if tokens is None:
        return None
    ops = bytearray()
    table: dict[bytes, int] = {}
    fixed: list[int] = []
    values: list[int | bytes] = []
    for op, arg in zip(tokens[0], tokens[1], strict=True):
        ops.append(op)
        if op in (_UNICODE, _STRING, _GLOBAL):
            assert isinstance(arg, bytes)
            fixed.append(table.setdefault(arg, len(table)))
        elif op in (_SHAPE, _GET):
            assert isinstance(arg, int)
            fixed.append(arg)
        elif op in (_VALUE, _FLOAT):
            assert arg is not None
            values.append(arg)
    recipe = Recipe(bytes(ops), tuple(table), tuple(fixed), tuple(values))
    return recipe if rebuild(recipe) == data else None


def _tokens(data: bytes) -> tuple[bytearray, list[int | bytes | None]] | None:
    """The recipe ops and their arguments, the ints inside a tensor's rebuild call or persistent id
    marked `_SHAPE`; None for anything the rebuild could not follow. Each op is read once, and a MARK's
    ops are looked at again only when its tuple closes, at most MAX_DEPTH times in all."""
    if data[:2] != _PROTOCOL:
        return None
    ops = bytearray()
    args: list[int | bytes | None] = []
    marks: list[tuple[int, list[int]]] = []  # each open MARK: where its ops start, its ints' positions
    memo = keys = 0
    pos = 2
    try:
        while pos < len(data):
            code = data[pos]
            pos += 1
            arg: int | bytes | None = None
            if code in (0x4B, 0x4D, 0x4A, 0x8A):  # K M J LONG1
                if code == 0x8A:
                    width = data[pos]
                    raw, pos = data[pos + 1 : pos + 1 + width], pos + 1 + width
                else:
                    width = {0x4B: 1, 0x4D: 2, 0x4A: 4}[code]
                    raw, pos = data[pos : pos + width], pos + width
                if len(raw) != width:
                    return None
                arg = int.from_bytes(raw, "little", signed=code in (0x4A, 0x8A))
                if marks:
                    marks[-1][1].append(len(ops))
                code = _VALUE
            elif code == _FLOAT:
                arg, pos = data[pos : pos + 8], pos + 8
            elif code in (_UNICODE, _STRING):
                head = 4 if code == _UNICODE else 1
                length = int.from_bytes(data[pos : pos + head], "little")
                arg, pos = data[pos + head : pos + head + length], pos + head + length
                if len(arg) != length:
                    return None
                if code == _UNICODE and arg == str(keys).encode():
                    code, arg, keys = _KEY, None, keys + 1
            elif code == _GLOBAL:
                first = data.find(b"\n", pos, pos + _MAX_GLOBAL_LINE)
                end = data.find(b"\n", first + 1, pos + _MAX_GLOBAL_LINE) if first >= 0 else -1
                if end < 0:
                    return None
                arg, pos = data[pos : end + 1], end + 1
            elif code in (0x71, 0x72):  # BINPUT LONG_BINPUT: the next index, or no recipe
                width = 1 if code == 0x71 else 4
                if int.from_bytes(data[pos : pos + width], "little") != memo:
                    return None
                pos, memo, code = pos + width, memo + 1, _PUT
            elif code in (0x68, 0x6A):  # BINGET LONG_BINGET
                width = 1 if code == 0x68 else 4
                index = int.from_bytes(data[pos : pos + width], "little")
                if index >= memo:
                    return None
                pos, arg, code = pos + width, index, _GET
            elif code == _MARK:
                if len(marks) >= MAX_DEPTH:
                    return None
                marks.append((len(ops), []))
            elif code in _BARE:
                if code in _TO_MARK:
                    if not marks:
                        return None
                    start, inner = marks.pop()
                    if code == _TUPLE and _is_shape(ops, start, data, pos):
                        for at in inner:
                            ops[at] = _SHAPE
                    elif marks:
                        marks[-1][1].extend(inner)
            else:
                return None
            ops.append(code)
            args.append(arg)
            if code == _STOP:
                return (ops, args) if pos == len(data) else None
    except IndexError:
        return None
    return None


def _is_shape(ops: bytearray, start: int, data: bytes, pos: int) -> bool:
    """Whether the tuple closing at `pos` (its ops from `start`) is a persistent id (BINPERSID follows,
    after its PUT) or a rebuild call's arguments (it holds a BINPERSID)."""
    after = pos + (2 if data[pos : pos + 1] == b"q" else 5 if data[pos : pos + 1] == b"r" else 0)
    return data[after : after + 1] == b"Q" or _PERSID in ops[start:]


def rebuild(recipe: Recipe) -> bytes:
    """The pickle the recipe describes."""
    out = bytearray(_PROTOCOL)
    fixed, values = iter(recipe.fixed), iter(recipe.values)
    memo = keys = 0
    for op in recipe.ops:
        if op in (_VALUE, _SHAPE):
            value = next(values) if op == _VALUE else next(fixed)
            assert isinstance(value, int)
            out += _int(value)
        elif op == _FLOAT:
            raw = next(values)
            assert isinstance(raw, bytes)
            out += b"G" + raw
        elif op in (_UNICODE, _STRING):
            text = recipe.strings[next(fixed)]
            out += bytes([op]) + len(text).to_bytes(4 if op == _UNICODE else 1, "little") + text
        elif op == _GLOBAL:
            out += b"c" + recipe.strings[next(fixed)]
        elif op == _KEY:
            text = str(keys).encode()
            out += b"X" + struct.pack("<I", len(text)) + text
            keys += 1
        elif op == _PUT:
            out += b"q" + bytes([memo]) if memo < 256 else b"r" + struct.pack("<I", memo)
            memo += 1
        elif op == _GET:
            index = next(fixed)
            out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)
        else:
            out.append(op)
    return bytes(out)


def _int(value: int) -> bytes:
    """How Python's pickler (protocol 2) writes an int."""
    if 0 <= value <= 0xFF:
        return b"K" + bytes([value])
    if 0 <= value <= 0xFFFF:
        return b"M" + value.to_bytes(2, "little")
    if -0x80000000 <= value <= 0x7FFFFFFF:
        return b"J" + value.to_bytes(4, "little", signed=True)
    encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    # pickle's encode_long: the shortest two's complement, one byte fewer when that still fits.
    if len(encoded) > 1 and value < 0 and encoded[-1] == 0xFF and encoded[-2] & 0x80:
        encoded = encoded[:-1]
    return b"\x8a" + bytes([len(encoded)]) + encoded


def encode(recipe: Recipe) -> tuple[bytes, bytes]:
    """The template (ops, strings, the template's arguments) and the varying part (the values)."""
    template = bytearray(_TEMPLATE_MAGIC + bytes([_VERSION]))
    template += _varint(len(recipe.strings))
    for text in recipe.strings:
        template += _varint(len(text)) + text
    template += _varint(len(recipe.ops)) + recipe.ops
    fixed = iter(recipe.fixed)
    new = 0  # strings are in order of first use: the next new one is written 0, a repeat as its index + 1
    for op in recipe.ops:
        if op == _SHAPE:
            template += _varint(_zigzag(next(fixed)))
        elif op in (_UNICODE, _STRING, _GLOBAL):
            index = next(fixed)
            template += _varint(0 if index == new else index + 1)
            new += index == new
        elif op == _GET:
            template += _varint(next(fixed))
    varying = bytearray(_VARYING_MAGIC + bytes([_VERSION]))
    for value in recipe.values:
        varying += value if isinstance(value, bytes) else _varint(_zigzag(value))
    return bytes(template), bytes(varying)


def decode(template: bytes, varying: bytes) -> Recipe:
    """The recipe `encode` wrote; a RecipeDecodeError names the first rule the bytes break."""
    if template[:5] != _TEMPLATE_MAGIC + bytes([_VERSION]) or varying[:5] != _VARYING_MAGIC + bytes([_VERSION]):
        raise NotAPickleRecipe("not a version 1 pickle recipe")
    t = _Reader(template, 5)
    strings = []
    for _ in range(t.count()):
        strings.append(t.take(t.count()))
    ops = t.take(t.count())
    bad = next((op for op in ops if op not in _OPS), None)
    if bad is not None:
        raise UnknownRecipeOp(f"op {bytes([bad])!r} is no pickle recipe op")
    if ops.find(_STOP) != len(ops) - 1 or not ops:
        raise UnknownRecipeOp("the ops do not end in their only STOP")
    v = _Reader(varying, 5)
    fixed: list[int] = []
    values: list[int | bytes] = []
    memo = new = 0
    for op in ops:
        if op == _SHAPE:
            fixed.append(_unzigzag(t.number()))
        elif op in (_UNICODE, _STRING, _GLOBAL):
            ref = t.number()
            index = new if ref == 0 else ref - 1
            if index >= (new + 1 if ref == 0 else new) or index >= len(strings):
                raise RecipeOutOfRange(f"string {ref} of a table of {len(strings)}, {new} used so far")
            new += ref == 0
            if (op == _STRING and len(strings[index]) > 0xFF) or len(strings[index]) > 0xFFFFFFFF:
                raise RecipeOutOfRange(f"string {index} is too long for its opcode")
            if op == _GLOBAL and (len(strings[index]) > _MAX_GLOBAL_LINE or strings[index].count(b"\n") != 2
                                  or not strings[index].endswith(b"\n")):  # fmt: skip
                raise RecipeOutOfRange(f"string {index} is no GLOBAL's module and name")
            fixed.append(index)
        elif op == _GET:
            index = t.number()
            if index >= memo:
                raise RecipeOutOfRange(f"a GET of memo entry {index} of {memo}")
            fixed.append(index)
        elif op == _PUT:
            memo += 1
        elif op == _VALUE:
            value = _unzigzag(v.number())
            if len(_int(value)) > 2 + 0xFF:
                raise RecipeOutOfRange("an int too large for LONG1")
            values.append(value)
        elif op == _FLOAT:
            values.append(v.take(8))
    if new != len(strings):
        raise RecipeTrailingBytes(f"{len(strings) - new} strings of the table are never used")
    t.end("template")
    v.end("varying part")
    return Recipe(ops, tuple(strings), tuple(fixed), tuple(values))


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise RecipeTruncated(f"the recipe ends inside {n} bytes at byte {self.pos}")
        self.pos += n
        return chunk

    def number(self) -> int:
        value = shift = 0
        for i in range(_MAX_VARINT):
            if self.pos >= len(self.data):
                raise RecipeTruncated(f"the recipe ends inside a number at byte {self.pos}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and i:
                    raise RecipeOutOfRange(f"a number at byte {self.pos} is not written in its shortest form")
                return value
        raise RecipeOutOfRange(f"a number longer than {_MAX_VARINT} bytes at byte {self.pos}")

    def count(self) -> int:
        """A length or count: never more than the bytes left, each item taking at least one."""
        n = self.number()
        if n > len(self.data) - self.pos:
            raise RecipeTruncated(f"{n} items announced, {len(self.data) - self.pos} bytes left")
        return n

    def end(self, part: str) -> None:
        if self.pos != len(self.data):
            raise RecipeTrailingBytes(f"{len(self.data) - self.pos} bytes past the end of the {part}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)
