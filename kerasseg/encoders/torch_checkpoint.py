"""Reading PyTorch checkpoints (``torch.save`` files) without PyTorch, and safely.

```python
from kerasseg.zoo import convert
state = convert.read_torch_checkpoint("resnet34-b627a593.pth")  # {name: numpy array}
```

A ``torch.save`` file is a pickle whose tensors are stored apart from it. The pickle is read
here by a restricted unpickler that resolves only the few globals a checkpoint of tensors
needs and refuses every other one *before anything runs*: unpickling a global is the only
way a pickle can name a function to call, so a checkpoint that would call ``os.system``,
``eval`` or any class of its own raises `UnsafeCheckpointError` (naming the global) while
it is being read, without having called anything. What is accepted:

* ``torch._utils._rebuild_tensor_v2``, ``_rebuild_tensor``, ``_rebuild_parameter`` and
  ``_rebuild_parameter_with_state`` (a tensor or parameter from a storage, a storage offset,
  a size and a stride): they become NumPy arrays, copied out of the storage;
* the storage types (``torch.FloatStorage`` ... ``torch.BoolStorage``,
  ``torch.storage.UntypedStorage``, also under ``torch.cuda``), only inside the persistent
  ids ``('storage', storage_type, key, location, numel)`` that point at the stored data;
* ``collections.OrderedDict`` (what ``state_dict()`` returns), ``torch.Size`` (a tuple),
  ``builtins.set`` / ``frozenset`` and ``_codecs.encode`` with latin-1 (how protocol-2
  pickles write ``bytes``): plain containers, no behaviour.

The rebuilt objects cannot be changed by the pickle (its ``BUILD`` opcode is refused on
them), and every offset, size and stride is checked against its storage before the data is
viewed, so a crafted file cannot read outside the data it holds.

Two file formats are read:

* the zip archive of PyTorch >= 1.6 (``<folder>/data.pkl`` and one record
  ``<folder>/data/<key>`` per storage, in the byte order of ``<folder>/byteorder``, little
  endian when that record is absent, as PyTorch assumes);
* the legacy format of PyTorch < 1.6 (``torch.save(..., _use_new_zipfile_serialization=
  False)``): pickles of the magic number, the protocol version (1001) and the system
  information, the object pickle, the list of storage keys, then per storage an int64
  element count and the raw data. Its storage views (``view_metadata``) are read too.

Refused with a `CheckpointError` that names the file: TorchScript archives
(``torch.jit.save``), the tar format of the first PyTorch releases, whole pickled
``nn.Module`` objects (their classes are refused globals), quantised and other storage
types, and corrupt or truncated files.

Dtypes: float64, float32, float16, int64, int32, int16, int8, uint8, bool, complex64 and
complex128 are kept; NumPy has no bfloat16, so bfloat16 becomes float32 (exactly: a
bfloat16 is the upper half of a float32). Arrays are always in native byte order.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

logger = logging.getLogger(__name__)

#: The first pickle of a legacy checkpoint, and the protocol version that follows it.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

#: Storage type name -> NumPy dtype code of its elements ("bfloat16": read as uint16).
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}
_STORAGE_MODULES = ("torch", "torch.storage", "torch.cuda")


class CheckpointError(ValueError):
    """A file is not a PyTorch checkpoint this reader supports, or is corrupt or truncated."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint's pickle names a global (a function or class) that is not allowed."""


# --------------------------------------------------------------------------------------------
# What the pickle may create


