"""Packaging hook: ships the top-level ``zoo/`` folder (the model zoo's metafiles and
recipes) inside the package as ``kerasseg/zoo/index/``, so that an installed wheel reads
them (see `kerasseg.zoo.metafiles.packaged_root`). Everything else is in setup.cfg.

setup.cfg cannot express this alone: ``packages = find:`` only finds folders under the
package, and the mapped package must be added to the found ones.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["kerasseg", "kerasseg.*"]) + ["kerasseg.zoo.index"],
    package_dir={"kerasseg.zoo.index": "zoo"},
)
