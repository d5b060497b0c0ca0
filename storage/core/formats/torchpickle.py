"""A restricted reader of a PyTorch checkpoint's `data.pkl`: which storages and tensors it declares.

Nothing is executed. The reader walks the pickle's opcodes with a stack machine of its own that knows
only the opcodes torch's `weights_only` loader admits (protocol 2) and, of the globals that loader
admits, those a state dict or training checkpoint is made of: `collections.OrderedDict`, the tensor
rebuild functions (`torch._utils._rebuild_tensor_v2`/`_v3`, `_rebuild_parameter`,
`_rebuild_parameter_with_state`), the storage types, dtypes, `torch.Size`, `torch.device`, `set`,
`complex`, `bytearray` and `_codecs.encode` (bytes). "Calling" one of them builds an inert record (a
`TensorDecl`, a tuple, a string); any other global, opcode or call is refused, and so are pickles
past the bounds below. A refusal (a `PickleError`) never costs a file its bytes: the caller keeps it
as opaque spans.

Storages come from persistent ids `('storage', type, key, location, numel)`; tensors are named by the
dotted path that reaches them through nested dicts and lists (`state_dict.encoder.0.weight`), the first
path in insertion order when several do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.core.errors import InvalidInput

# Nesting of MARKs and of containers. Real checkpoints nest a few levels (checkpoint → optimizer →
# state → parameter → tensor); 64 admits any of them and bounds the walk.
MAX_DEPTH = 64
# Objects the machine may create (every push and memo entry), per tensor the file may list, plus a
# floor for small files. torch.save's pickle of a state dict costs 26 per tensor (18 pushes, 8 memo
# entries); reading one of 100,000 tensors (10 MB) takes 180 MB and ~4.7x the time of a safetensors
# header of as many (2.7 s against 0.6 s, 83 MB; bench/torchzip.py). 64 per tensor admits optimizer
# state and bounds a hostile pickle at ~2.5x that.
OBJECTS_PER_TENSOR = 64
MIN_OBJECTS = 1 << 16
# Longer names (a hostile key of megabytes) leave their tensor unnamed: the catalog stores every name.
MAX_NAME_CHARS = 1024
_MAX_GLOBAL_LINE = 256

# The legacy storage types torch pickles for typed storages, and the dtype each holds.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}  # fmt: skip
UNTYPED = "UntypedStorage"  # bytes: numel counts bytes, the tensor (`_rebuild_tensor_v3`) names its dtype
# Bytes per element of every dtype torch can save.
ITEMSIZE: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16, "complex32": 4, "uint16": 2, "uint32": 4,
    "uint64": 8, "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1, "bits8": 1, "bits16": 2, "bits1x8": 1, "bits2x4": 1,
    "bits4x2": 1, "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
}  # fmt: skip

_REBUILD = "torch._utils."
_CONTAINERS = {"collections.OrderedDict", "builtins.set", "builtins.complex", "builtins.bytearray",
               "_codecs.encode", "torch.Size", "torch.device"}  # fmt: skip
_REBUILDERS = {_REBUILD + n for n in
               ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter", "_rebuild_parameter_with_state")}
_ADMITTED = (
    _CONTAINERS | _REBUILDERS | {f"torch.{n}" for n in STORAGE_DTYPES} | {f"torch.{n}" for n in ITEMSIZE}
    | {"torch.storage.UntypedStorage"}
)  # fmt: skip
_PY2_BUILTINS = "__builtin__."


class PickleError(InvalidInput):
    """unreadable checkpoint pickle: {detail}"""


class ForbiddenOpcode(PickleError):
    """opcode {opcode} at byte {position} is not one torch's weights_only loader admits"""


class ForbiddenGlobal(PickleError):
    """global {name!r} at byte {position} is not one a checkpoint of tensors needs"""


class ForbiddenCall(PickleError):
    """byte {position}: {what} is called, and only the admitted rebuild functions and containers may be"""


class PickleTruncated(PickleError):
    """the pickle ends at byte {position}, inside an opcode or before STOP"""


class MalformedPickle(PickleError):
    """byte {position}: {detail}"""


