"""The NumPy mAP evaluator imports and runs where Keras and TensorFlow cannot be imported."""

import json
import subprocess
import sys

BLOCKED = ("keras", "tensorflow", "torch", "jax")

CODE = f"""
import json, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
import numpy as np
from kerasseg.metrics.detection import evaluate
gt = {{"boxes": np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], "float32"),
       "classes": np.array([[0, 1]])}}
det = {{"boxes": np.array([[[0, 0, 10, 10], [50, 50, 60, 60]]], "float32"),
        "classes": np.array([[0, 1]]), "scores": np.array([[0.9, 0.8]])}}
result = evaluate(gt, det, protocol="voc")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r} and sys.modules[m])
print(json.dumps({{"map": float(result.map), "loaded": loaded}}))
"""


def test_evaluator_needs_no_keras():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    # Class 0: one true positive (AP 1); class 1: its only detection misses (AP 0).
    assert report["map"] == 0.5


def test_keras_parts_say_what_is_missing():
    code = (
        "import sys\nsys.modules['keras'] = None\nimport kerasseg.metrics\n"
        "try:\n    kerasseg.metrics.Dice\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ImportError" in out.stdout and "keras" in out.stdout
