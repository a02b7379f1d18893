"""Independent references for the loss tests: seeded inputs, NumPy formulas, smp adapters.

The NumPy functions follow the published formulas directly (loops over images and
classes, ignored pixels REMOVED by boolean selection, float64); they share no code with
`kerasseg.losses`. The smp adapters run `segmentation_models_pytorch.losses` on the same
data in NCHW layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255
EPS = 1e-7


# ----------------------------------------------------------------------------- data
@dataclass
class Case:
    """One seeded batch: `logits` (B, H, W, C), `y_true` in the layout of `mode`."""

    mode: str
    logits: np.ndarray  # float32 (B, H, W, C)
    y_true: np.ndarray  # binary/multilabel (B, H, W, C) float32; multiclass (B, H, W) int32
    ignore: bool

    @property
    def num_classes(self) -> int:
        return self.logits.shape[-1]

    @property
    def probs(self) -> np.ndarray:
        return probabilities(self.logits.astype("float64"), self.mode).astype("float32")

    def y_pred(self, from_logits: bool) -> np.ndarray:
        return self.logits if from_logits else self.probs

    def one_hot(self) -> tuple[np.ndarray, np.ndarray]:
        """`(t, valid)`: float64 (B, H, W, C) targets (0 where ignored) and bool validity."""
        return one_hot(self.y_true, self.mode, self.num_classes)


def make_case(
    mode: str,
    num_classes: int,
    seed: int,
    *,
    ignore: bool = False,
    empty: str | None = None,
    shape: tuple[int, int, int] = (2, 16, 16),
    scale: float = 2.0,
) -> Case:
    """A seeded batch.

    Args:
        empty: None; "all" (no positives anywhere: binary/multilabel all background,
            multiclass every pixel class 0); "last" (the last class never occurs); or
            "image0" (binary/multilabel: the first image has no positives).
    """
    rng = np.random.default_rng(seed)
    b, h, w = shape
    logits = (rng.normal(size=(b, h, w, num_classes)) * scale).astype("float32")
    if mode == "multiclass":
        high = num_classes - 1 if empty == "last" else num_classes
        y = rng.integers(0, high, size=(b, h, w)).astype("int32")
        if empty == "all":
            y[:] = 0
        if ignore:
            y[rng.random((b, h, w)) < 0.15] = IGNORE
    else:
        y = (rng.random((b, h, w, num_classes)) < 0.35).astype("float32")
        if empty == "all":
            y[:] = 0
        elif empty == "last":
            y[..., -1] = 0
        elif empty == "image0":
            y[0] = 0
        if ignore:
            y[rng.random((b, h, w, num_classes)) < 0.15] = IGNORE
    return Case(mode, logits, y, ignore)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def probabilities(logits: np.ndarray, mode: str) -> np.ndarray:
    return softmax(logits) if mode == "multiclass" else sigmoid(logits)


def one_hot(y_true: np.ndarray, mode: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if mode == "multiclass":
        valid_px = y_true != IGNORE
        t = np.zeros(y_true.shape + (num_classes,))
        for c in range(num_classes):
            t[..., c] = (y_true == c) & valid_px
        valid = np.repeat(valid_px[..., None], num_classes, axis=-1)
        return t, valid
    valid = y_true != IGNORE
    return np.where(valid, y_true, 0).astype("float64"), valid


def _groups(batch: int, per_image: bool) -> list[slice]:
    return [slice(i, i + 1) for i in range(batch)] if per_image else [slice(None)]


def _class_mean(losses: list[float], present: list[bool], class_weights, classes) -> float:
    """Weighted mean of class losses over the selected classes (0 if none is selected)."""
    weights = np.ones(len(losses)) if class_weights is None else np.asarray(class_weights, float)
    keep = np.ones(len(losses), bool)
    if classes == "present":
        keep = np.asarray(present)
    elif isinstance(classes, (list, tuple)):
        keep = np.isin(np.arange(len(losses)), classes)
    w = weights * keep
    return float((w * np.asarray(losses)).sum() / w.sum()) if w.sum() > 0 else 0.0


# -------------------------------------------------------------------- NumPy losses
def np_tversky_family(
    prob: np.ndarray,
    t: np.ndarray,
    valid: np.ndarray,
    *,
    score: str,
    smooth: float,
    per_image: bool,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    log: bool = False,
    class_weights=None,
    classes="all",
) -> float:
    """Dice / Jaccard / Tversky by their set formulas on the labelled pixels."""
    out = []
    for g in _groups(prob.shape[0], per_image):
        losses, present = [], []
        for c in range(prob.shape[-1]):
            keep = valid[g][..., c]
            p = prob[g][..., c][keep].astype("float64")
            y = t[g][..., c][keep]
            inter = np.sum(p * y)
            if score == "dice":
                s = (2 * inter + smooth) / (p.sum() + y.sum() + smooth)
            elif score == "jaccard":
                s = (inter + smooth) / (p.sum() + y.sum() - inter + smooth)
            else:
                fp = np.sum(p * (1 - y))
                fn = np.sum((1 - p) * y)
                s = (inter + smooth) / (inter + alpha * fp + beta * fn + smooth)
            losses.append(-np.log(s) if log else (1 - s) ** gamma)
            present.append(y.sum() > 0)
        out.append(_class_mean(losses, present, class_weights, classes))
    return float(np.mean(out))


def np_cross_entropy(
    case: Case, from_logits: bool, *, per_image: bool, class_weights=None
) -> float:
    """Mean (weighted) BCE / softmax CE over labelled entries."""
    t, valid = case.one_hot()
    x = case.y_pred(from_logits).astype("float64")
    if case.mode == "multiclass":
        logp = np.log(softmax(x)) if from_logits else np.log(np.clip(x, EPS, 1))
        pixel_loss = -(t * logp).sum(-1)
        w = np.ones(case.num_classes) if class_weights is None else np.asarray(class_weights)
        pixel_w = (t * w).sum(-1)  # 0 for ignored pixels
        return _pixel_mean(pixel_loss, pixel_w, per_image)
    p = sigmoid(x) if from_logits else np.clip(x, EPS, 1 - EPS)
    loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    w = np.ones(case.num_classes) if class_weights is None else np.asarray(class_weights)
    return _pixel_mean(loss, valid * w, per_image)


def np_focal(
    case: Case, from_logits: bool, *, gamma: float, alpha=None, per_image: bool, class_weights=None
) -> float:
    """Sigmoid focal (binary/multilabel) or softmax focal (multiclass), mean over labelled."""
    t, valid = case.one_hot()
    x = case.y_pred(from_logits).astype("float64")
    w = np.ones(case.num_classes) if class_weights is None else np.asarray(class_weights)
    if case.mode == "multiclass":
        p = softmax(x) if from_logits else np.clip(x, EPS, 1)
        pt = (t * p).sum(-1)
        pt_safe = np.where(pt > 0, pt, 1.0)
        pixel_loss = -((1 - pt_safe) ** gamma) * np.log(pt_safe)
        return _pixel_mean(pixel_loss, (t * w).sum(-1), per_image)
    p = sigmoid(x) if from_logits else np.clip(x, EPS, 1 - EPS)
    pt = np.where(t > 0, p, 1 - p)
    loss = -((1 - pt) ** gamma) * np.log(pt)
    if alpha is not None:
        loss = loss * np.where(t > 0, alpha, 1 - alpha)
    return _pixel_mean(loss, valid * w, per_image)


def _pixel_mean(loss: np.ndarray, weights: np.ndarray, per_image: bool) -> float:
    vals = []
    for g in _groups(loss.shape[0], per_image):
        wg = weights[g]
        vals.append((loss[g] * wg).sum() / wg.sum() if wg.sum() > 0 else 0.0)
    return float(np.mean(vals))


def np_lovasz_jaccard_grad(fg_sorted: np.ndarray) -> np.ndarray:
    """g_i = J(first i+1 wrong) - J(first i wrong), J the Jaccard loss (Berman et al., Alg. 1).

    Row i of `wrong` marks the first i sorted pixels as mispredicted; the Jaccard loss of
    that prediction is evaluated from its set counts directly (an O(N^2) table).
    """
    n = len(fg_sorted)
    n_pos = fg_sorted.sum()
    wrong = np.tri(n + 1, n, -1, dtype=bool)
    inter = np.sum(~wrong * fg_sorted, axis=1)  # positives still predicted right
    union = n_pos + np.sum(wrong * (1 - fg_sorted), axis=1)  # plus negatives predicted wrong
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, 1.0 - inter / union, 0.0)
    return np.diff(jac)


def np_lovasz(case: Case, from_logits: bool, *, per_image: bool, classes=None) -> float:
    """Lovász hinge per channel (binary/multilabel) or Lovász-softmax (multiclass)."""
    t, valid = case.one_hot()
    x = case.y_pred(from_logits).astype("float64")
    if classes is None:
        classes = "present" if case.mode == "multiclass" else "all"
    out = []
    for g in _groups(x.shape[0], per_image):
        losses, present = [], []
        for c in range(case.num_classes):
            keep = valid[g][..., c]
            fg = t[g][..., c][keep]
            if case.mode == "multiclass":
                p = softmax(x[g])[..., c][keep] if from_logits else x[g][..., c][keep]
                errors = np.abs(fg - p)
            else:
                if from_logits:
                    z = x[g][..., c][keep]
                else:
                    pc = np.clip(x[g][..., c][keep], EPS, 1 - EPS)
                    z = np.log(pc / (1 - pc))
                errors = 1.0 - z * (2 * fg - 1)
            order = np.argsort(-errors, kind="stable")
            grad = np_lovasz_jaccard_grad(fg[order])
            losses.append(float(np.dot(np.maximum(errors[order], 0), grad)) if len(fg) else 0.0)
            present.append(fg.sum() > 0)
        out.append(_class_mean(losses, present, None, classes))
    return float(np.mean(out))


# --------------------------------------------------------------------- smp adapters
def to_nchw(x: np.ndarray, dtype=None):
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    return tensor.double() if dtype is None else tensor.to(dtype)


def smp_inputs(case: Case, from_logits: bool, *, float64: bool = True):
    """`(y_pred, y_true)` torch tensors in smp's layout (NCHW; class ids (N, H, W) long).

    float64 by default, so that the reference adds no rounding of its own; smp's Lovász
    code only runs in float32 (its Jaccard gradient is cast with `.float()`).
    """
    import torch

    dtype = torch.float64 if float64 else torch.float32
    y_pred = to_nchw(case.y_pred(from_logits).astype("float64"), dtype)
    if case.mode == "multiclass":
        y_true = torch.from_numpy(case.y_true.astype("int64"))
    else:
        y_true = to_nchw(case.y_true.astype("float64"), dtype)
    return y_pred, y_true


def smp_per_image_mean(loss_fn, y_pred, y_true) -> float:
    """smp has no per-image mode: the mean of its loss over single-image batches."""
    values = [float(loss_fn(y_pred[i : i + 1], y_true[i : i + 1])) for i in range(len(y_pred))]
    return float(np.mean(values))