class BadPersistentId(PickleError):
    """byte {position}: persistent id {pid} is not ('storage', type, key, location, numel)"""


class PickleTooDeep(PickleError):
    """nesting deeper than {limit} levels {where}"""


class PickleTooLarge(PickleError):
    """more than {limit} objects at byte {position}"""


class TooManyStorages(PickleError):
    """more than {limit} storages or tensors"""


@dataclass(frozen=True, slots=True)
class StorageDecl:
    key: str
    dtype: str | None  # None for an untyped storage: its tensors say
    numel: int  # elements of `dtype`, bytes when untyped

    @property
    def nbytes(self) -> int:
        return self.numel * (ITEMSIZE[self.dtype] if self.dtype else 1)


@dataclass(frozen=True, slots=True)
class TensorDecl:
    name: str | None
    storage: str
    dtype: str
    offset: int  # in elements of dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def extent(self) -> int:
        """Elements of the storage the tensor reaches, from element 0 (0 when it holds none)."""
        if self.numel == 0:
            return 0
        return self.offset + 1 + sum((d - 1) * s for d, s in zip(self.shape, self.stride, strict=True))

    def contiguous(self) -> bool:
        expected = 1
        for d, s in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if d != 1 and s != expected:
                return False
            expected *= d
        return True


@dataclass(frozen=True, slots=True)
class Checkpoint:
    storages: dict[str, StorageDecl]  # by key, in the order the pickle first names them
    tensors: tuple[TensorDecl, ...]  # named ones in path order, then any no path reaches


@dataclass(frozen=True, slots=True)
class _Global:
    name: str


