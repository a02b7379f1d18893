"""Loading saved models with errors that say what is wrong with the file.

`keras.models.load_model` reports a truncated ``.keras`` file as "File not found" (the
zip reader's message) and a missing class as a `TypeError` about decorators. `load_model`
checks the file first and turns those failures into messages that name the file, the
problem and the remedy. It also imports every kerasseg class, so a model saved with
kerasseg layers, losses, metrics or detectors loads without ``custom_objects``.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import keras

# Registers every serializable kerasseg class with Keras (see kerasseg/__init__.py).
from kerasseg import detection, layers, losses, metrics  # noqa: F401

__all__ = ["ModelFileError", "check_model_file", "load_model"]

#: What Keras writes into every ``.keras`` archive.
ARCHIVE_MEMBERS = ("config.json", "metadata.json")
#: Keras' message when deserialization meets a class it does not know.
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


class ModelFileError(ValueError):
    """A model file that cannot be loaded, with the reason and what to do."""


def _size(path: Path) -> str:
    return f"{path.stat().st_size:,} bytes"


def check_model_file(path: str | os.PathLike) -> Path:
    """Checks that `path` is a complete ``.keras`` archive before Keras opens it.

    Args:
        path: A ``.keras`` file (Keras 3's format: a zip archive with ``config.json``,
            ``metadata.json`` and the weights).

    Returns:
        The path.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ModelFileError: for a folder (a SavedModel), a legacy ``.h5`` file, a file that
            is not a zip archive (truncated or not a model) or an archive that lacks the
            members Keras writes or fails its checksums; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a folder, not a .keras file. A TensorFlow SavedModel loads with "
            "`tf.saved_model.load` (or `keras.layers.TFSMLayer` for inference); "
            "`load_model` reads the .keras files that `model.save('name.keras')` writes."
        )
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path} (expected a .keras file).")
    if path.suffix in (".h5", ".hdf5"):
        raise ModelFileError(
            f"{path} is a legacy HDF5 file: kerasseg models are saved and loaded as .keras "
            "files (`model.save('name.keras')`); weights alone load with "
            "`model.load_weights`."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} ({_size(path)}) is not a .keras model: a .keras file is a zip "
            "archive, and this one is truncated (an interrupted save or copy) or another "
            "kind of file. Save the model again."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in ARCHIVE_MEMBERS if m not in archive.namelist()]
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ModelFileError(
            f"{path} ({_size(path)}) is a damaged zip archive: {error}."
        ) from error
    if missing:
        raise ModelFileError(
            f"{path} is a zip archive but not a .keras model: it lacks {missing} (Keras "
            "writes config.json, metadata.json and model.weights.h5)."
        )
    if broken is not None:
        raise ModelFileError(
            f"{path} is damaged: the archive member {broken!r} fails its checksum. Save "
            "the model again."
        )
    return path


def _saved_with(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
        return f" (saved with Keras {metadata.get('keras_version', '?')})"
    except (KeyError, ValueError, zipfile.BadZipFile):
        return ""


def load_model(
    path: str | os.PathLike, *, compile: bool = True, safe_mode: bool = True
) -> keras.Model:
    """`keras.models.load_model` with every kerasseg class registered and clear errors.

    Example:
        >>> model = kerasseg.load_model("unet.keras")  # doctest: +SKIP

    Args:
        path: A ``.keras`` file written by ``model.save``.
        compile: Restore the optimizer, loss and metrics as saved.
        safe_mode: Keras' safe mode: refuse to deserialize ``Lambda`` layers' code.

    Returns:
        The model.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ModelFileError: for a file that is not a complete ``.keras`` archive (see
            `check_model_file`), or one that uses a class that neither Keras nor this
            kerasseg version defines (the message names it).
    """
    path = check_model_file(path)
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=safe_mode)
    except TypeError as error:
        unknown = _UNKNOWN_CLASS.search(str(error))
        if unknown is None:
            raise
        raise ModelFileError(
            f"{path} uses {unknown.group(1)!r}{_saved_with(path)}, which neither Keras nor "
            f"kerasseg {_version()} defines. If it is your own class, decorate it with "
            "`@keras.saving.register_keras_serializable()` and import its module before "
            "loading; if it is a kerasseg class, the file comes from another kerasseg "
            "version."
        ) from error


def _version() -> str:
    from kerasseg import __version__

    return __version__
