"""`kerasseg.load_model`: what it says about files Keras cannot load."""

import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.saving import ModelFileError, check_model_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small model with a kerasseg layer and loss, saved compiled."""
    inputs = keras.Input((8, 8, 3))
    x = kerasseg.layers.L2Normalization(name="l2")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=kerasseg.losses.BceDice())
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return model, path


def test_loads_a_saved_model_with_kerasseg_objects(saved):
    model, path = saved
    loaded = kerasseg.load_model(path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert isinstance(loaded.loss, kerasseg.losses.BceDice)


def test_a_truncated_file_is_named_as_truncated(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "half.keras"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # What Keras itself says about it: a misleading "file not found".
    with pytest.raises(Exception) as keras_error:
        keras.models.load_model(truncated)
    assert "is a zip archive" not in str(keras_error.value)
    with pytest.raises(ModelFileError, match=re.escape(f"{truncated} (")) as error:
        kerasseg.load_model(truncated)
    assert "truncated" in str(error.value) and "Save the model again" in str(error.value)


def test_other_files_and_folders_are_named(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No model file at .*missing.keras"):
        kerasseg.load_model(tmp_path / "missing.keras")
    with pytest.raises(ModelFileError, match=r"is a folder, not a .keras file.*SavedModel"):
        kerasseg.load_model(tmp_path)
    legacy = tmp_path / "old.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ModelFileError, match="legacy HDF5 file"):
        kerasseg.load_model(legacy)
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"is not a .keras model"):
        kerasseg.load_model(text)
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match=re.escape("lacks ['config.json', 'metadata.json']")):
        kerasseg.load_model(archive)


def test_a_damaged_member_fails_its_checksum(saved, tmp_path):
    _, path = saved
    damaged = tmp_path / "damaged.keras"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    # Flip a byte inside the stored weights: the archive's directory stays intact.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[start] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"'model.weights.h5' fails its checksum"):
        check_model_file(damaged)


def test_an_unknown_class_is_named_with_the_remedy(saved, tmp_path):
    _, path = saved
    renamed = tmp_path / "renamed.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(renamed, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = data.replace(b"L2Normalization", b"L3Normalization")
            out.writestr(item, data)
    with pytest.raises(ModelFileError, match=r"uses 'L3Normalization' .*saved with Keras") as error:
        kerasseg.load_model(renamed)
    assert "register_keras_serializable" in str(error.value)


def test_the_cli_reports_a_bad_model_file_in_one_line(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasseg.cli",
            "evaluate",
            "--model",
            str(bad),
            "--images",
            str(tmp_path),
            "--masks",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"error: --model {bad}" in result.stderr and "not a .keras model" in result.stderr
