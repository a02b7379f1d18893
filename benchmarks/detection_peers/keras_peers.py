"""Child run of the Keras peers: kerasseg's detectors, keras-cv's YOLOv8, keras-hub's RetinaNet.

Run by `benchmarks/detection.py` in the project's environment, one process per (peer,
model, size)::

    python benchmarks/detection_peers/keras_peers.py --spec RUN.json

All three peers get the same input pipeline: `kerasseg.data.load_voc` → ``to_dataset``
letterboxed to the input size (padding 0) → `kerasseg.data.detection_augmentation`
(random scale 0.75-1.25 + crop, horizontal and vertical flips, colour jitter, a 4-image
mosaic for half of the images)
→ batches of 8, adapted to each library's input format; the same AdamW
optimiser (gradient norm clipped at 10) with a warm-up + cosine schedule over the budget
(`common.warmup_cosine`), set before every step by `BudgetCallback`, which also stops
training when the budget is spent. Each model is built from scratch (random
initialisation, no download). The child writes its detections on the test images in
original-image pixels; the parent scores them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import keras
import numpy as np
import tensorflow as tf

from benchmarks.detection_peers import common
from kerasseg.data import detection_transforms as T
from kerasseg.data import load_voc
from kerasseg.data.detection_augment import detection_augmentation

#: Rows of every padded target before the mosaic (BCCD's train split has at most 28).
MAX_BOXES = 32
#: Decoder settings of every peer's predictions on the test images.
SCORE_THRESHOLD = 0.001
MAX_DETECTIONS = 100
#: Gradient norm clipping of every Keras peer (kerasseg's training default).
CLIPNORM = 10.0


# ------------------------------------------------------------------------------ data


def augmentation_options(spec: common.RunSpec) -> dict[str, Any]:
    """The `detection_augmentation` arguments of a run (spec options override them)."""
    options = {
        # The BCCD recipes' augmentation (zoo/recipes/*.bccd.yml). The mosaic for half of
        # the images lifted yolov8_n at 320 px after 250 steps from COCO AP 0.417 to 0.469
        # (VOC07 0.587 -> 0.758: the small platelets 0.01 -> 0.55); every image: AP 0.451.
        "scale_range": (0.75, 1.25),
        "flip_horizontal": True,
        "flip_vertical": True,  # blood cells have no "up"
        "colour": True,
        "mosaic_probability": 0.5,
    }
    options.update(spec.options.get("augmentation", {}))
    options["scale_range"] = tuple(options["scale_range"])
    return options


def training_dataset(annotations: Any, spec: common.RunSpec) -> tf.data.Dataset:
    """Infinite batches ``(images, target)`` in kerasseg's padded format, augmented.

    Letterboxed to the input size first, then augmented at that size (the scale range is
    relative to the letterboxed image); ``4 * MAX_BOXES`` rows after the mosaic.
    """
    size = (spec.size, spec.size)
    base = annotations.to_dataset(
        image_size=size, letterbox=True, max_boxes=MAX_BOXES, shuffle=True, seed=spec.seed
    ).repeat()
    augment = detection_augmentation(
        size, max_boxes=4 * MAX_BOXES, seed=spec.seed, **augmentation_options(spec)
    )
    augmented = augment.apply(base)
    if augment.mosaic_probability == 0:  # without the mosaic the rows stay MAX_BOXES
        augmented = augmented.map(
            lambda image, target: (image, T.pad_target(target, 4 * MAX_BOXES))
        )
    return augmented.batch(spec.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def to_peer_format(dataset: tf.data.Dataset, peer: str) -> tf.data.Dataset:
    """Adapts kerasseg's ``(images, target)`` batches to the peer's ``fit`` input."""
    if peer == "kerasseg":
        return dataset
    if peer == "keras-cv":

        def keras_cv(images: tf.Tensor, target: dict) -> dict:
            boxes = {"boxes": target["boxes"], "classes": tf.cast(target["classes"], tf.float32)}
            return T.to_keras_dict(images, boxes, labels_key="classes")

        return dataset.map(keras_cv)
    if peer == "keras-hub":
        # Keras' own bounding-box convention: (images, {"boxes", "labels"}), -1 = padding.
        return dataset.map(
            lambda images, target: (
                images,
                {"boxes": target["boxes"], "labels": target["classes"]},
            )
        )
    raise ValueError(f"Unknown Keras peer {peer!r}.")


def test_images(annotations: Any, size: int) -> tf.data.Dataset:
    """Batches of 8 letterboxed test images, in record order (targets dropped)."""
    dataset = annotations.to_dataset(image_size=(size, size), letterbox=True, batch_size=8)
    return dataset.map(lambda images, target: images)


# ---------------------------------------------------------------------------- models


def optimizer(spec: common.RunSpec) -> keras.optimizers.Optimizer:
    """AdamW with a learning rate that `BudgetCallback` sets before every step."""
    return keras.optimizers.AdamW(
        learning_rate=spec.learning_rate * 0.1,
        weight_decay=spec.weight_decay,
        clipnorm=CLIPNORM,
    )


def build_kerasseg(spec: common.RunSpec, num_classes: int) -> tuple[keras.Model, dict]:
    """A kerasseg zoo detector from scratch, compiled with its own loss."""
    import kerasseg.zoo

    model = kerasseg.zoo.get(
        spec.model, weights=None, num_classes=num_classes, input_shape=(spec.size, spec.size, 3)
    )
    model.score_threshold = SCORE_THRESHOLD
    model.max_detections = MAX_DETECTIONS
    model.compile(optimizer=optimizer(spec))
    decoder = {
        "score_threshold": SCORE_THRESHOLD,
        "iou_threshold": float(model.iou_threshold),
        "max_detections": MAX_DETECTIONS,
    }
    return model, decoder


def build_keras_cv(spec: common.RunSpec, num_classes: int) -> tuple[keras.Model, dict]:
    """keras-cv 0.9's YOLOV8Detector on the ``yolo_v8_xs_backbone`` architecture.

    ``YOLOV8Backbone.from_preset("yolo_v8_xs_backbone", load_weights=False)`` still
    downloads the preset's config from Kaggle, so the backbone is built from that preset's
    arguments (1,277,680 parameters, as the preset's metadata says).
    """
    import keras_cv

    if spec.model != "yolov8_xs":
        raise ValueError(f"keras-cv peer: only 'yolov8_xs' is set up, got {spec.model!r}.")
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=[32, 64, 128, 256],
        stackwise_depth=[1, 2, 2, 1],
        activation="swish",
        include_rescaling=True,
        input_shape=(spec.size, spec.size, 3),
    )
    decoder = {
        "score_threshold": SCORE_THRESHOLD,
        "iou_threshold": 0.7,
        "max_detections": MAX_DETECTIONS,
    }
    model = keras_cv.models.YOLOV8Detector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format="xyxy",
        fpn_depth=1,
        prediction_decoder=keras_cv.layers.NonMaxSuppression(
            bounding_box_format="xyxy",
            from_logits=False,
            confidence_threshold=decoder["score_threshold"],
            iou_threshold=decoder["iou_threshold"],
            max_detections=decoder["max_detections"],
        ),
    )
    model.compile(
        optimizer=optimizer(spec),
        classification_loss="binary_crossentropy",
        box_loss="ciou",
        jit_compile=False,
    )
    return model, decoder


def build_keras_hub(spec: common.RunSpec, num_classes: int) -> tuple[keras.Model, dict]:
    """keras-hub's RetinaNetObjectDetector on a ResNet-18 (basic blocks), P3-P7 FPN.

    Built from its classes (no preset: presets download weights); inputs are scaled to
    0..1 by its image converter; its default losses (focal + Huber) and anchors.
    """
    import keras_hub

    if spec.model != "retinanet_resnet18":
        raise ValueError(
            f"keras-hub peer: only 'retinanet_resnet18' is set up, got {spec.model!r}."
        )
    shape = (spec.size, spec.size, 3)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=shape,
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=False, image_shape=shape
    )
    preprocessor = keras_hub.models.RetinaNetObjectDetectorPreprocessor(
        image_converter=keras_hub.layers.RetinaNetImageConverter(scale=1.0 / 255.0)
    )
    decoder = {
        "score_threshold": SCORE_THRESHOLD,
        "iou_threshold": 0.5,
        "max_detections": MAX_DETECTIONS,
    }
    model = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format="xyxy",
        preprocessor=preprocessor,
        prediction_decoder=keras_hub.layers.NonMaxSuppression(
            bounding_box_format="xyxy",
            from_logits=True,
            confidence_threshold=decoder["score_threshold"],
            iou_threshold=decoder["iou_threshold"],
            max_detections=decoder["max_detections"],
        ),
    )
    model.compile(optimizer=optimizer(spec))
    return model, decoder


BUILDERS = {"kerasseg": build_kerasseg, "keras-cv": build_keras_cv, "keras-hub": build_keras_hub}


def inference_function(model: keras.Model, peer: str) -> Any:
    """``images (B, S, S, 3) 0..255 -> detections dict``: the peer's forward pass + decoding.

    ``predict_step`` is what ``model.predict`` runs per batch; keras-hub's task applies its
    preprocessor (the 0..1 scaling) in the input pipeline instead, so it is added here.
    """
    if peer == "keras-hub":
        preprocessor = model.preprocessor

        def run(images: tf.Tensor) -> Any:
            return model.predict_step(preprocessor(images))

    else:

        def run(images: tf.Tensor) -> Any:
            return model.predict_step(images)

    # One trace per batch size, with static shapes (keras-hub's NMS needs a static batch).
    return tf.function(run)


# -------------------------------------------------------------------------- training


class BudgetCallback(keras.callbacks.Callback):
    """Sets the learning rate before each step, counts steps, stops at the budget."""

    def __init__(self, clock: common.BudgetClock, spec: common.RunSpec, log_every_s: float = 30.0):
        super().__init__()
        self.clock = clock
        self.spec = spec
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self.last_loss: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.clock.start()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        rate = common.warmup_cosine(self.clock.progress(), self.spec.learning_rate)
        self.model.optimizer.learning_rate = rate

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.clock.step(self.spec.batch_size)
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        now = time.perf_counter()
        if self.clock.steps == 1 or now - self._last_log >= self.log_every_s:
            self._last_log = now
            common.log(
                f"step {self.clock.steps}: {self.clock.elapsed():.0f}s of "
                f"{common.budget_text(self.spec)}, loss {self.last_loss}, "
                f"lr {float(self.model.optimizer.learning_rate):.2e}"
            )
        if self.clock.done():
            self.model.stop_training = True


def train(model: keras.Model, dataset: tf.data.Dataset, spec: common.RunSpec) -> dict[str, Any]:
    """Fits until the budget is spent; returns the clock's summary and the last loss."""
    clock = common.BudgetClock(spec.budget_s, spec.max_steps)
    callback = BudgetCallback(clock, spec)
    model.fit(dataset, epochs=1, steps_per_epoch=10**9, verbose=0, callbacks=[callback])
    clock.close()
    summary = clock.summary()
    summary["final_loss"] = callback.last_loss
    return summary


# ------------------------------------------------------------------------ prediction


def _as_numpy(outputs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, classes, count) from any peer's detections dict."""
    boxes = np.asarray(outputs["boxes"], np.float32)
    scores = np.asarray(outputs["scores"] if "scores" in outputs else outputs["confidence"])
    classes = np.asarray(outputs["classes"] if "classes" in outputs else outputs["labels"])
    if "num_detections" in outputs:
        count = np.asarray(outputs["num_detections"]).astype(int)
    else:
        count = np.full(len(boxes), boxes.shape[1])
    return boxes, scores.astype(np.float32), classes.astype(np.int64), count


def to_original_pixels(boxes: np.ndarray, record: Any, size: int) -> np.ndarray:
    """Letterboxed xyxy boxes -> the record's original pixels, clipped to the image."""
    restored = T.unletterbox_boxes(boxes, (record.height, record.width), (size, size)).numpy()
    limits = np.array([record.width, record.height] * 2, np.float32)
    return np.clip(restored, 0.0, limits)


def predict_test(run: Any, test: Any, size: int) -> list[dict[str, Any]]:
    """Detections of every test image in original pixels (JSON-ready lists)."""
    detections = []
    records = iter(test.records)
    for images in test_images(test, size):
        boxes, scores, classes, count = _as_numpy(run(images))
        for i in range(len(boxes)):
            record = next(records)
            keep = np.arange(boxes.shape[1]) < count[i]
            keep &= (classes[i] >= 0) & (scores[i] > 0)
            detections.append(
                {
                    "image_id": str(record.image_id),
                    "boxes": to_original_pixels(boxes[i][keep], record, size).tolist(),
                    "scores": scores[i][keep].tolist(),
                    "classes": classes[i][keep].tolist(),
                }
            )
    return detections


def time_predictions(run: Any, test: Any, spec: common.RunSpec) -> dict[str, float]:
    """Inference images/s at batch 1 and 8 on letterboxed test images (decoding included)."""
    images = next(iter(test_images(test, spec.size)))
    batch = tf.concat([images] * (8 // int(images.shape[0]) + 1), axis=0)[:8]
    inputs = {1: batch[:1], 8: batch}

    def run_batch(batch_size: int) -> None:
        outputs = run(inputs[batch_size])
        np.asarray(outputs["boxes"])  # results on the host

    return common.time_inference(run_batch, (1, 8), spec.timing_seconds)


# ------------------------------------------------------------------------------ main


def versions() -> dict[str, str]:
    """The versions of the libraries this child used."""
    found = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for name in ("keras_cv", "keras_hub", "kerasseg"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    return found


def run(spec: common.RunSpec) -> dict[str, Any]:
    """Builds, trains, predicts and times one Keras peer; returns its result dict."""
    keras.utils.set_random_seed(spec.seed)
    train_set = load_voc(spec.voc_root, spec.train_split)
    test_set = load_voc(spec.voc_root, spec.test_split, class_names=train_set.class_names)
    if spec.test_limit:
        test_set.records = test_set.records[: spec.test_limit]
    started = time.perf_counter()
    model, decoder = BUILDERS[spec.peer](spec, train_set.num_classes)
    build_s = time.perf_counter() - started
    common.log(
        f"{spec.peer}:{spec.model} built ({model.count_params():,} parameters, {build_s:.1f}s)"
    )
    dataset = to_peer_format(training_dataset(train_set, spec), spec.peer)
    training = train(model, dataset, spec)
    common.log(
        f"trained {training['steps']} steps ({training['images']} images), "
        f"{training['train_img_s'] or 0:.2f} img/s"
    )
    inference = inference_function(model, spec.peer)
    started = time.perf_counter()
    detections = predict_test(inference, test_set, spec.size)
    predict_s = time.perf_counter() - started
    rates = time_predictions(inference, test_set, spec)
    common.log(f"inference img/s: {rates}")
    return {
        "peer": spec.peer,
        "model": spec.model,
        "size": spec.size,
        "params": int(model.count_params()),
        "build_s": build_s,
        "training": training,
        "inference_img_s": rates,
        "predict_test_s": predict_s,
        "decoder": decoder,
        "augmentation": {
            k: list(v) if isinstance(v, tuple) else v for k, v in augmentation_options(spec).items()
        },
        "optimizer": f"AdamW(peak {spec.learning_rate:g}, weight_decay {spec.weight_decay:g}, clipnorm {CLIPNORM:g}), warm-up + cosine over the budget",
        "class_names": train_set.class_names,
        "detections": detections,
        "versions": versions(),
        "threads": common.thread_settings(),
        **common.peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    """``--spec RUN.json``: runs it and writes the result JSON named in the spec."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the run's spec JSON (see common.RunSpec)")
    spec = common.RunSpec.load(parser.parse_args(argv).spec)
    common.write_result(spec.output, run(spec))


if __name__ == "__main__":
    main()
