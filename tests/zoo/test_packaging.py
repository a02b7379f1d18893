"""The metafiles ship in the wheel: build it, install it into a fresh virtual environment,
and list the zoo from another directory with the installed package (not the source tree)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

SOURCES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "kerasseg", "zoo")

CHECK = """
import json, kerasseg
from kerasseg import zoo
from kerasseg.zoo import metafiles, recipes, verify
print(json.dumps({
    "file": kerasseg.__file__,
    "root": str(metafiles.packaged_root()),
    "models": zoo.list_models(),
    "encoder_weights": sorted(metafiles.load_index().encoder_weights),
    "recipe": recipes.load_recipe("unet11.isbi2012").name,
    "problems": verify.check_against_registry(),
}))
"""


@pytest.mark.slow
def test_wheel_ships_the_metafiles_and_recipes(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:  # a copy, so the build leaves nothing in the checkout
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("kerasseg-*.whl")

    # A fresh environment that sees the development environment's packages (TensorFlow,
    # Keras, pooch) through a .pth file, but not the source tree.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (venv / purelib.split(str(venv) + "/", 1)[1] / "dev-packages.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERASSEG_ZOO_INDEX")}
    env.update(KERASSEG_HOME=str(tmp_path / "home"), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [str(python), "-c", CHECK], cwd=work, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    installed = os.path.realpath(purelib)
    assert os.path.realpath(found["file"]).startswith(installed + os.sep), found["file"]
    assert os.path.realpath(found["root"]) == os.path.join(installed, "kerasseg", "zoo", "index")
    assert "unet" in found["models"]
    assert "resnet34.imagenet" in found["encoder_weights"] and len(found["encoder_weights"]) == 12
    assert found["recipe"] == "unet11.isbi2012" and found["problems"] == []

    # The console script of the installed package.
    listed = subprocess.run(
        [str(venv / "bin" / "kerasseg"), "zoo", "list", "unet"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.startswith("unet ")