class _Tensor:
    """A rebuilt tensor: compared by identity, as the objects a pickle shares through its memo are."""

    __slots__ = ("dtype", "offset", "shape", "storage", "stride")

    def __init__(self, storage: StorageDecl, dtype: str, offset: int, shape: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:  # fmt: skip
        self.storage, self.dtype, self.offset, self.shape, self.stride = storage, dtype, offset, shape, stride


class _OrderedDict(dict[Any, Any]):
    """An OrderedDict of the pickle (BUILD may give it attributes, which hold no tensors worth naming)."""


def read_checkpoint(data: bytes, *, max_tensors: int) -> Checkpoint:
    """The storages and tensors `data` (a data.pkl) declares; a PickleError names the first refusal."""
    machine = _Machine(bytes(data), max_tensors)
    root = machine.run()
    return Checkpoint(machine.storages, tuple(_name_tensors(root, machine.tensors)))


class _Machine:
    def __init__(self, data: bytes, max_tensors: int) -> None:
        self.data, self.pos = data, 0
        self.max_tensors = max_tensors
        self.budget = max(MIN_OBJECTS, OBJECTS_PER_TENSOR * max_tensors)
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.storages: dict[str, StorageDecl] = {}
        self.tensors: list[_Tensor] = []
        self.at = 0  # where the current opcode starts, for messages

    def run(self) -> Any:
        ops = _OPS
        while True:
            self.at = self.pos
            code = self._take(1)[0]
            op = ops.get(code)
            if op is None:
                raise ForbiddenOpcode(opcode=repr(bytes([code])), position=self.at)
            if code == 0x2E:  # STOP
                return self._pop()
            op(self)

    # -- reading -------------------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise PickleTruncated(position=len(self.data))
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + _MAX_GLOBAL_LINE)
        if end < 0:
            if len(self.data) - self.pos < _MAX_GLOBAL_LINE:
                raise PickleTruncated(position=len(self.data))
            raise self._malformed("a GLOBAL name is too long")
        line = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise self._malformed("a GLOBAL name is not ASCII") from None

    # -- the stack -----------------------------------------------------------------------------------
    def _push(self, value: Any) -> None:
        self._count()
        self.stack.append(value)

    def _count(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise PickleTooLarge(limit=max(MIN_OBJECTS, OBJECTS_PER_TENSOR * self.max_tensors), position=self.at)

    def _pop(self) -> Any:
        if not self.stack:
            raise self._malformed("the stack is empty")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise self._malformed("the stack is empty")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self._malformed("no MARK to pop to")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def _malformed(self, detail: str) -> MalformedPickle:
        return MalformedPickle(position=self.at, detail=detail)

    # -- opcodes -------------------------------------------------------------------------------------
    def op_mark(self) -> None:
        if len(self.marks) >= MAX_DEPTH:
            raise PickleTooDeep(limit=MAX_DEPTH, where=f"at byte {self.at}")
        self.marks.append(self.stack)
        self.stack = []

    def op_proto(self) -> None:
        if self._take(1)[0] > 5:
            raise self._malformed("unknown pickle protocol")

    def op_global(self) -> None:
        module, name = self._line(), self._line()
        if module + "." == _PY2_BUILTINS:
            module = "builtins"
        full = f"{module}.{name}"
        if full not in _ADMITTED:
            raise ForbiddenGlobal(name=full[:200], position=self.at)
        self._push(_Global(full))

    def op_reduce(self) -> None:
        args = self._pop()
        func = self._top()
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise ForbiddenCall(what=_describe(func), position=self.at)
        self.stack[-1] = self._call(func.name, args)

    def op_build(self) -> None:
        state = self._pop()
        if not isinstance(self._top(), _OrderedDict) or not isinstance(state, dict):
            raise ForbiddenCall(what=f"BUILD of {_describe(self._top())}", position=self.at)

    def op_append(self) -> None:
        item = self._pop()
        target = self._top()
        if type(target) is not list:
            raise self._malformed(f"APPEND to {_describe(target)}")
        target.append(item)

    def op_appends(self) -> None:
        items = self._pop_mark()
        target = self._top()
        if type(target) is not list:
            raise self._malformed(f"APPENDS to {_describe(target)}")
        target.extend(items)

    def op_setitem(self) -> None:
        value, key = self._pop(), self._pop()
        self._set_items(key, value)

    def op_setitems(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise self._malformed("SETITEMS with an odd number of items")
        self._set_items(*items)

    def _set_items(self, *items: Any) -> None:
        target = self._top()
        if not isinstance(target, dict):
            raise self._malformed(f"SETITEM on {_describe(target)}")
        for i in range(0, len(items), 2):
            try:
                target[items[i]] = items[i + 1]
            except TypeError:
                raise self._malformed(f"unhashable key {_describe(items[i])}") from None

    def op_tuple(self) -> None:
        self._push(tuple(self._pop_mark()))

    def op_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise self._malformed("the stack is empty")
        items = tuple(self.stack[len(self.stack) - n :])
        del self.stack[len(self.stack) - n :]
        self._push(items)

    def op_binint(self) -> None:
        self._push(struct.unpack("<i", self._take(4))[0])

    def op_long1(self) -> None:
        n = self._take(1)[0]
        self._push(int.from_bytes(self._take(n), "little", signed=True))

    def op_binfloat(self) -> None:
        self._push(struct.unpack(">d", self._take(8))[0])

    def op_binunicode(self) -> None:
        length = struct.unpack("<I", self._take(4))[0]
        try:
            self._push(self._take(length).decode("utf-8", "surrogatepass"))  # as torch decodes it
        except UnicodeDecodeError:
            raise self._malformed("a string is not UTF-8") from None

    def op_short_binstring(self) -> None:
        raw = self._take(self._take(1)[0])
        try:
            self._push(raw.decode("ascii"))  # torch.load's default encoding for Python 2 strings
        except UnicodeDecodeError:
            raise self._malformed("a Python 2 string is not ASCII") from None

    def op_binpersid(self) -> None:
        pid = self._pop()
        if not (
            type(pid) is tuple and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Global)
            and (pid[1].name.removeprefix("torch.") in STORAGE_DTYPES or pid[1].name == "torch.storage.UntypedStorage")
            and type(pid[2]) is str and type(pid[3]) is str and type(pid[4]) is int and pid[4] >= 0
        ):  # fmt: skip
            raise BadPersistentId(pid=_describe(pid), position=self.at)
        key = pid[2]
        declared = self.storages.get(key)
        if declared is None:  # torch.load keeps the first declaration of a key, and so do we
            if len(self.storages) >= self.max_tensors:
                raise TooManyStorages(limit=self.max_tensors)
            type_name = pid[1].name.rsplit(".", 1)[1]
            declared = StorageDecl(key, STORAGE_DTYPES.get(type_name), pid[4])
            self.storages[key] = declared
        self._push(declared)

    def op_get(self, width: int) -> None:
        index = int.from_bytes(self._take(width), "little")
        if index not in self.memo:
            raise self._malformed(f"memo {index} was never put")
        self._push(self.memo[index])

    def op_put(self, width: int) -> None:
        index = int.from_bytes(self._take(width), "little")
        self._count()
        self.memo[index] = self._top()

    def _call(self, name: str, args: tuple[Any, ...]) -> Any:
        if name in _REBUILDERS:
            return self._rebuild(name, args)
        if name == "collections.OrderedDict" and args == ():
            return _OrderedDict()
        if name in ("torch.Size", "builtins.set") and len(args) == 1 and type(args[0]) in (list, tuple):
            return tuple(args[0])
        if name == "torch.device" and 1 <= len(args) <= 2 and all(type(a) in (str, int) for a in args):
            return ":".join(map(str, args))
        if name == "builtins.complex" and len(args) == 2 and all(type(a) in (int, float) for a in args):
            return complex(args[0], args[1])
        if name == "_codecs.encode" and len(args) == 2 and type(args[0]) is str and args[1] == "latin1":
            try:
                return args[0].encode("latin1")
            except UnicodeEncodeError:
                raise self._malformed("bytes that are not latin-1") from None
        if name == "builtins.bytearray" and len(args) <= 1 and all(type(a) is bytes for a in args):
            return bytes(*args)
        raise ForbiddenCall(what=f"{name} with {_describe(args)}", position=self.at)

    def _rebuild(self, name: str, args: tuple[Any, ...]) -> _Tensor:
        short = name.removeprefix(_REBUILD)
        if short.startswith("_rebuild_parameter"):
            if len(args) != (4 if short.endswith("with_state") else 3) or not isinstance(args[0], _Tensor):
                raise self._malformed(f"{short} of {_describe(args)}")
            return args[0]
        arity = (6, 7) if short == "_rebuild_tensor_v2" else (7, 8)
        if len(args) not in arity:
            raise self._malformed(f"{short} with {len(args)} arguments")
        storage, offset, shape, stride = args[:4]
        if not (isinstance(storage, StorageDecl) and _count_like(offset) and _dims(shape) and _dims(stride)
                and len(shape) == len(stride)):  # fmt: skip
            raise self._malformed(f"{short} of {_describe(args[:4])}")
        if short == "_rebuild_tensor_v3":
            dtype_arg = args[6]
            if not isinstance(dtype_arg, _Global) or dtype_arg.name.removeprefix("torch.") not in ITEMSIZE:
                raise self._malformed(f"{short} with dtype {_describe(dtype_arg)}")
            dtype = dtype_arg.name.removeprefix("torch.")
        elif storage.dtype is None:
            raise self._malformed(f"{short} of an untyped storage names no dtype")
        else:
            dtype = storage.dtype
        if len(self.tensors) >= self.max_tensors:
            raise TooManyStorages(limit=self.max_tensors)
        tensor = _Tensor(storage, dtype, offset, tuple(shape), tuple(stride))
        self.tensors.append(tensor)
        return tensor


def _count_like(value: Any) -> bool:
    # Below 2**63, as torch's int64 sizes are: a hostile LONG1 of 255 bytes never costs big-int arithmetic.
    return type(value) is int and 0 <= value < 2**63


def _dims(value: Any) -> bool:
    return type(value) is tuple and len(value) <= MAX_DEPTH and all(_count_like(v) for v in value)


def _describe(value: Any) -> str:
    if isinstance(value, _Global):
        return value.name[:200]
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe(v) for v in value[:6]) + (", ..." if len(value) > 6 else "") + ")"
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    return f"a {type(value).__name__.lstrip('_')}"