class _Opaque:
    """Base of the objects handed to the pickle: the pickle cannot set their state."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(
            f"The pickle tries to set the state of a {type(self).__name__.strip('_')}, "
            f"which a PyTorch checkpoint never does."
        )


class _StorageType(_Opaque):
    """What ``torch.FloatStorage`` (etc.) unpickles to: a name and the element dtype."""

    __slots__ = ("code", "name")

    def __init__(self, name: str, code: str) -> None:
        self.name, self.code = name, code

    @property
    def itemsize(self) -> int:
        return 2 if self.code == "bfloat16" else np.dtype(self.code).itemsize


class _Storage(_Opaque):
    """A storage the pickle refers to: a key of the stored data, its dtype and size.

    ``root`` is the key whose data holds it, ``offset`` its first element there (legacy
    views; 0 otherwise)."""

    __slots__ = ("key", "numel", "offset", "root", "type")

    def __init__(self, type_: _StorageType, key: str, numel: int, root: str, offset: int):
        self.type, self.key, self.numel, self.root, self.offset = type_, key, numel, root, offset


class _Tensor(_Opaque):
    """A tensor to cut out of its storage once the data can be read."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(
        self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Global(_Opaque):
    """An allowed global: calling it (the pickle's ``REDUCE``) calls `function`."""

    __slots__ = ("function", "name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self.name, self.function = name, function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise CheckpointError(f"A tensor's {what} must be a tuple of integers, got {value!r}.")
    return tuple(int(v) for v in value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> Any:
    """``torch._utils._rebuild_tensor(_v2)``: requires_grad, hooks and metadata ignored."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(
            f"A tensor is rebuilt from {type(storage).__name__}, not from a storage."
        )
    if not _is_int(storage_offset) or storage_offset < 0:
        raise CheckpointError(f"A tensor's storage offset is {storage_offset!r}.")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride) or any(s < 0 for s in size + stride):
        raise CheckpointError(f"A tensor has size {size} and stride {stride}.")
    return _Tensor(storage, int(storage_offset), size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """``torch._utils._rebuild_parameter(_with_state)``: the parameter's tensor."""
    if not isinstance(data, _Tensor):
        raise CheckpointError(f"A parameter is rebuilt from {type(data).__name__}, not a tensor.")
    return data


def _torch_size(values: Any = ()) -> tuple[int, ...]:
    return _int_tuple(tuple(values), "size")


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode``, only as protocol-2 pickles use it: a str to latin-1 bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(
            f"_codecs.encode is allowed only on a str with 'latin1' (for bytes), got "
            f"{type(text).__name__} and {encoding!r}."
        )
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # how pickle protocols < 3 name the builtins
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _encode,
}


# --------------------------------------------------------------------------------------------
# The restricted unpickler


def _text(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


class _Unpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` and the storage types; records the storages it meets."""

    def __init__(self, file: BinaryIO, path: str, legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self.path, self.legacy = path, legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        function = _ALLOWED.get((module, name))
        if function is not None:
            return _Global(f"{module}.{name}", function)
        if module in _STORAGE_MODULES and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(
            f"Refused to load {self.path}: its pickle names the global {module}.{name}, and a "
            f"checkpoint may only hold tensors, storages and (ordered) dicts, lists and "
            f"tuples of them and of plain values. Nothing from the file was run. (Allowed "
            f"globals: {', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED))} and the "
            f"torch.*Storage types.)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or _text(pid[0]) != "storage":
            what = _text(pid[0]) if isinstance(pid, tuple) and pid else repr(pid)[:80]
            raise UnsafeCheckpointError(
                f"Refused to load {self.path}: its pickle refers to a persistent object "
                f"{what!r} (e.g. a pickled module, as saved by torch.save(model)); only "
                f"'storage' records are supported: save model.state_dict() instead."
            )
        fields = 6 if self.legacy else 5
        if len(pid) != fields:
            raise CheckpointError(
                f"{self.path}: a storage record has {len(pid)} fields, expected {fields}."
            )
        storage_type, key, _location, numel = pid[1], _text(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.path}: storage {key!r} has no storage type.")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise CheckpointError(f"{self.path}: bad storage record {pid[2]!r}, {numel!r}.")
        root, offset = key, 0
        view = pid[5] if self.legacy else None
        if view is not None:  # legacy: (view key, offset, size) within the root storage
            if not isinstance(view, tuple) or len(view) != 3:
                raise CheckpointError(f"{self.path}: bad view of storage {key!r}: {view!r}.")
            key, offset, numel = _text(view[0]), view[1], view[2]
            if not (_is_int(offset) and _is_int(numel)) or offset < 0 or numel < 0:
                raise CheckpointError(f"{self.path}: bad view of storage {root!r}: {view!r}.")
            if offset + numel > pid[4]:
                raise CheckpointError(
                    f"{self.path}: view {key!r} (elements {offset}..{offset + numel}) exceeds "
                    f"storage {root!r} of {pid[4]} elements."
                )
            self.storages.setdefault(root, _Storage(storage_type, root, pid[4], root, 0))
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(storage_type, key, numel, root, offset)
        elif storage.type.code != storage_type.code:
            raise CheckpointError(
                f"{self.path}: storage {key!r} is used as both {storage.type.name} and "
                f"{storage_type.name}."
            )
        return storage


def _unpickle(unpickler: _Unpickler, what: str) -> Any:
    try:
        return unpickler.load()
    except CheckpointError as error:
        if unpickler.path in str(error):
            raise
        raise type(error)(f"{unpickler.path}: {error}") from error
    except Exception as error:  # EOFError, UnpicklingError, TypeError, RecursionError ...
        raise CheckpointError(
            f"{unpickler.path} is corrupt or truncated, or not a PyTorch checkpoint: reading "
            f"{what} failed with {type(error).__name__}: {error}"
        ) from error


# --------------------------------------------------------------------------------------------
# Tensors out of storages


class _Data:
    """Storage key -> its bytes, with the dtype (byte order included) of its elements."""

    def __init__(self, path: str, read: Callable[[_Storage, int], bytes], byteorder: str):
        self.path, self._read, self.byteorder = path, read, byteorder
        self._cache: dict[str, bytes] = {}

    def array(self, tensor: _Tensor) -> np.ndarray:
        storage = tensor.storage
        code, itemsize = storage.type.code, storage.type.itemsize
        size, stride, offset = tensor.size, tensor.stride, tensor.offset
        dtype = np.dtype("u2" if code == "bfloat16" else code).newbyteorder(self.byteorder)
        if 0 in size:
            values = np.zeros(size, dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel:
                raise CheckpointError(
                    f"{self.path}: a tensor of size {size}, stride {stride} and offset {offset} "
                    f"reaches element {last} of storage {storage.key!r}, which has "
                    f"{storage.numel}."
                )
            if storage.root not in self._cache:
                self._cache[storage.root] = self._read(storage, itemsize)
            data = self._cache[storage.root]
            start = (storage.offset + offset) * itemsize
            if start + (last - offset + 1) * itemsize > len(data):
                raise CheckpointError(f"{self.path}: storage {storage.root!r} is truncated.")
            base = np.frombuffer(data, dtype, count=last - offset + 1, offset=start)
            strides = tuple(s * itemsize for s in stride)
            values = np.array(as_strided(base, size, strides, writeable=False), order="C")
        values = values.astype(values.dtype.newbyteorder("="), copy=False)
        if code == "bfloat16":  # the upper 16 bits of a float32
            values = values.astype(np.uint32)
            values <<= 16
            values = values.view(np.float32)
        return values


def _resolve(obj: Any, data: _Data, memo: dict[int, tuple[Any, Any]]) -> Any:
    """`obj` with every `_Tensor` replaced by its array (containers rebuilt or updated).

    `memo` maps ``id(original)`` to ``(original, result)`` (the original kept alive so that
    its id is not reused): shared and self-referencing objects are resolved once."""
    known = memo.get(id(obj))
    if known is not None:
        return known[1]
    if isinstance(obj, _Tensor):
        result = data.array(obj)
    elif isinstance(obj, _Opaque):
        raise CheckpointError(
            f"{data.path} holds a bare {type(obj).__name__.strip('_')} (not inside a tensor), "
            f"which this reader does not return."
        )
    elif isinstance(obj, dict):
        memo[id(obj)] = (obj, obj)
        for key, value in list(obj.items()):
            if isinstance(key, _Opaque):
                raise CheckpointError(f"{data.path} has a tensor or storage as a dict key.")
            obj[key] = _resolve(value, data, memo)
        return obj
    elif isinstance(obj, list):
        memo[id(obj)] = (obj, obj)
        obj[:] = [_resolve(value, data, memo) for value in obj]
        return obj
    elif isinstance(obj, (tuple, set, frozenset)):
        result = type(obj)(_resolve(value, data, memo) for value in obj)
    else:
        return obj
    memo[id(obj)] = (obj, result)
    return result


# --------------------------------------------------------------------------------------------
# The two formats


def _read_zip(path: str, file: BinaryIO) -> Any:
    try:
        archive = zipfile.ZipFile(file)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path} is a corrupt or truncated zip archive (a PyTorch checkpoint of PyTorch "
            f">= 1.6 is a zip archive): {error}"
        ) from error
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    pickles = [n for n in pickles if n in ("data.pkl",) or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{path} is a zip archive but not a PyTorch checkpoint: it has "
            f"{len(pickles)} '<folder>/data.pkl' records (expected 1) among {len(names)} "
            f"entries such as {names[:5]}."
        )
    prefix = pickles[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise CheckpointError(
            f"{path} is a TorchScript archive (torch.jit.save), which is not supported: save "
            f"the model's state_dict() with torch.save instead."
        )
    try:
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace")
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byte order {byteorder!r}.")
        unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), path, legacy=False)
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as error:
        raise CheckpointError(f"{path} is a corrupt or truncated zip archive: {error}") from error
    obj = _unpickle(unpickler, pickles[0])

    def read(storage: _Storage, itemsize: int) -> bytes:
        name = f"{prefix}data/{storage.root}"
        try:
            record = archive.read(name)
        except KeyError:
            raise CheckpointError(f"{path} lacks the record {name!r} of a storage.") from None
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise CheckpointError(f"{path}: record {name!r} is corrupt: {error}") from error
        if len(record) < storage.numel * itemsize:
            raise CheckpointError(
                f"{path}: record {name!r} has {len(record)} bytes, expected "
                f"{storage.numel * itemsize} ({storage.numel} x {storage.type.name})."
            )
        return record

    with archive:
        return _resolve(obj, _Data(path, read, "<" if byteorder == "little" else ">"), {})


def _read_legacy(path: str, file: BinaryIO) -> Any:
    def load(what: str, storages: _Unpickler | None = None) -> Any:
        return _unpickle(storages or _Unpickler(file, path, legacy=True), what)

    magic = load("the magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: it is neither a zip archive (PyTorch >= 1.6) "
            f"nor a legacy checkpoint (it starts with a pickle of {type(magic).__name__}, not "
            f"the magic number {LEGACY_MAGIC_NUMBER:#x})."
        )
    version = load("the protocol version")
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(
            f"{path}: legacy checkpoint protocol version {version!r} is not supported (only "
            f"{LEGACY_PROTOCOL_VERSION})."
        )
    info = load("the system information")
    little = not isinstance(info, dict) or info.get("little_endian", True) is not False
    unpickler = _Unpickler(file, path, legacy=True)
    obj = load("the object pickle", unpickler)
    keys = load("the storage keys")
    if not isinstance(keys, list) or not all(isinstance(_text(k), str) for k in keys):
        raise CheckpointError(f"{path}: the storage keys are {type(keys).__name__}, not a list.")
    data: dict[str, bytes] = {}
    byteorder = "<" if little else ">"
    for key in map(_text, keys):
        storage = unpickler.storages.get(key)
        if storage is None or storage.root != key:
            raise CheckpointError(f"{path}: stored data {key!r} belongs to no storage.")
        header = file.read(8)
        nbytes = storage.numel * storage.type.itemsize
        if len(header) == 8:
            (numel,) = struct.unpack(byteorder + "q", header)
            if numel != storage.numel:
                raise CheckpointError(
                    f"{path}: storage {key!r} holds {numel} elements, the pickle says "
                    f"{storage.numel}."
                )
            data[key] = file.read(nbytes)
        if len(header) != 8 or len(data[key]) != nbytes:
            raise CheckpointError(
                f"{path} is truncated: the data of storage {key!r} ({nbytes} bytes) is cut."
            )
    missing = sorted({s.root for s in unpickler.storages.values()} - set(data))
    if missing:
        raise CheckpointError(f"{path}: no data for the storages {missing[:5]}.")
    return _resolve(obj, _Data(path, lambda s, _: data[s.root], byteorder), {})


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Reads a ``torch.save`` file without PyTorch, refusing anything but tensors.

    Args:
        path: The checkpoint: a zip archive (PyTorch >= 1.6) or a legacy file (older
            PyTorch, or ``_use_new_zipfile_serialization=False``).

    Returns:
        What was saved, with every tensor (and parameter) as a NumPy array in native byte
        order: a state dict is an ``OrderedDict`` of name -> array. bfloat16 tensors
        become float32; other dtypes are kept.

    Raises:
        UnsafeCheckpointError: the pickle names a global other than the allowed ones (for
            instance ``posix.system``); raised when that global is read, before anything
            of the file runs.
        CheckpointError: a corrupt, truncated or unsupported file (TorchScript, the tar
            format of the first PyTorch releases), or tensors that do not fit their storages.
        FileNotFoundError: `path` does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        head = file.read(512)
        file.seek(0)
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            result = _read_zip(path, file)
        elif len(head) >= 262 and head[257:262] == b"ustar":
            raise CheckpointError(
                f"{path} is a tar archive, the checkpoint format of the first PyTorch releases: "
                f"not supported (the zip format of PyTorch >= 1.6 and the later legacy format "
                f"are)."
            )
        elif not head:
            raise CheckpointError(f"{path} is empty, not a PyTorch checkpoint.")
        else:
            result = _read_legacy(path, file)
    logger.debug("Read PyTorch checkpoint %s", path)
    return result


def floats_as_float32(obj: Any) -> Any:
    """`obj` (a checkpoint as read) with every floating-point array cast to float32."""
    if isinstance(obj, np.ndarray) and np.issubdtype(obj.dtype, np.floating):
        return obj.astype(np.float32, copy=False)
    if isinstance(obj, dict):
        return type(obj)((k, floats_as_float32(v)) for k, v in obj.items())
    return obj
