"""``MeanAveragePrecision``: the detection evaluator as a Keras metric.

In ``model.compile(metrics=[...])`` Keras hands a metric one tensor per model output, so
inside ``fit``/``evaluate`` the detections and the ground truth travel *packed*:

* ``y_pred``: (B, N, 6) ``[x1, y1, x2, y2, class, score]``, rows with class < 0 are padding
  (see `kerasseg.detection.format.pack_detections`);
* ``y_true``: (B, M, 5) ``[x1, y1, x2, y2, class]`` or (B, M, 6) with a last column of
  flags: COCO ``iscrowd`` or VOC ``difficult`` (see
  `kerasseg.detection.format.pack_ground_truth`).

Called directly (``metric.update_state(y_true, y_pred)``) it also takes the library's
dict batches, ``{"boxes", "classes"[, "scores", "iscrowd", "difficult"]}``.

The boxes are kept in Python (NumPy) memory, outside TF variables. In a compiled TF
``fit``/``evaluate`` each batch reaches Python through ``tf.py_function``, so the model
must be compiled with ``jit_compile=False`` (XLA cannot call Python; the "auto" default
turns XLA on when a GPU is present). Eager backends (torch, or ``run_eagerly=True``) work
directly; under a JAX ``jit`` it raises (use ``run_eagerly=True`` or the callback). Not
meant for ``tf.distribute`` strategies (replicas would share one Python accumulator).

The mAP needs all the images, so ``result()`` computes it only when called eagerly:
Keras does that once at the end of ``evaluate()`` and of each ``fit`` epoch, which is what
``History``, callbacks and the returned logs get. Inside the compiled step (the live
progress bar) the value is NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from kerasseg.detection.format import (  # noqa: F401  (pack_*: re-exported, their old home)
    pack_detections,
    pack_ground_truth,
    unpack_detections,
    unpack_ground_truth,
)
from kerasseg.metrics.detection import coco as coco_protocol
from kerasseg.metrics.detection.evaluator import DetectionEvaluator
from kerasseg.metrics.detection.result import DetectionResult

_GT_FLAGS = {"coco": "iscrowd", "voc07": "difficult", "voc": "difficult"}


def _in_xla_context() -> bool:
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - private API moved
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def _has_tracer(*values: Any) -> bool:
    import jax

    leaves = []
    for value in values:
        leaves.extend(value.values() if isinstance(value, Mapping) else [value])
    return any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


@keras.saving.register_keras_serializable(package="kerasseg")
class MeanAveragePrecision(keras.metrics.Metric):
    """Detection mAP over a whole evaluation (COCO, VOC2007 or VOC all-point).

    Example:
        ```python
        model.compile(
            optimizer="adam",
            loss=...,
            metrics=[kerasseg.metrics.MeanAveragePrecision(protocol="coco", num_classes=20)],
            jit_compile=False,
        )
        # y_pred: (B, N, 6) packed detections, y_true: (B, M, 5) packed ground truth
        model.evaluate(images, packed_ground_truth)["map"]
        ```

    Args:
        protocol: "coco", "voc07" or "voc".
        num_classes: Classes are ``0 .. num_classes - 1``; None: those seen.
        class_names: Names by class id (list or dict), for :meth:`evaluation_result`.
        summary: Which number ``result()`` returns: a key of
            ``DetectionResult.summary`` ("map", "map50", "map75", "map_small", ...,
            "mar100", ...; VOC: "map" or "map50").
        max_detections: COCO maxDets per image and class.
        iou_threshold: VOC IoU threshold (strict).
        pixel_inclusive: VOC ``+1`` pixel convention.
        name: Metric name (the key in the logs).
        dtype: Dtype of the returned value.
    """

    def __init__(
        self,
        protocol: str = "coco",
        num_classes: int | None = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        summary: str = "map",
        max_detections: Sequence[int] = coco_protocol.MAX_DETECTIONS,
        iou_threshold: float = 0.5,
        pixel_inclusive: bool = False,
        name: str = "map",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        if isinstance(class_names, Mapping):
            class_names = {int(k): str(v) for k, v in class_names.items()}
        self._evaluator = DetectionEvaluator(
            protocol,
            num_classes=num_classes,
            class_names=class_names,
            max_detections=max_detections,
            iou_threshold=iou_threshold,
            pixel_inclusive=pixel_inclusive,
            progress=False,
        )
        valid = coco_protocol.STAT_NAMES if protocol == "coco" else ("map", "map50")
        if summary not in valid:
            raise ValueError(
                f"`summary` must be one of {valid} for protocol {protocol!r}; got {summary!r}."
            )
        self.protocol = protocol
        self.num_classes = num_classes
        self.class_names = class_names
        self.summary = summary
        self.max_detections = tuple(int(m) for m in max_detections)
        self.iou_threshold = float(iou_threshold)
        self.pixel_inclusive = bool(pixel_inclusive)
        self._flag = _GT_FLAGS[protocol]
        self._version = 0
        self._cached: tuple[int, DetectionResult] | None = None

    # Accumulation ---------------------------------------------------------------------

    def _update_numpy(self, y_true: Any, y_pred: Any) -> None:
        self._evaluator.update(unpack_ground_truth(y_true, self._flag), unpack_detections(y_pred))
        self._version += 1

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Adds a batch of ground truth and detections.

        Args:
            y_true: Packed (B, M, 5|6) tensor or a ground-truth dict (padded batch).
            y_pred: Packed (B, N, 6) tensor or a detections dict (padded batch).
            sample_weight: Not supported (must be None).
        """
        if sample_weight is not None:
            raise ValueError("`MeanAveragePrecision` does not support `sample_weight`.")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly():
                if _in_xla_context():
                    raise RuntimeError(
                        "`MeanAveragePrecision` runs Python code and cannot run under XLA; "
                        "compile the model with `jit_compile=False`."
                    )
                flat_true, true_keys = self._flatten(y_true)
                flat_pred, pred_keys = self._flatten(y_pred)
                n_true = len(flat_true)

                def update(*tensors: Any) -> Any:
                    self._update_numpy(
                        self._rebuild(tensors[:n_true], true_keys),
                        self._rebuild(tensors[n_true:], pred_keys),
                    )
                    return np.int32(0)

                tf.py_function(update, flat_true + flat_pred, Tout=tf.int32)
                return
        elif keras.backend.backend() == "jax" and _has_tracer(y_true, y_pred):
            raise RuntimeError(
                "`MeanAveragePrecision` needs concrete values; with the JAX backend compile "
                "the model with `run_eagerly=True`, or use MeanAveragePrecisionCallback."
            )
        self._update_numpy(y_true, y_pred)

    @staticmethod
    def _flatten(value: Any) -> tuple[list[Any], list[str] | None]:
        if isinstance(value, Mapping):
            keys = sorted(value)
            return [value[k] for k in keys], keys
        return [value], None

    @staticmethod
    def _rebuild(tensors: Sequence[Any], keys: list[str] | None) -> Any:
        if keys is None:
            return tensors[0]
        return dict(zip(keys, tensors))

    def reset_state(self) -> None:
        """Forgets everything accumulated."""
        self._evaluator.reset()
        self._version += 1
        self._cached = None

    # Results --------------------------------------------------------------------------

    def evaluation_result(self) -> DetectionResult:
        """The full evaluation of everything accumulated (per-class AP, PR curves...)."""
        if self._cached is None or self._cached[0] != self._version:
            self._cached = (self._version, self._evaluator.result())
        return self._cached[1]

    def result(self) -> Any:
        """The chosen summary number (NaN inside a compiled step; see the module notes)."""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly():
                return tf.constant(float("nan"), dtype=self.dtype)
        if self._evaluator.num_images == 0:
            value = 0.0
        else:
            value = self.evaluation_result().summary[self.summary]
        return keras.ops.convert_to_tensor(value, dtype=self.dtype)

    def get_config(self) -> dict[str, Any]:
        names = self.class_names
        if isinstance(names, Mapping):
            names = {str(k): v for k, v in names.items()}
        elif names is not None:
            names = list(names)
        return {
            "name": self.name,
            "dtype": self.dtype,
            "protocol": self.protocol,
            "num_classes": self.num_classes,
            "class_names": names,
            "summary": self.summary,
            "max_detections": list(self.max_detections),
            "iou_threshold": self.iou_threshold,
            "pixel_inclusive": self.pixel_inclusive,
        }