def _fixed(value: Any) -> Callable[[_Machine], None]:
    return lambda m: m._push(value() if callable(value) else value)


_OPS: dict[int, Callable[[_Machine], None]] = {
    0x28: _Machine.op_mark, 0x80: _Machine.op_proto, 0x2E: lambda m: None,  # ( PROTO STOP
    0x63: _Machine.op_global, 0x52: _Machine.op_reduce, 0x62: _Machine.op_build,  # c R b
    0x61: _Machine.op_append, 0x65: _Machine.op_appends, 0x73: _Machine.op_setitem,  # a e s
    0x75: _Machine.op_setitems, 0x74: _Machine.op_tuple, 0x51: _Machine.op_binpersid,  # u t Q
    0x85: lambda m: m.op_tuple_n(1), 0x86: lambda m: m.op_tuple_n(2), 0x87: lambda m: m.op_tuple_n(3),
    0x4E: _fixed(None), 0x89: _fixed(False), 0x88: _fixed(True), 0x29: _fixed(()),  # N NEWFALSE NEWTRUE )
    0x5D: _fixed(list), 0x7D: _fixed(dict), 0x8F: _fixed(tuple),  # ] } EMPTY_SET (a tuple: never a key)
    0x4A: _Machine.op_binint, 0x4B: lambda m: m._push(m._take(1)[0]),  # J K
    0x4D: lambda m: m._push(int.from_bytes(m._take(2), "little")), 0x8A: _Machine.op_long1,  # M LONG1
    0x47: _Machine.op_binfloat, 0x58: _Machine.op_binunicode, 0x55: _Machine.op_short_binstring,  # G X U
    0x68: lambda m: m.op_get(1), 0x6A: lambda m: m.op_get(4),  # h j
    0x71: lambda m: m.op_put(1), 0x72: lambda m: m.op_put(4),  # q r
}  # fmt: skip


