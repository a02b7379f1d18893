"""The contract every registered model keeps, checked as `kerasseg.zoo.get` builds it by
default (random init, its default classes, the dynamic input shape).

Every registered model (`test_model_contract`, `test_detector_contract`, built without
initialising its weights):

* is built for the dynamic input shape and maps two different static sizes, multiples of
  its registered ``input_multiple``, to maps of the same size with the default classes
  (a detector: to one raw output map per level and anchor, of the anchors' sizes; a
  detector of fixed input size, `FIXED_SIZE`, is built for that size and run on it twice);
* has the parameter count generated into ``zoo/params.yml``.

One model per builder (`test_inference_training_and_keras_round_trip`; the smallest of each
group of names that one builder function registers, e.g. ``fcn8s_*`` or ``unet_<encoder>``):

* one traced graph whose batch, height and width are unknown runs at two sizes (the shape
  bugs hide there: eager calls see static shapes) and agrees with eager calls, giving
  float32 probabilities;
* one training step runs and changes the weights, with a finite loss;
* ``model.save("x.keras")`` reloads with ``load_model(safe_mode=True)`` and no
  ``custom_objects``, to bit-identical predictions at both sizes;
* a detector's ``predict`` gives the padded detections dict, and one ``fit`` step on raw
  padded boxes trains every weight.

Why not all of it for every model: on 2 CPU cores the traced graphs, the step and the
``.keras`` files of all 58 models (1.8 billion parameters) take 8 to 17 minutes, almost all
of it in code every builder of a group shares; the encoders' own round trips are tested
per encoder in tests/encoders/. Architecture-specific behaviour (parity with
smp/torchvision, size errors, arguments) is tested per architecture in tests/segmentation/.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection import AnchorDetector, YOLOv2, YOLOv8
from kerasseg.zoo import metafiles, registry, verify

MODELS = registry.list_registered()
TASKS = {name: registry.registered(name).task for name in MODELS}
SEGMENTATION = [name for name in MODELS if TASKS[name] == "segmentation"]
DETECTION = [name for name in MODELS if TASKS[name] == "detection"]
#: Detectors with a fixed input size (their registered `input_shape`), not a dynamic one.
FIXED_SIZE = {"ssd300_vgg16"}


def builder_group(name: str) -> str:
    """``module:stem`` of the builder function behind a registered name: the name without
    its ``_<encoder>`` suffix (``fcn8s_resnet18`` -> ``kerasseg.segmentation.fcn:fcn8s``), or
    the family for a name without one (``unet11`` -> ``...ternausnet:ternausnet``)."""
    entry = registry.registered(name)
    stem = entry.family
    if entry.encoder:
        for suffix in (f"_{entry.encoder}", f"_{entry.encoder.removesuffix('_bn')}"):
            if name.endswith(suffix):
                stem = name.removesuffix(suffix)
                break
    return f"{entry.builder.__module__}:{stem}"


def _representatives(names: list[str]) -> list[str]:
    """The model with the fewest parameters of each builder group."""
    params = metafiles.load_index().params
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(builder_group(name), []).append(name)
    return sorted(min(names, key=lambda n: (params.get(n, 0), n)) for names in groups.values())


REPRESENTATIVES = _representatives(SEGMENTATION)
DETECTOR_REPRESENTATIVES = _representatives(DETECTION)


def _traced_predict(model: keras.Model):
    """Inference through one traced graph whose batch, height and width are unknown."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, None, None, model.input_shape[-1]], "float32")
        graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        return lambda x: np.asarray(graph(x))
    return lambda x: model.predict(x, verbose=0)  # JAX/torch trace per input shape


