"""NMS: parity with tf.image and torchvision, Soft-NMS against the paper's algorithm."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg.detection.nms import NonMaxSuppression, batched_nms, non_max_suppression, soft_nms
from tests.support import require_module


def random_set(rng, n, max_coord=200.0, clustered=True):
    """Boxes in a few clusters so that many pairs overlap."""
    if clustered:
        centres = rng.uniform(20, max_coord, (max(1, n // 8), 2))
        centre = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    else:
        centre = rng.uniform(0, max_coord, (n, 2))
    size = rng.uniform(8, 40, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32)


def kept(indices, num):
    indices, num = keras.ops.convert_to_numpy(indices), int(keras.ops.convert_to_numpy(num))
    assert np.all(indices[num:] == -1) and np.all(indices[:num] >= 0)
    return indices[:num].tolist()


# -------------------------------------------------------------- greedy, single class


def test_hand_worked_threshold_and_ties():
    # IoU([0,0,3,1], [1,0,4,1]) = 2 / 4 = 0.5 exactly: kept at threshold 0.5 (strict >).
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1], [10, 10, 11, 11], [0, 0, 3, 1]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.9], np.float32)
    assert kept(*non_max_suppression(boxes, scores, max_output_size=4, iou_threshold=0.5)) == [
        0,
        1,
        2,
    ]
    # Below 0.5 box 1 goes; box 3 (duplicate of 0, same score) loses the tie to the lower index.
    assert kept(*non_max_suppression(boxes, scores, max_output_size=4, iou_threshold=0.49)) == [
        0,
        2,
    ]
    # score_threshold is strict too: a score equal to it is dropped.
    assert kept(
        *non_max_suppression(
            boxes, scores, max_output_size=4, iou_threshold=0.5, score_threshold=0.8
        )
    ) == [0]
    # max_output_size caps and pads.
    indices, num = non_max_suppression(boxes, scores, max_output_size=2, iou_threshold=0.5)
    assert keras.ops.convert_to_numpy(indices).tolist() == [0, 1] and int(num) == 2


@pytest.mark.parity
def test_parity_with_tf_image_non_max_suppression():
    tf = require_module("tensorflow")
    rng = np.random.default_rng(0)
    for trial in range(6):
        boxes, scores = random_set(rng, 120)
        if trial % 2:  # ties: quantised scores and exact duplicates of boxes
            scores = np.round(scores * 5) / 5
            boxes[60:70] = boxes[:10]
        iou_threshold = [0.3, 0.5, 0.7][trial % 3]
        score_threshold = [float("-inf"), 0.2][trial % 2]
        expected = (
            tf.image.non_max_suppression(boxes, scores, 120, iou_threshold, score_threshold)
            .numpy()
            .tolist()
        )
        ours = kept(
            *non_max_suppression(
                boxes,
                scores,
                max_output_size=120,
                iou_threshold=iou_threshold,
                score_threshold=score_threshold,
            )
        )
        assert ours == expected, f"trial {trial}"
    # IoU exactly at the threshold (0.5) for many pairs: a grid of 3x1 boxes shifted by 1.
    xs = np.arange(0, 20, dtype=np.float32)
    boxes = np.stack([xs, np.zeros_like(xs), xs + 3, np.ones_like(xs)], 1)
    scores = rng.permutation(20).astype(np.float32) / 20
    expected = tf.image.non_max_suppression(boxes, scores, 20, 0.5).numpy().tolist()
    assert (
        kept(*non_max_suppression(boxes, scores, max_output_size=20, iou_threshold=0.5)) == expected
    )


@pytest.mark.parity
def test_parity_with_torchvision_nms_and_batched_nms():
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(1)
    boxes, scores = random_set(rng, 150)
    classes = rng.integers(0, 4, 150)
    expected = tv_ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.45).numpy().tolist()
    assert (
        kept(*non_max_suppression(boxes, scores, max_output_size=150, iou_threshold=0.45))
        == expected
    )

    expected = tv_ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.45
    ).numpy()
    out = batched_nms(
        boxes,
        scores,
        classes,
        max_detections=150,
        iou_threshold=0.45,
        score_threshold=0.0,
        pre_nms_top_k=None,
    )
    num = int(out["num_detections"])
    assert num == len(expected)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["boxes"])[:num], boxes[expected])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out["classes"])[:num], classes[expected]
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["scores"])[:num], scores[expected])


# --------------------------------------------------------------- batched, class aware


@pytest.mark.parity
def test_per_class_scores_match_tf_combined_nms_and_padding():
    tf = require_module("tensorflow")
    rng = np.random.default_rng(2)
    batch, n, c, m = 3, 80, 5, 30
    boxes = np.stack([random_set(rng, n)[0] for _ in range(batch)])
    scores = rng.uniform(0, 1, (batch, n, c)).astype(np.float32) ** 3
    scores[2] = 0.01  # an image with nothing above the score threshold
    ref = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores, m, m, iou_threshold=0.5, score_threshold=0.1, clip_boxes=False
    )
    out = batched_nms(
        boxes, scores, max_detections=m, iou_threshold=0.5, score_threshold=0.1, pre_nms_top_k=None
    )
    out = {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
    assert out["boxes"].shape == (batch, m, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == (batch, m) and out["classes"].dtype == np.int32
    assert out["scores"].shape == (batch, m) and out["num_detections"].shape == (batch,)
    np.testing.assert_array_equal(out["num_detections"], ref.valid_detections.numpy())
    assert out["num_detections"][2] == 0
    for b in range(batch):
        num = out["num_detections"][b]
        np.testing.assert_allclose(out["scores"][b, :num], ref.nmsed_scores.numpy()[b, :num])
        np.testing.assert_array_equal(
            out["classes"][b, :num], ref.nmsed_classes.numpy()[b, :num].astype(int)
        )
        np.testing.assert_allclose(out["boxes"][b, :num], ref.nmsed_boxes.numpy()[b, :num])
        # Dense padded format: class -1, zero boxes and scores after the valid entries.
        assert np.all(out["classes"][b, num:] == -1)
        assert np.all(out["boxes"][b, num:] == 0) and np.all(out["scores"][b, num:] == 0)
        assert np.all(np.diff(out["scores"][b, :num]) <= 0)


@pytest.mark.parametrize("class_aware", [True, False])
def test_tensorflows_kernel_and_the_tensor_loop_select_the_same(class_aware):
    """The two greedy implementations (TensorFlow's NMS kernel for hard NMS on that
    backend, the loop of tensor ops elsewhere) agree, padding candidates included."""
    tf = require_module("tensorflow")
    from kerasseg.detection.nms import _greedy_select, _tensorflow_hard_select

    rng = np.random.default_rng(5)
    batch, k, m = 4, 300, 60
    boxes = np.stack([random_set(rng, k)[0] for _ in range(batch)]) - 50.0  # some negative
    scores = np.sort(rng.uniform(0, 1, (batch, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    scores[1, 200:] = -np.inf  # padding candidates
    scores[2, 10:20] = scores[2, 10]  # ties: the lower index first
    classes = rng.integers(0, 6, (batch, k)).astype(np.int32) if class_aware else None
    args = (
        tf.constant(boxes),
        tf.constant(scores),
        None if classes is None else tf.constant(classes),
    )
    loop = _greedy_select(*args, m, 0.45, 0.05)
    kernel = tf.function(_tensorflow_hard_select)(*args, m, 0.45, 0.05)
    for a, b in zip(loop, kernel):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert int(keras.ops.convert_to_numpy(loop[2]).min()) > 5


@pytest.mark.parity
def test_class_specific_boxes_and_pre_nms_top_k():
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(3)
    n, c, top_k = 60, 3, 100
    boxes = np.stack([random_set(rng, n)[0] for _ in range(c)], axis=1)  # (N, C, 4)
    scores = rng.uniform(0, 1, (n, c)).astype(np.float32)
    out = batched_nms(
        boxes[None],
        scores[None],
        max_detections=50,
        iou_threshold=0.4,
        score_threshold=0.05,
        pre_nms_top_k=top_k,
    )
    # Reference: the top_k best (box, class) candidates through torchvision's batched_nms.
    flat_scores, flat_boxes = scores.reshape(-1), boxes.reshape(-1, 4)
    flat_classes = np.tile(np.arange(c), n)
    best = np.argsort(-flat_scores, kind="stable")[:top_k]
    best = best[flat_scores[best] > 0.05]
    keep = tv_ops.batched_nms(
        torch.from_numpy(flat_boxes[best]),
        torch.from_numpy(flat_scores[best]),
        torch.from_numpy(flat_classes[best]),
        0.4,
    ).numpy()[:50]
    num = int(out["num_detections"][0])
    assert num == len(keep)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["boxes"])[0, :num], flat_boxes[best][keep]
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out["classes"])[0, :num], flat_classes[best][keep]
    )


def test_class_agnostic_and_unbatched():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.3, 0.7]], np.float32)  # (N, C)
    aware = batched_nms(boxes, scores, max_detections=5, score_threshold=0.1)
    assert keras.ops.convert_to_numpy(aware["classes"]).tolist() == [0, 1, 1, 0, -1]
    # Agnostic: box 0 (0.9) removes box 1 (IoU 0.81); box 2 as class 1 (0.7) removes
    # the same box as class 0 (0.3).
    agnostic = batched_nms(
        boxes, scores, max_detections=5, score_threshold=0.1, class_agnostic=True
    )
    assert keras.ops.convert_to_numpy(agnostic["classes"]).tolist() == [0, 1, -1, -1, -1]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(agnostic["scores"]), [0.9, 0.7, 0, 0, 0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(agnostic["boxes"])[:2], boxes[[0, 2]])
    assert int(agnostic["num_detections"]) == 2


def test_bad_arguments():
    with pytest.raises(
        ValueError, match="`max_output_size` / `max_detections` must be a positive int"
    ):
        non_max_suppression(np.zeros((2, 4)), np.zeros(2), max_output_size=0)
    with pytest.raises(ValueError, match="`iou_threshold` must be in"):
        batched_nms(np.zeros((1, 2, 4)), np.zeros((1, 2, 3)), iou_threshold=1.5)
    with pytest.raises(ValueError, match="`method` must be"):
        NonMaxSuppression(method="soft")
    with pytest.raises(ValueError, match=r"`scores` must be \(B, N, C\)"):
        batched_nms(np.zeros((1, 2, 4)), np.zeros((2,)))


# ---------------------------------------------------------------------- Soft-NMS


def _iou_inline(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, written out here, not taken from kerasseg."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def soft_nms_reference(boxes, scores, method, sigma, nt, threshold):
    """Algorithm 1 of Bodla et al. (2017), written from the paper, one box at a time."""
    remaining = [i for i in range(len(boxes)) if scores[i] > threshold]
    current = scores.astype(np.float64).copy()
    selected, selected_scores = [], []
    while remaining:
        m = max(remaining, key=lambda i: (current[i], -i))
        selected.append(m)
        selected_scores.append(current[m])
        remaining.remove(m)
        for i in remaining:
            iou = _iou_inline([float(v) for v in boxes[m]], [float(v) for v in boxes[i]])
            if method == "linear":
                current[i] *= (1 - iou) if iou >= nt else 1.0
            else:
                current[i] *= np.exp(-(iou**2) / sigma)
        remaining = [i for i in remaining if current[i] > threshold]
    return selected, np.asarray(selected_scores)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_the_papers_algorithm(method):
    rng = np.random.default_rng(4)
    for trial in range(3):
        boxes, scores = random_set(rng, 70)
        expected, expected_scores = soft_nms_reference(boxes, scores, method, 0.5, 0.3, 0.05)
        indices, new_scores, num = soft_nms(
            boxes,
            scores,
            max_output_size=70,
            method=method,
            sigma=0.5,
            iou_threshold=0.3,
            score_threshold=0.05,
        )
        assert kept(indices, num) == expected, f"trial {trial}"
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(new_scores)[: int(num)],
            expected_scores,
            rtol=1e-4,
            atol=1e-6,
        )
    # Decay, not removal: a duplicate box survives with a lower score under gaussian decay.
    dup = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    indices, new_scores, num = soft_nms(
        dup,
        np.array([0.9, 0.8], np.float32),
        max_output_size=2,
        method="gaussian",
        score_threshold=0.1,
    )
    assert int(num) == 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new_scores), [0.9, 0.8 * np.exp(-1 / 0.5)], rtol=1e-5
    )


def test_linear_soft_nms_hand_worked():
    # Linear Soft-NMS (Bodla et al. 2017, eq. 2): s_i <- s_i * (1 - IoU(M, b_i)) when
    # IoU(M, b_i) > Nt, else s_i unchanged. Nt = 0.3, boxes (x1, y1, x2, y2):
    #   A [0, 0, 10, 10] s=0.9, B [0, 0, 10, 5] s=0.8, C [5, 0, 15, 10] s=0.7
    # Round 1, M = A (0.9):
    #   IoU(A, B) = 50 / (100 + 50 - 50) = 0.5 > 0.3     -> s_B = 0.8 * (1 - 0.5) = 0.4
    #   IoU(A, C) = 50 / (100 + 100 - 50) = 1/3 > 0.3    -> s_C = 0.7 * (1 - 1/3) = 0.46667
    # Round 2, M = C (0.46667 > 0.4):
    #   IoU(C, B) = 25 / (100 + 50 - 25) = 0.2 <= 0.3    -> s_B stays 0.4
    # Round 3, M = B (0.4). Output order A, C, B with scores 0.9, 0.46667, 0.4.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [5, 0, 15, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    indices, new_scores, num = soft_nms(
        boxes, scores, max_output_size=3, method="linear", iou_threshold=0.3, score_threshold=0.05
    )
    assert kept(indices, num) == [0, 2, 1]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new_scores)[:3], [0.9, 0.7 * 2 / 3, 0.4], rtol=1e-6
    )


@pytest.mark.parity
def test_gaussian_soft_nms_matches_tensorflow():
    tf = require_module("tensorflow")
    rng = np.random.default_rng(5)
    boxes, scores = random_set(rng, 90)
    # TensorFlow's weight is exp(-IoU^2 / (2 * soft_nms_sigma)): its sigma is ours / 2.
    ref_indices, ref_scores = tf.image.non_max_suppression_with_scores(
        boxes, scores, 90, iou_threshold=1.0, score_threshold=0.05, soft_nms_sigma=0.25
    )
    indices, new_scores, num = soft_nms(
        boxes, scores, max_output_size=90, method="gaussian", sigma=0.5, score_threshold=0.05
    )
    assert kept(indices, num) == ref_indices.numpy().tolist()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(new_scores)[: int(num)], ref_scores.numpy(), rtol=1e-4
    )


def test_batched_soft_nms_equals_per_image():
    rng = np.random.default_rng(6)
    boxes = np.stack([random_set(rng, 40)[0] for _ in range(2)])
    scores = rng.uniform(0, 1, (2, 40, 1)).astype(np.float32)
    out = batched_nms(
        boxes,
        scores,
        max_detections=40,
        method="linear",
        iou_threshold=0.3,
        score_threshold=0.05,
        pre_nms_top_k=None,
    )
    for b in range(2):
        expected, expected_scores = soft_nms_reference(
            boxes[b], scores[b, :, 0], "linear", 0.5, 0.3, 0.05
        )
        num = int(out["num_detections"][b])
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out["boxes"])[b, :num], boxes[b][expected]
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out["scores"])[b, :num],
            expected_scores,
            rtol=1e-4,
            atol=1e-6,
        )


# --------------------------------------------------------------------- the layer


def test_layer_in_a_model_predict_and_save_round_trip(tmp_path):
    boxes_in = keras.Input((None, 4), name="boxes")
    scores_in = keras.Input((None, 3), name="scores")
    detections = NonMaxSuppression(
        max_detections=7, iou_threshold=0.5, score_threshold=0.2, pre_nms_top_k=50
    )(boxes_in, scores_in)
    model = keras.Model([boxes_in, scores_in], detections)
    rng = np.random.default_rng(7)
    boxes = np.stack([random_set(rng, 30)[0] for _ in range(2)])
    scores = rng.uniform(0, 1, (2, 30, 3)).astype(np.float32)
    predicted = model.predict([boxes, scores], verbose=0)
    assert set(predicted) == {"boxes", "classes", "scores", "num_detections"}
    assert predicted["boxes"].shape == (2, 7, 4) and predicted["classes"].shape == (2, 7)
    direct = batched_nms(
        boxes, scores, max_detections=7, iou_threshold=0.5, score_threshold=0.2, pre_nms_top_k=50
    )
    for key in predicted:
        np.testing.assert_allclose(predicted[key], keras.ops.convert_to_numpy(direct[key]))

    # Fewer candidates than pre_nms_top_k at run time (N is dynamic): -inf filler path.
    few = model.predict([boxes[:, :5], scores[:, :5]], verbose=0)
    direct = batched_nms(
        boxes[:, :5], scores[:, :5], max_detections=7, iou_threshold=0.5, score_threshold=0.2
    )
    for key in few:
        np.testing.assert_allclose(few[key], keras.ops.convert_to_numpy(direct[key]))
    assert np.all(few["classes"][few["scores"] == 0] == -1)

    path = tmp_path / "nms.keras"
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects: the layer is registered
    layer = next(lyr for lyr in restored.layers if isinstance(lyr, NonMaxSuppression))
    assert layer.get_config()["max_detections"] == 7 and layer.pre_nms_top_k == 50
    again = restored.predict([boxes, scores], verbose=0)
    for key in predicted:
        np.testing.assert_allclose(again[key], predicted[key])


# ------------------------------------------------------------- other Keras backends

_TORCH_BACKEND_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, torch, torchvision, keras
from kerasseg.detection import nms
data = np.load(sys.argv[1])
out = nms.batched_nms(data["boxes"], data["scores"], max_detections=15, iou_threshold=0.5, score_threshold=0.1)
single, num = nms.non_max_suppression(data["boxes"][0], data["scores"][0, :, 0], max_output_size=40, iou_threshold=0.4)
reference = torchvision.ops.nms(torch.from_numpy(data["boxes"][0]), torch.from_numpy(data["scores"][0, :, 0]), 0.4)
print(json.dumps({
    "backend": keras.backend.backend(),
    "out": {k: keras.ops.convert_to_numpy(v).tolist() for k, v in out.items()},
    "single": keras.ops.convert_to_numpy(single)[: int(num)].tolist(),
    "torchvision": reference.tolist(),
}))
"""


@pytest.mark.parity
def test_same_results_on_the_torch_backend(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    require_module("torch")
    rng = np.random.default_rng(8)
    boxes = np.stack([random_set(rng, 40)[0] for _ in range(2)])
    scores = rng.uniform(0, 1, (2, 40, 3)).astype(np.float32)
    np.savez(tmp_path / "data.npz", boxes=boxes, scores=scores)
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", _TORCH_BACKEND_SCRIPT, str(tmp_path / "data.npz")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    torch_run = json.loads(result.stdout.strip().splitlines()[-1])
    assert torch_run["backend"] == "torch"
    assert torch_run["single"] == torch_run["torchvision"]
    ours = batched_nms(boxes, scores, max_detections=15, iou_threshold=0.5, score_threshold=0.1)
    for key, value in ours.items():
        np.testing.assert_allclose(
            np.asarray(torch_run["out"][key]), keras.ops.convert_to_numpy(value), rtol=1e-6
        )