def _name_tensors(root: Any, created: list[_Tensor]) -> list[TensorDecl]:
    """Each tensor with the first dotted path reaching it (depth first, in insertion order), in that
    order; tensors no usable path reaches (inside a set, under a key that is no string or int, in BUILD
    state, or whose path another tensor already holds) follow, unnamed. Every container is walked once,
    so shared and cyclic structures cost their size, not their paths; a path is only made for a
    container or a tensor, when it is reached."""
    reached: dict[int, tuple[_Tensor, str | None]] = {}
    used: set[str] = set()
    seen: set[int] = set()
    # (value, its parent's path, its key there, its depth); the root's path is "", None is no path.
    pending: list[tuple[Any, str | None, Any, int]] = [(root, None, None, 0)]
    while pending:
        value, parent, key, depth = pending.pop()
        path = _join(parent, key) if depth else ""
        if isinstance(value, _Tensor):
            if reached.get(id(value), (None, None))[1] is None:  # not reached yet, or by no usable path
                name = path if path and path not in used else None
                reached[id(value)] = (value, name)
                if name is not None:
                    used.add(name)
            continue
        if not isinstance(value, dict | list | tuple) or id(value) in seen:  # the root may be a scalar
            continue
        if depth >= MAX_DEPTH:
            raise PickleTooDeep(limit=MAX_DEPTH, where="in the object graph")
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        children = [(child, path, k, depth + 1) for k, child in items if isinstance(child, _WALKED)]
        pending.extend(reversed(children))
    for tensor in created:
        reached.setdefault(id(tensor), (tensor, None))
    decls = [TensorDecl(name, t.storage.key, t.dtype, t.offset, t.shape, t.stride) for t, name in reached.values()]
    return [d for d in decls if d.name is not None] + [d for d in decls if d.name is None]


_WALKED = (_Tensor, dict, list, tuple)


def _join(path: str | None, key: Any) -> str | None:
    """The path one level below `path` ("": the root), or None when no name can be made."""
    if path is None:
        return None
    if type(key) is int:
        part = str(key)
    elif type(key) is str and len(key) <= MAX_NAME_CHARS:
        part = key
    else:
        return None
    joined = f"{path}.{part}" if path else part
    if len(joined) > MAX_NAME_CHARS or "\0" in joined:
        return None
    try:
        joined.encode("utf-8")  # a lone surrogate (BINUNICODE admits them) cannot be stored as a name
    except UnicodeEncodeError:
        return None
    return joined
