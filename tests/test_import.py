import json
import subprocess
import sys

HEAVY_OR_LAZY = [
    "matplotlib",
    "PIL",
    "yaml",
    "torch",
    "pycocotools",
    "kerasseg.data",
    "kerasseg.segmentation",
    "kerasseg.zoo.registry",
    "kerasseg.cli",
    "kerasseg.visualize",
]


def test_import_kerasseg_registers_serializables_but_loads_heavy_parts_lazily():
    # Keras itself may import some of these (it imports matplotlib and PIL when they are
    # installed); what counts is what `import kerasseg` adds on top of `import keras`.
    code = (
        "import sys, json, keras; before = set(sys.modules); import kerasseg; "
        "loaded = [m for m in "
        + repr(HEAVY_OR_LAZY)
        + " if m in sys.modules and m not in before]; "
        "registered = sorted(k for k in keras.saving.get_custom_objects() if k.startswith('kerasseg>')); "
        "kerasseg.zoo; lazy_ok = 'kerasseg.zoo.registry' in sys.modules; "
        "print(json.dumps([loaded, registered, lazy_ok]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, registered, lazy_ok = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == []
    assert "kerasseg>DivisibleSizeCheck" in registered
    assert "kerasseg>NonMaxSuppression" in registered
    # A saved detector is an instance of its family's model class.
    assert {"kerasseg>RetinaNet", "kerasseg>DetectionDecoder"} <= set(registered)
    assert lazy_ok


def test_unknown_attribute_raises_attribute_error():
    import pytest

    import kerasseg

    with pytest.raises(
        AttributeError, match=r"module 'kerasseg' has no attribute 'does_not_exist'"
    ):
        kerasseg.does_not_exist  # noqa: B018
