"""The PyTorch checkpoint reader (`kerasseg.zoo.convert.read_torch_checkpoint`): equal to
``torch.load(weights_only=True)`` on torchvision state dicts of every encoder (zip and legacy
formats), refusing malicious pickles before anything runs, and serving ``weights="imagenet"``
in a process where PyTorch cannot be imported.

The torchvision state dicts have random values (every tensor drawn from a seeded generator;
no real checkpoint is downloaded). VGG checkpoints hold the `features` only, except VGG11's,
which is the whole model with its 123M-parameter classifier, as torchvision publishes it.
Crafted files (malicious, corrupt, out of bounds) are written opcode by opcode without
PyTorch, so those tests also run on an install without it.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerasseg.encoders import list_encoders
from kerasseg.zoo import convert
from kerasseg.zoo.convert import CheckpointError, UnsafeCheckpointError, read_torch_checkpoint
from tests.support import require_module, run_in_fresh_process
from tests.zoo.support import LocalServer, write_metafile

# --------------------------------------------------------------------------------------------
# torchvision state dicts with random values


def _random_state_dict(name: str, seed: int = 0) -> collections.OrderedDict:
    """torchvision's `name` state dict with every tensor random (VGG: features only, but
    VGG11 whole); built on the meta device so that nothing is initialised twice."""
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    if name.startswith("vgg") and name != "vgg11":
        model = model.features
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            else:
                tensor.copy_(torch.randint(0, 1000, tensor.shape, generator=generator))
    state = model.state_dict()
    if not name.startswith("vgg") or name == "vgg11":
        return state
    renamed = collections.OrderedDict((f"features.{k}", v) for k, v in state.items())
    renamed._metadata = state._metadata
    return renamed


def _assert_same_as_torch(ours, reference) -> None:
    """Same names in the same order, and every array equal, with dtype and shape."""
    torch = require_module("torch")
    assert list(ours) == list(reference)
    for name, tensor in reference.items():
        tensor = tensor.detach()
        expected = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        value = ours[name]
        assert isinstance(value, np.ndarray), name
        assert (value.dtype, value.shape) == (expected.dtype, expected.shape), name
        np.testing.assert_array_equal(value, expected, err_msg=name, strict=True)


@pytest.mark.parity
@pytest.mark.parametrize("encoder", list_encoders())
def test_every_encoder_checkpoint_reads_as_torch_load(encoder, tmp_path):
    torch = require_module("torch")
    state = _random_state_dict(encoder)
    path = tmp_path / f"{encoder}.pth"
    torch.save(state, path)
    reference = torch.load(path, map_location="cpu", weights_only=True)
    ours = read_torch_checkpoint(path)
    assert isinstance(ours, collections.OrderedDict)
    _assert_same_as_torch(ours, reference)
    assert ours._metadata == reference._metadata  # state_dict() versions, kept
    batch_norm = "bn" in encoder or encoder.startswith("resnet")
    assert any(name.endswith("num_batches_tracked") for name in ours) == batch_norm


@pytest.mark.parity
@pytest.mark.parametrize("encoder", ["resnet18", "vgg11_bn"])
def test_legacy_checkpoints_read_as_torch_load(encoder, tmp_path):
    torch = require_module("torch")
    path = tmp_path / f"{encoder}-legacy.pth"
    torch.save(_random_state_dict(encoder, seed=1), path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    reference = torch.load(path, map_location="cpu", weights_only=True)
    _assert_same_as_torch(read_torch_checkpoint(path), reference)


@pytest.mark.parity
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_dtypes_views_strides_and_wrapped_checkpoints(zip_format, tmp_path):
    torch = require_module("torch")
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    tensors = collections.OrderedDict(
        permuted=base.permute(2, 0, 1),  # non-contiguous
        sliced=base[1, 1:, ::2],  # storage offset and steps, sharing base's storage
        column=torch.randn(4, 4)[:, 1],
        scalar=torch.tensor(7),
        empty=torch.zeros(0, 3),
        parameter=torch.nn.Parameter(torch.randn(3)),
        float64=torch.randn(3, dtype=torch.float64),
        float16=torch.randn(2, 2).half(),
        bfloat16=torch.randn(5).to(torch.bfloat16),
        bfloat16_scalar=torch.tensor(-1.5, dtype=torch.bfloat16),
        int64=torch.tensor([-(2**40), 3]),
        int32=torch.tensor([-3, 2**30], dtype=torch.int32),
        int16=torch.tensor([-300, 2], dtype=torch.int16),
        int8=torch.tensor([-1, 2], dtype=torch.int8),
        uint8=torch.tensor([255, 2], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        complex64=torch.randn(2, dtype=torch.complex64),
    )
    checkpoint = {"model": tensors, "epoch": 3, "names": ["a", b"b"], "pair": (1, base[0])}
    path = tmp_path / "mixed.pth"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    reference = torch.load(path, weights_only=True)
    ours = read_torch_checkpoint(path)
    _assert_same_as_torch(ours["model"], reference["model"])
    assert (ours["epoch"], ours["names"]) == (3, ["a", b"b"])
    np.testing.assert_array_equal(ours["pair"][1], base[0].numpy(), strict=True)
    assert ours["model"]["bfloat16"].dtype == np.float32  # NumPy has no bfloat16
    # Copies (the storages' buffers are read-only), C-contiguous whatever the strides.
    assert all(v.flags.c_contiguous and v.flags.writeable for v in ours["model"].values())
    # The converter's reader: unwrapped, and floats as float32 as the torch path made them.
    state = convert.read_state_dict(path)
    assert state["float16"].dtype == state["float64"].dtype == np.float32
    assert state["int8"].dtype == np.int8


@pytest.mark.parity
def test_big_endian_storages_are_swapped(tmp_path):
    """A checkpoint written on a big-endian machine (byteorder record "big")."""
    torch = require_module("torch")
    little = tmp_path / "little.pth"
    torch.save({"a": torch.randn(2, 3), "b": torch.tensor([1, -(2**33)])}, little)
    big = tmp_path / "big.pth"
    with zipfile.ZipFile(little) as source, zipfile.ZipFile(big, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            record = info.filename.partition("/")[2]
            if record == "byteorder":
                data = b"big"
            elif record in ("data/0", "data/1"):
                dtype = "<f4" if record == "data/0" else "<i8"
                data = np.frombuffer(data, dtype).astype(dtype.replace("<", ">")).tobytes()
            target.writestr(info, data)
    reference = torch.load(big, weights_only=True)
    np.testing.assert_array_equal(reference["a"].numpy(), torch.load(little)["a"].numpy())
    ours = read_torch_checkpoint(big)
    _assert_same_as_torch(ours, reference)
    assert all(v.dtype.isnative for v in ours.values())


# --------------------------------------------------------------------------------------------
# Crafted files, written without PyTorch


def _ops(value) -> bytes:
    """The pickle opcodes that push `value` (a plain value) onto the unpickler's stack."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor_ops(
    key="0", numel=4, offset=0, size=(2, 2), stride=(2, 1), storage="FloatStorage"
) -> bytes:
    """``torch._utils._rebuild_tensor_v2`` of a storage record, as torch.save writes it."""
    storage_id = (
        pickle.MARK
        + _ops("storage")
        + _global("torch", storage)
        + _ops(key)
        + _ops("cpu")
        + _ops(numel)
        + pickle.TUPLE
    )
    hooks = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    arguments = storage_id + pickle.BINPERSID + _ops(offset) + _ops(size) + _ops(stride)
    arguments += pickle.NEWFALSE + hooks
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + arguments
        + pickle.TUPLE
        + pickle.REDUCE
    )