def _inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Two small images of different sizes the model accepts."""
    entry = registry.registered(name)
    step, channels = entry.input_multiple or 1, entry.default_input_shape[-1]
    rng = np.random.default_rng(1)
    if name in FIXED_SIZE:  # the one size it takes, twice
        shape = (1, *entry.default_input_shape)
        return tuple(rng.uniform(0, 255, shape).astype("float32") for _ in range(2))
    return (
        rng.uniform(0, 255, (1, step, 2 * step, channels)).astype("float32"),
        rng.uniform(0, 255, (1, 2 * step, step, channels)).astype("float32"),
    )


def _build(name: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    return kerasseg.zoo.get(name, weights=None)


def test_every_model_and_builder_is_covered():
    # The contract runs on the registry as collected: a family that registers no builder
    # (an import that silently failed) would make it vacuous.
    families = {registry.registered(name).family for name in MODELS}
    expected = {"unet", "ternausnet", "fpn", "unet_fpn", "fcn", "segnet"}
    expected |= {"retinanet", "ssd", "yolov2", "yolov8"}
    assert expected <= families
    assert len(SEGMENTATION) >= 58 and len(DETECTION) >= 3
    groups = {builder_group(name) for name in REPRESENTATIVES}
    assert len(groups) == len(REPRESENTATIVES) >= 9
    assert "kerasseg.segmentation.fcn:fcn8s" in groups and "kerasseg.segmentation.fpn:fpn" in groups
    assert {builder_group(name) for name in DETECTOR_REPRESENTATIVES} == {
        "kerasseg.detection.retinanet:retinanet",
        "kerasseg.detection.ssd:ssd",
        "kerasseg.detection.ssd:ssd300",
        "kerasseg.detection.yolo:yolov2",
        "kerasseg.detection.yolov8:yolov8",
    }


def _check_params(name: str, model: keras.Model) -> None:
    recorded = metafiles.load_index().params.get(name)
    assert model.count_params() == recorded, (
        f"zoo/params.yml says {recorded} parameters, the model has {model.count_params()}: "
        f"run `{verify.PARAMS_COMMAND}`"
    )


@pytest.mark.parametrize("name", SEGMENTATION)
def test_model_contract(name):
    entry = registry.registered(name)
    with keras.StatelessScope():  # build the graph only: no weights to initialise
        model = kerasseg.zoo.get(name, weights=None)
        classes, channels = entry.default_num_classes, entry.default_input_shape[-1]
        assert model.input_shape == (None, *entry.default_input_shape)
        assert model.input_shape == (None, None, None, channels)
        for x in _inputs(name):
            y = model.compute_output_spec(keras.KerasTensor(x.shape, "float32"))
            assert y.shape == (*x.shape[:3], classes) and y.dtype == "float32"
    _check_params(name, model)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_inference_training_and_keras_round_trip(name, tmp_path):
    entry = registry.registered(name)
    model = _build(name)
    first, second = _inputs(name)
    classes = entry.default_num_classes
    predict = _traced_predict(model)
    for x in (first, second):
        y = predict(x)
        assert y.shape == (*x.shape[:3], classes) and y.dtype == np.float32
        assert np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
        if classes > 1:
            np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(y, np.asarray(model(x, training=False)), atol=1e-5)
    rng = np.random.default_rng(3)
    if classes == 1:
        loss, target = "binary_crossentropy", rng.integers(0, 2, (*first.shape[:3], 1))
    else:
        loss, target = "sparse_categorical_crossentropy", rng.integers(0, classes, first.shape[:3])
    # One step, eagerly: tracing the train step of a deep encoder costs far more than it.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=True)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(first, target.astype("float32"), epochs=1, batch_size=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.array_equal(b, keras.ops.convert_to_numpy(w))
        for b, w in zip(before, model.trainable_weights)
    ]
    # Not all: FCN's zero-initialised score layers give the layers below no gradient yet.
    assert sum(changed) >= 2, f"{sum(changed)} of {len(changed)} weights trained"
    expected = [np.asarray(model(x, training=False)) for x in (first, second)]

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and loaded.name == model.name
    for x, y in zip((first, second), expected):
        np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), y)
    np.testing.assert_array_equal(_traced_predict(loaded)(second), _traced_predict(model)(second))


# ------------------------------------------------------------------------------ detectors


def _level_shapes(model: keras.Model, x: np.ndarray) -> dict[str, list[tuple]]:
    """The raw output shapes a detector must give for input `x`."""
    if isinstance(model, YOLOv8):
        sizes = [(x.shape[1] // s, x.shape[2] // s) for s in model.strides]
        return {
            "boxes": [(x.shape[0], h, w, 4 * model.reg_max) for h, w in sizes],
            "classes": [(x.shape[0], h, w, model.num_classes) for h, w in sizes],
        }
    if isinstance(model, YOLOv2):
        h, w, a = x.shape[1] // model.stride, x.shape[2] // model.stride, len(model.anchors)
        return {
            "boxes": [(x.shape[0], h, w, 4 * a)],
            "objectness": [(x.shape[0], h, w, a)],
            "classes": [(x.shape[0], h, w, a * model.num_classes)],
        }
    assert isinstance(model, AnchorDetector), f"add {type(model).__name__}'s outputs here"
    generator = model.anchor_generator
    sizes = generator.feature_sizes(x.shape[1:3])
    anchors = generator.num_anchors_per_location()
    # A softmax decoder reads a background column before the classes (SSD).
    columns = model.num_classes + (model.decoder.activation == "softmax")
    return {
        "boxes": [(x.shape[0], h, w, a * 4) for (h, w), a in zip(sizes, anchors)],
        "classes": [(x.shape[0], h, w, a * columns) for (h, w), a in zip(sizes, anchors)],
    }


def _detector_targets(model: keras.Model, image: np.ndarray) -> dict[str, np.ndarray]:
    """One box per level, the level's first anchor (so that heads not shared between levels
    all get a positive), and a padding row."""
    if isinstance(model, YOLOv8):
        # A box of 2 x 2 cells in the corner of every level; the assigner takes its best
        # top_k points of any level, which at initialisation are the finest: give every
        # point inside a box to it instead.
        model.top_k = sum((image.shape[1] // s) * (image.shape[2] // s) for s in model.strides)
        boxes = np.array([[0, 0, 2 * s, 2 * s] for s in model.strides], "float32")
    else:
        levels = model.anchor_generator.per_level(image.shape[1:3])
        boxes = np.stack([keras.ops.convert_to_numpy(anchors[0]) for anchors in levels])
    boxes = np.concatenate([boxes, np.zeros((1, 4), "float32")])[None]
    classes = np.full((1, len(boxes[0])), model.num_classes - 1, "int32")
    classes[0, -1] = -1
    return {"boxes": boxes, "classes": classes}


@pytest.mark.parametrize("name", DETECTION)
def test_detector_contract(name):
    entry = registry.registered(name)
    with keras.StatelessScope():
        model = kerasseg.zoo.get(name, weights=None)
        assert isinstance(model, kerasseg.detection.Detector)
        assert model.num_classes == entry.default_num_classes
        assert model.input_shape == (None, *entry.default_input_shape)
        assert model.input_shape == (None, None, None, 3) or name in FIXED_SIZE
        for x in _inputs(name):
            raw = model.compute_output_spec(keras.KerasTensor(x.shape, "float32"))
            shapes = {key: [tuple(t.shape) for t in maps] for key, maps in raw.items()}
            assert shapes == _level_shapes(model, x)
    _check_params(name, model)


def _flat(raw: dict) -> list[np.ndarray]:
    return [np.asarray(t) for key in sorted(raw) for t in raw[key]]


@pytest.mark.parametrize("name", DETECTOR_REPRESENTATIVES)
def test_detector_inference_training_and_keras_round_trip(name, tmp_path):
    model = _build(name)
    inputs = _inputs(name)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, None, None, 3], "float32")
        graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        for x in inputs:
            for traced, eager in zip(_flat(graph(x)), _flat(model(x, training=False))):
                np.testing.assert_allclose(traced, eager, atol=1e-5)
    model.score_threshold = 0.0  # keep every candidate: the padded dict fills up
    for x in inputs:
        out = model.predict(x, verbose=0)
        m = model.max_detections
        assert {k: v.shape for k, v in out.items()} == {
            "boxes": (1, m, 4),
            "classes": (1, m),
            "scores": (1, m),
            "num_detections": (1,),
        }
        n = int(out["num_detections"][0])
        assert 0 < n <= m and np.all(out["classes"][0, :n] >= 0)
        assert np.all(out["classes"][0, n:] == -1) and np.all(out["scores"][0, n:] == -1)

    first = inputs[0]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(first, _detector_targets(model, first), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    frozen = [
        w.path
        for b, w in zip(before, model.trainable_weights)
        if np.array_equal(b, keras.ops.convert_to_numpy(w))
    ]
    assert not frozen, f"{len(frozen)} of {len(before)} weights did not train: {frozen}"

    expected = [model.predict(x, verbose=0) for x in inputs]
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert loaded.score_threshold == 0.0
    for x, y in zip(inputs, expected):
        got = loaded.predict(x, verbose=0)
        for key in y:
            np.testing.assert_array_equal(got[key], y[key], err_msg=key)
        for a, b in zip(_flat(loaded(x, training=False)), _flat(model(x, training=False))):
            np.testing.assert_array_equal(a, b)
