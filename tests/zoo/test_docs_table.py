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
    # The same index without the TernausNet metafile: unet11's task weights disappear, the
    # model itself stays (it is registered in code), now without a family metafile.
    listed = sorted(
        f"metafiles/{p.name}" for p in (copy / "metafiles").glob("*.yml") if p.stem != "ternausnet"
    )
    (copy / "model-index.yml").write_text(yaml.safe_dump({"schema": 2, "metafiles": listed}))
    script.REPO = tmp_path  # relative paths in the table are taken from the copy
    table = script.render(metafiles.read_index([copy]))
    assert "| `unet11` | segmentation | vgg11 | imagenet | – | 22,927,393 | 32 | ternausnet |" in (
        table
    )
    assert "unet11.isbi2012" not in table
    assert "| `fpn_resnet34.isbi2012` | ISBI 2012" in table and "dice 0.7076" in table
    assert "no: `kerasseg zoo train fpn_resnet34.isbi2012`" in table
    page = script.PAGE.read_text(encoding="utf-8")
    assert "| `unet11.isbi2012` | ISBI 2012" in page and "dice 0.7183" in page
    assert script.updated_page(page, table) != page