def _state_pickle(*items: tuple[str, bytes]) -> bytes:
    """A protocol-2 pickle of ``OrderedDict(name -> object)``, the objects given as opcodes."""
    body = b"".join(_ops(name) + obj for name, obj in items)
    return (
        pickle.PROTO
        + b"\x02"
        + _global("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.MARK
        + body
        + pickle.SETITEMS
        + pickle.STOP
    )


def _zip_checkpoint(path: Path, data_pkl: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("checkpoint/data.pkl", data_pkl)
        archive.writestr("checkpoint/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"checkpoint/data/{key}", data)
    return path


class _System:
    """Unpickles to ``os.system(command)`` -- what a malicious checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_crafted_zip_checkpoint_reads_without_torch(tmp_path):
    data = np.arange(6, dtype="<f4")
    pkl = _state_pickle(
        ("a", _tensor_ops(numel=6, offset=1, size=(2, 2), stride=(1, 2))),
        ("b", _tensor_ops(numel=6, offset=5, size=(), stride=())),
    )
    ours = read_torch_checkpoint(_zip_checkpoint(tmp_path / "x.pth", pkl, {"0": data.tobytes()}))
    np.testing.assert_array_equal(ours["a"], np.array([[1, 3], [2, 4]], "float32"), strict=True)
    np.testing.assert_array_equal(ours["b"], np.array(5, "float32"), strict=True)


@pytest.mark.parametrize("container", ["zip", "bare pickle", "legacy"])
def test_malicious_checkpoint_is_refused_before_anything_runs(container, tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps({"weight": _System(f"touch {marker}")}, protocol=2)
    assert b"posix" in evil or b"nt\n" in evil
    if container == "zip":  # a tensor first, then the call
        pkl = _state_pickle(("a", _tensor_ops()), ("b", evil[2:-1]))
        path = _zip_checkpoint(tmp_path / "evil.pth", pkl, {"0": bytes(16)})
    elif container == "legacy":  # in the object pickle, after a valid header
        header = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
        path = tmp_path / "evil.pth"
        path.write_bytes(header + evil)
    else:
        path = tmp_path / "evil.pkl"
        path.write_bytes(evil)
    with pytest.raises(UnsafeCheckpointError, match=r"names the global (posix|nt)\.system"):
        read_torch_checkpoint(path)
    assert not marker.exists()
    # The error is a pickle.UnpicklingError and a ValueError, and names the file.
    with pytest.raises(pickle.UnpicklingError, match=str(path)):
        read_torch_checkpoint(path)
    with pytest.raises(ValueError, match="Nothing from the file was run"):
        convert.read_state_dict(path) if path.suffix == ".pth" else read_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "pkl, message",
    [
        (_state_pickle(("a", _global("builtins", "eval"))), r"global builtins\.eval"),
        (_state_pickle(("a", _global("torch", "load"))), r"global torch\.load"),
        (_state_pickle(("a", _global("numpy.core.multiarray", "_reconstruct"))), r"_reconstruct"),
        (  # a getattr chain (protocol 4 dotted names) is no way around the list
            _state_pickle(("a", _global("collections", "OrderedDict.fromkeys"))),
            r"global collections\.OrderedDict\.fromkeys",
        ),
        (  # a tensor's state may not be set (BUILD)
            _state_pickle(("a", _tensor_ops() + _ops({"x": 1}) + pickle.BUILD)),
            r"set the state of a Tensor",
        ),
        (  # nor may an allowed function's attributes
            _state_pickle(
                ("a", _global("torch._utils", "_rebuild_tensor_v2") + _ops({}) + pickle.BUILD)
            ),
            r"set the state of a Global",
        ),
        (  # persistent ids other than storages (a pickled module of the legacy format)
            _state_pickle(("a", _ops(("module", "x", "y")) + pickle.BINPERSID)),
            r"persistent object 'module'",
        ),
    ],
    ids=["eval", "torch.load", "numpy", "dotted", "build-tensor", "build-global", "module"],
)
def test_other_globals_and_state_changes_are_refused(pkl, message, tmp_path):
    path = _zip_checkpoint(tmp_path / "x.pth", pkl, {"0": bytes(16)})
    with pytest.raises(UnsafeCheckpointError, match=message):
        read_torch_checkpoint(path)


@pytest.mark.parametrize(
    "tensor, storages, message",
    [
        (
            _tensor_ops(size=(3, 2)),
            {"0": bytes(16)},
            r"reaches element 5 of storage '0', which has 4",
        ),
        (_tensor_ops(offset=1), {"0": bytes(16)}, r"reaches element 4"),
        (_tensor_ops(size=(2, -1)), {"0": bytes(16)}, r"size \(2, -1\)"),
        (_tensor_ops(stride=(2,)), {"0": bytes(16)}, r"stride \(2,\)"),
        (_tensor_ops(), {"0": bytes(15)}, r"record 'checkpoint/data/0' has 15 bytes, expected 16"),
        (_tensor_ops(), {}, r"lacks the record 'checkpoint/data/0'"),
        (_tensor_ops(storage="QInt8Storage"), {"0": bytes(4)}, r"global torch\.QInt8Storage"),
    ],
    ids=["size", "offset", "negative", "rank", "short-record", "no-record", "quantised"],
)
def test_tensors_must_fit_their_storage(tensor, storages, message, tmp_path):
    path = _zip_checkpoint(tmp_path / "x.pth", _state_pickle(("a", tensor)), storages)
    with pytest.raises(CheckpointError, match=message):
        read_torch_checkpoint(path)


def test_corrupt_truncated_and_unsupported_files_name_the_path(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    good = _zip_checkpoint(tmp_path / "good.pth", _state_pickle(("a", _tensor_ops())), {"0": data})
    raw = good.read_bytes()
    cases = {
        "truncated.pth": (raw[: len(raw) // 2], r"corrupt or truncated zip archive"),
        "empty.pth": (b"", r"is empty"),
        "text.pth": (b"not a checkpoint\n", r"corrupt or truncated, or not a PyTorch checkpoint"),
        "number.pth": (pickle.dumps(42), r"neither a zip archive .* nor a legacy checkpoint"),
        "version.pth": (
            pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(999),
            r"protocol version 999 is not supported",
        ),
    }
    tar = io.BytesIO()
    tar.write(b"\0" * 257 + b"ustar" + b"\0" * 250)
    cases["old.tar"] = (
        tar.getvalue(),
        r"tar archive, the checkpoint format of the first PyTorch releases: not supported",
    )
    flipped = bytearray(raw)
    flipped[raw.index(data) + 1] ^= 0xFF  # a storage's bytes: the zip's CRC no longer matches
    cases["flipped.pth"] = (bytes(flipped), r"record 'checkpoint/data/0' is corrupt")
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as error:
            read_torch_checkpoint(path)
        assert str(path) in str(error.value), name
    with zipfile.ZipFile(tmp_path / "script.pt", "w") as archive:
        for record in ("data.pkl", "constants.pkl", "code/__torch__.py"):
            archive.writestr(f"script/{record}", b"")
    with pytest.raises(CheckpointError, match=r"TorchScript archive \(torch\.jit\.save\)"):
        read_torch_checkpoint(tmp_path / "script.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", b"hello")
    with pytest.raises(CheckpointError, match=r"zip archive but not a PyTorch checkpoint"):
        read_torch_checkpoint(tmp_path / "other.zip")
    with pytest.raises(FileNotFoundError):
        read_torch_checkpoint(tmp_path / "missing.pth")


@pytest.mark.parity
def test_truncated_torch_saves_are_refused(tmp_path):
    torch = require_module("torch")
    for zip_format in (True, False):
        path = tmp_path / f"full-{zip_format}.pth"
        torch.save({"a": torch.randn(100)}, path, _use_new_zipfile_serialization=zip_format)
        raw = path.read_bytes()
        for cut in (len(raw) // 3, len(raw) - 8):
            truncated = tmp_path / f"cut-{zip_format}-{cut}.pth"
            truncated.write_bytes(raw[:cut])
            with pytest.raises(CheckpointError, match="truncated") as error:
                read_torch_checkpoint(truncated)
            assert str(truncated) in str(error.value)


@pytest.mark.parity
def test_legacy_storage_views_read_as_torch_load(tmp_path):
    """Legacy files of old PyTorch could hold storage views (``view_metadata``): storage
    ``'view'`` is elements 2..5 of storage ``'root'``."""
    torch = require_module("torch")
    header = b"".join(
        pickle.dumps(v, protocol=2)
        for v in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    storage_id = (
        pickle.MARK
        + _ops("storage")
        + _global("torch", "FloatStorage")
        + _ops("root")
        + _ops("cpu")
        + _ops(6)
        + _ops(("view", 2, 3))
        + pickle.TUPLE
    )
    rebuild = (
        _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + storage_id
        + pickle.BINPERSID
        + _ops(1)
        + _ops((2,))
        + _ops((1,))
        + pickle.NEWFALSE
        + _global("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.TUPLE
        + pickle.REDUCE
    )
    body = _state_pickle(("a", rebuild))
    keys = pickle.dumps(["root"], protocol=2)
    data = struct.pack("<q", 6) + np.arange(6, dtype="<f4").tobytes()
    path = tmp_path / "views.pth"
    path.write_bytes(header + body + keys + data)
    reference = torch.load(path, weights_only=True)
    np.testing.assert_array_equal(reference["a"].numpy(), [3.0, 4.0])
    _assert_same_as_torch(read_torch_checkpoint(path), reference)


# --------------------------------------------------------------------------------------------
# weights="imagenet" without PyTorch

_NO_TORCH = '''
import functools
import importlib.abc


class _NoTorch(importlib.abc.MetaPathFinder):
    """Makes `import torch` (and torchvision) fail, as on a runtime-only install."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _NoTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("torch was importable")

import keras

from kerasseg import encoders, zoo
from tests.zoo.support import temporary_model


def builder(*, num_classes=1, input_shape=(None, None, 3), encoder_weights=None, encoder=""):
    inputs = keras.Input(input_shape)
    features = encoders.get(encoder, input_shape=input_shape, weights=encoder_weights)(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(features[-1]))


for encoder in ("resnet18", "vgg11_bn"):
    name = f"_no_torch_{encoder}"
    make = functools.partial(builder, encoder=encoder)
    with temporary_model(name, make, family="testzoo", encoder=encoder):
        model = zoo.get(name, weights="imagenet", progress=False)
    for i, weight in enumerate(model.get_layer(encoder).weights):
        outputs[f"{encoder}/{i:04d}"] = np.asarray(weight)
'''


@pytest.mark.parity
def test_imagenet_weights_convert_without_torch_equal_to_the_torch_path(tmp_path, monkeypatch):
    torch = require_module("torch")
    entries, models, checkpoints = [], [], {}
    with LocalServer() as server:
        for encoder in ("resnet18", "vgg11_bn"):
            path = tmp_path / f"{encoder}-random.pth"
            torch.save(_random_state_dict(encoder, seed=2), path)
            body = path.read_bytes()
            checkpoints[encoder] = path
            server.files[f"/models/{path.name}"] = body
            entries.append(
                {
                    "name": f"{encoder}.random",
                    "encoder": encoder,
                    "format": "torchvision",
                    "file": {
                        "url": server.url(f"/models/{path.name}"),
                        "sha256": hashlib.sha256(body).hexdigest(),
                        "size_bytes": len(body),
                    },
                    "licence": "CC0-1.0",
                    "source": "tests/zoo/test_torch_checkpoint.py (random weights)",
                }
            )
            models.append(
                {
                    "name": f"_no_torch_{encoder}",
                    "default_weights": "imagenet",
                    "encoder_weights": {"imagenet": f"{encoder}.random"},
                }
            )
        metafile = write_metafile(
            tmp_path / "index", "testzoo", {"encoder_weights": entries, "models": models}
        )
        monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(metafile))
        outputs, modules = run_in_fresh_process(_NO_TORCH, tmp_path)
        assert sorted(server.requests) == sorted(f"/models/{p.name}" for p in checkpoints.values())
    assert "torch" not in modules and "torchvision" not in modules
    for encoder, path in checkpoints.items():
        # The torch path: torch.load's tensors through the converter.
        reference = convert.convert_torchvision(encoder, torch.load(path, weights_only=True))
        ours = {k: v for k, v in outputs.items() if k.startswith(f"{encoder}/")}
        assert len(ours) == len(reference.weights) > 0
        for (key, value), weight in zip(sorted(ours.items()), reference.weights):
            np.testing.assert_array_equal(value, np.asarray(weight), err_msg=f"{key} {weight.path}")
