"""docs/zoo.md's tables are what docs/scripts/zoo_table.py writes from the metafiles."""

from __future__ import annotations

import importlib.util
import shutil

import yaml

from kerasseg.zoo import metafiles
from tests.support import REPO_ROOT


def _script():
    spec = importlib.util.spec_from_file_location(
        "zoo_table", REPO_ROOT / "docs" / "scripts" / "zoo_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_zoo_tables_are_up_to_date():
    script = _script()
    page = script.PAGE.read_text(encoding="utf-8")
    expected = script.updated_page(page, script.render(metafiles.read_index([REPO_ROOT / "zoo"])))
    assert page == expected, "docs/zoo.md is stale: run python docs/scripts/zoo_table.py"
    assert "| `unet` | segmentation |" in page and "| `resnet34.imagenet` |" in page


def test_the_table_follows_the_metafiles(tmp_path):
    script = _script()
    copy = tmp_path / "zoo"
    shutil.copytree(REPO_ROOT / "zoo", copy)
    # The same index without the SegNet family: its rows must disappear from the table.
    listed = sorted(
        f"metafiles/{p.name}" for p in (copy / "metafiles").glob("*.yml") if p.stem != "segnet"
    )
    (copy / "model-index.yml").write_text(yaml.safe_dump({"schema": 1, "metafiles": listed}))
    script.REPO = tmp_path  # relative paths in the table are taken from the copy
    table = script.render(metafiles.read_index([copy]))
    assert "| `unet11.isbi2012` | ISBI 2012" in table
    assert "no: `kerasseg zoo train unet11.isbi2012`" in table and "dice 0.7183" in table
    assert "| `segnet_vgg16` |" not in table and "| `fcn8s_vgg16` |" in table
    page = script.PAGE.read_text(encoding="utf-8")
    assert "| `segnet_vgg16` |" in page
    assert script.updated_page(page, table) != page
