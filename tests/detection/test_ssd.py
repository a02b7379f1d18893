"""SSD: the detector contract on tiny synthetic data, its default boxes, loss and SSD300
layout against torchvision's."""

import re
import types

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection.detector import check_targets
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.ssd import (
    RESNET_STRIDES,
    SSD,
    SSD300_EXTRAS,
    TORCHVISION_LAYERS,
    _fold_ssd_preprocessing,
    ssd,
    ssd300_anchors,
    ssd300_vgg16,
    ssd_anchors,
)
from kerasseg.layers import L2Normalization
from tests.detection.support import (
    NUM_CLASSES,
    SIZE,
    assert_finite_losses_and_gradients,
)
from tests.detection.support import (
    synthetic_batch as _synthetic_batch,
)
from tests.support import require_module

#: A small but complete SSD: ResNet-18 and 16-channel extra levels.
TINY = {"extra_channels": (16, 16, 16)}


def synthetic_batch(**kwargs):
    """The shared synthetic batch with objects up to 40 pixels (SSD's coarse boxes)."""
    return _synthetic_batch(sides=(12.0, 40.0), **kwargs)


SSD300_SIZES = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


@pytest.fixture(scope="module")
def trained():
    """A tiny SSD after a few steps of fit, with its history."""
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get("ssd_resnet18", weights=None, num_classes=NUM_CLASSES, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = synthetic_batch()
    history = model.fit(images, targets, epochs=6, batch_size=4, verbose=0)
    return model, images, targets, history.history


@pytest.fixture(scope="module")
def fresh():
    """A tiny untrained SSD (for the loss checks, which do not change it)."""
    keras.utils.set_random_seed(1)
    return ssd("resnet18", num_classes=NUM_CLASSES, **TINY)


def test_fit_on_raw_padded_boxes_reduces_the_loss_and_logs_its_parts(trained):
    model, _, _, history = trained
    assert isinstance(model, SSD) and model.jit_compile is False
    assert set(history) == {"loss", "class_loss", "box_loss"}
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    np.testing.assert_allclose(
        np.add(history["class_loss"], history["box_loss"]), history["loss"], rtol=1e-5
    )


def test_predict_returns_the_padded_detections_dict(trained):
    model, images, _, _ = trained
    model.score_threshold = 0.01
    out = model.predict(images, verbose=0)
    assert set(out) == {"boxes", "classes", "scores", "num_detections"}
    assert out["boxes"].shape == (4, 200, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == out["scores"].shape == (4, 200)
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    for b in range(4):
        n = out["num_detections"][b]
        assert np.all(out["classes"][b, :n] >= 0) and np.all(out["classes"][b, :n] < NUM_CLASSES)
        assert np.all(out["scores"][b, :n] > 0.01) and np.all(np.diff(out["scores"][b, :n]) <= 0)
        np.testing.assert_array_equal(out["classes"][b, n:], -1)
        np.testing.assert_array_equal(out["scores"][b, n:], -1.0)
        boxes = out["boxes"][b, :n]
        assert np.all(boxes >= 0) and np.all(boxes <= SIZE)  # clipped to the image
    assert out["num_detections"].sum() > 0


def test_keras_round_trip_gives_identical_predictions(trained, tmp_path):
    model, images, _, _ = trained
    model.score_threshold = 0.01
    before = model.predict(images, verbose=0)
    path = tmp_path / "ssd.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is SSD and loaded.decoder.activation == "softmax"
    assert loaded.negative_ratio == 3.0 and loaded.matcher.threshold == 0.5
    assert loaded.box_coder.variances == pytest.approx((0.1, 0.1, 0.2, 0.2))
    after = loaded.predict(images, verbose=0)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    loaded.max_detections = 7
    assert loaded.predict(images, verbose=0)["boxes"].shape == (4, 7, 4)


def test_builds_for_one_and_many_classes_at_any_multiple_of_32():
    for classes in (1, 5):
        model = ssd("resnet18", num_classes=classes, **TINY)
        raw = model(np.zeros((1, 96, 64, 3), "float32"))
        sizes = [tuple(m.shape[1:3]) for m in raw["classes"]]
        assert sizes == [(12, 8), (6, 4), (3, 2), (2, 1), (1, 1), (1, 1)]
        assert sizes == model.anchor_generator.feature_sizes((96, 64))
        anchors = [4, 6, 6, 6, 4, 4]
        assert [m.shape[-1] for m in raw["classes"]] == [a * (classes + 1) for a in anchors]
        assert [m.shape[-1] for m in raw["boxes"]] == [a * 4 for a in anchors]
    out = model.predict(np.zeros((2, 96, 64, 3), "float32"), verbose=0)
    assert out["boxes"].shape == (2, 200, 4)


def test_registered_variants():
    assert [n for n in kerasseg.zoo.list_models("ssd*") if "." not in n] == [
        "ssd300_vgg16",
        "ssd_resnet18",
        "ssd_resnet34",
    ]
    entry = kerasseg.zoo.registry.registered("ssd300_vgg16")
    assert (entry.family, entry.task, entry.encoder) == ("ssd", "detection", "vgg16")
    assert entry.default_input_shape == (300, 300, 3) and entry.default_num_classes == 80
    entry = kerasseg.zoo.registry.registered("ssd_resnet34")
    assert entry.encoder == "resnet34" and entry.input_multiple == 32
    assert entry.default_input_shape == (None, None, 3)


def test_ssd300_outputs_six_maps_of_8732_default_boxes():
    with keras.StatelessScope():
        model = ssd300_vgg16(num_classes=20)
        raw = model.compute_output_spec(keras.KerasTensor((2, 300, 300, 3), "float32"))
    assert [tuple(m.shape[1:3]) for m in raw["boxes"]] == SSD300_SIZES
    anchors = ssd300_anchors()
    assert anchors.feature_sizes((300, 300)) == SSD300_SIZES
    assert anchors.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    assert [m.shape[-1] for m in raw["classes"]] == [21 * a for a in [4, 6, 6, 6, 4, 4]]
    assert anchors.numpy((300, 300)).shape == (8732, 4)
    assert [s for _, _, s in SSD300_EXTRAS] == [2, 2, 1, 1]


@pytest.mark.parity
@pytest.mark.parametrize(
    "generator, image_size, sizes, steps",
    [
        (ssd300_anchors, (300, 300), SSD300_SIZES, [8, 16, 32, 64, 100, 300]),
        (ssd_anchors, (320, 256), None, list(RESNET_STRIDES)),
    ],
    ids=["ssd300", "resnet"],
)
def test_default_boxes_are_torchvisions(generator, image_size, sizes, steps):
    detection = require_module("torchvision.models.detection")
    torch = require_module("torch")
    ours = generator()
    sizes = sizes or ours.feature_sizes(image_size)
    if generator is ssd300_anchors:
        scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
        reference = detection.anchor_utils.DefaultBoxGenerator(
            [[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=scales, steps=steps
        )
    else:  # the default scales 0.15 ... 0.9
        reference = detection.anchor_utils.DefaultBoxGenerator(
            [[2], [2, 3], [2, 3], [2, 3], [2], [2]], steps=steps
        )
    height, width = image_size
    image_list = detection.image_list.ImageList(torch.zeros(1, 3, height, width), [image_size])
    maps = [torch.zeros(1, 1, h, w) for h, w in sizes]
    expected = reference(image_list, maps)[0].numpy()
    np.testing.assert_allclose(ours.numpy(image_size, sizes), expected, atol=1e-4)


def _loss_case(rng, images: int = 3, counts=(0, 2, 5)):
    boxes = np.zeros((images, max(counts), 4), "float32")
    classes = np.full((images, max(counts)), -1, "int32")
    for b, n in enumerate(counts):
        xy = rng.uniform(0, 48, (n, 2))
        wh = rng.uniform(6, 40, (n, 2))
        boxes[b, :n] = np.concatenate([xy, np.minimum(xy + wh, SIZE)], axis=1)
        classes[b, :n] = rng.integers(NUM_CLASSES, size=n)
    return boxes, classes


def _random_outputs(model, images, rng):
    raw = model.compute_output_spec(keras.KerasTensor(images.shape, "float32"))
    return {
        key: [rng.normal(0, 1.5, m.shape).astype("float32") for m in maps]
        for key, maps in raw.items()
    }


@pytest.mark.parity
def test_loss_equals_torchvisions_ssd_loss(fresh):
    """Same raw outputs, default boxes and targets -> torchvision's SSD losses."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    box_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(3)
    model = fresh
    images = np.zeros((3, SIZE, SIZE, 3), "float32")
    outputs = _random_outputs(model, images, rng)
    counts = (0, 2, 5)  # an image without objects, and padding in the others
    boxes, classes = _loss_case(rng, counts=counts)
    parts = model.detection_loss(
        images, check_targets({"boxes": boxes, "classes": classes}, NUM_CLASSES), outputs
    )

    box_out, class_out, anchors = (
        torch.from_numpy(keras.ops.convert_to_numpy(t)) for t in model.flat_outputs(images, outputs)
    )
    matcher = detection._utils.SSDMatcher(0.5)
    targets, matched = [], []
    for b, n in enumerate(counts):
        gt = torch.from_numpy(boxes[b, :n])
        # torchvision's labels count the background as 0.
        targets.append({"boxes": gt, "labels": torch.from_numpy(classes[b, :n]).long() + 1})
        if n == 0:
            matched.append(torch.full((anchors.shape[0],), -1, dtype=torch.int64))
        else:
            matched.append(matcher(box_ops.box_iou(gt, anchors)))
    reference = types.SimpleNamespace(
        box_coder=detection._utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)),
        neg_to_pos_ratio=(1.0 - 0.25) / 0.25,
    )
    head_outputs = {"bbox_regression": box_out, "cls_logits": class_out}
    expected = detection.ssd.SSD.compute_loss(
        reference, targets, head_outputs, [anchors] * 3, matched
    )
    # The hard negatives stay fewer than the negatives (where torchvision's mask would
    # also take positives): 3 per positive out of every image's default boxes.
    assert 4 * sum(int((m >= 0).sum()) for m in matched) < anchors.shape[0]
    np.testing.assert_allclose(
        float(parts["class_loss"]), float(expected["classification"]), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(parts["box_loss"]), float(expected["bbox_regression"]), rtol=1e-5
    )


def test_crowd_boxes_are_neither_positives_nor_negatives(fresh):
    rng = np.random.default_rng(5)
    images = np.zeros((1, SIZE, SIZE, 3), "float32")
    outputs = _random_outputs(fresh, images, rng)
    boxes = np.array([[[4, 4, 30, 30], [34, 36, 62, 60]]], "float32")
    classes = np.array([[1, 2]], "int32")

    def loss(y):
        parts = fresh.detection_loss(images, check_targets(y, NUM_CLASSES), outputs)
        return {k: float(v) for k, v in parts.items()}

    alone = loss({"boxes": boxes[:, :1], "classes": classes[:, :1]})
    crowd = loss({"boxes": boxes, "classes": classes, "iscrowd": np.array([[0, 1]])})
    both = loss({"boxes": boxes, "classes": classes})
    assert crowd["box_loss"] == pytest.approx(alone["box_loss"], rel=1e-6)
    assert crowd["box_loss"] != pytest.approx(both["box_loss"], rel=1e-3)
    # The crowd's boxes leave the negatives: the hardest of the rest count, never more.
    assert crowd["class_loss"] <= alone["class_loss"] * (1 + 1e-6)


def test_empty_and_degenerate_targets_give_finite_losses_and_gradients(fresh):
    images, _ = synthetic_batch(images=2)
    parts = assert_finite_losses_and_gradients(fresh, images)
    # Without objects there are no positives, hence no negatives either: a zero loss.
    assert parts["class_loss"] == 0.0 and parts["box_loss"] == 0.0


def test_l2_normalization_rescales_unit_norm_features_without_nan_gradients():
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(0, 3, (2, 4, 5, 8)).astype("float32")
    x[0, 1, 2] = 0.0  # an all-zero pixel (after a ReLU)
    layer = L2Normalization(20.0)
    y = keras.ops.convert_to_numpy(layer(x))
    norms = np.linalg.norm(y, axis=-1)
    np.testing.assert_allclose(np.delete(norms.reshape(-1), 1 * 5 + 2), 20.0, rtol=1e-5)
    assert norms[0, 1, 2] == 0.0
    assert layer.count_params() == 8
    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        out = tf.reduce_sum(layer(tensor) * tf.constant(np.arange(8, dtype="float32")))
    assert np.all(np.isfinite(tape.gradient(out, tensor).numpy()))
    clone = L2Normalization.from_config(layer.get_config())
    assert (clone.initial_scale, clone.epsilon) == (20.0, 1e-12)
    with pytest.raises(ValueError, match=re.escape("`epsilon` must be a number > 0, got 0.")):
        L2Normalization(epsilon=0)


def test_imagenet_normalisation_folds_into_conv1_1():
    """conv1_1 with the folded weights on SSD's inputs == the ImageNet conv1_1 on its own
    inputs (away from the zero padding)."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.1, (3, 3, 3, 4)).astype("float32")
    bias = rng.normal(0, 0.1, 4).astype("float32")
    patch = rng.uniform(0, 255, (3, 3, 3))
    spec = kerasseg.encoders.spec("vgg16")
    imagenet = (patch / 255 - np.asarray(spec.mean)) / np.asarray(spec.std)
    ssd_input = patch - 255 * np.asarray([0.48235, 0.45882, 0.40784])
    folded_kernel, folded_bias = _fold_ssd_preprocessing(kernel, bias)
    np.testing.assert_allclose(
        np.einsum("hwi,hwio->o", ssd_input, folded_kernel) + folded_bias,
        np.einsum("hwi,hwio->o", imagenet, kernel) + bias,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parity
def test_ssd300_vgg16_has_torchvisions_layout_and_parameters():
    """Layer for layer torchvision's ssd300_vgg16 (num_classes counts its background): the
    same parameters, every one mapped by TORCHVISION_LAYERS onto a weight of its shape."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    with torch.device("meta"):
        reference = detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=81)
    parameters = dict(reference.named_parameters())
    assert not list(reference.buffers())  # no batch norm: nothing else Keras would count
    with keras.StatelessScope():
        model = kerasseg.zoo.get("ssd300_vgg16", weights=None)
        assert model.count_params() == sum(p.numel() for p in parameters.values())
        network = model.network
        mapped = 0
        for name, parameter in parameters.items():
            module, _, kind = name.rpartition(".")
            if name == "backbone.scale_weight":
                ours = network.get_layer(TORCHVISION_LAYERS[name]).scale
            else:
                layer = network.get_layer(TORCHVISION_LAYERS[module])
                ours = layer.kernel if kind == "weight" else layer.bias
            shape = tuple(parameter.shape)
            if len(shape) == 4:  # OIHW -> HWIO
                shape = tuple(shape[i] for i in (2, 3, 1, 0))
            assert tuple(ours.shape) == shape, name
            mapped += 1
        assert mapped == len(network.trainable_weights)


def test_bad_arguments_and_sizes_are_named():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`input_shape` must be (300, 300, 3): SSD300 takes 300x300 RGB images (resize "
            "them first); got (512, 512, 3)."
        ),
    ):
        ssd300_vgg16(input_shape=(512, 512, 3))
    with pytest.raises(ValueError, match=re.escape("`num_classes` must be a positive integer")):
        ssd300_vgg16(num_classes=0)
    with keras.StatelessScope():
        model = ssd300_vgg16()
        with pytest.raises(
            ValueError,
            match=re.escape(
                "Input 0 with name 'images' of layer 'ssd300_vgg16' is incompatible with the "
                "layer: expected shape=(None, 300, 300, 3), found shape=(1, 256, 256, 3)"
            ),
        ):
            model(keras.KerasTensor((1, 256, 256, 3)))
    with pytest.raises(ValueError, match=re.escape("Input height 100 is not divisible by 32")):
        ssd("resnet18", input_shape=(100, 128, 3), **TINY)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`extra_channels` must give the channels of the 3 extra levels, got (16, 16)."
        ),
    ):
        ssd("resnet18", extra_channels=(16, 16))
    with pytest.raises(ValueError, match="resnet19"):
        ssd("resnet19", **TINY)


def test_bad_detector_settings_are_named(fresh):
    config = fresh.get_config()
    network = fresh.network
    with pytest.raises(
        ValueError,
        match=re.escape(
            "SSD classifies with a softmax over the background and the classes: `decoder` "
            "must have activation='softmax', got 'sigmoid'."
        ),
    ):
        SSD(network, NUM_CLASSES, config["anchor_generator"], decoder=DetectionDecoder(3))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "SSD's class outputs need num_classes + 1 = 5 columns (the background first) per "
            "default box: 20 channels at level 0, got 16."
        ),
    ):
        SSD(network, 4, config["anchor_generator"])
    with pytest.raises(
        ValueError, match=re.escape("`negative_ratio` must be a finite number >= 0, got -1.")
    ):
        SSD(network, NUM_CLASSES, config["anchor_generator"], negative_ratio=-1)
    with pytest.raises(ValueError, match=re.escape("`threshold` must be in [0, 1]; got 1.5.")):
        SSD(network, NUM_CLASSES, config["anchor_generator"], foreground_iou=1.5)
    model = fresh
    with pytest.raises(ValueError, match="height 100 is not divisible by 32"):
        model.predict(np.zeros((1, 100, 96, 3), "float32"), verbose=0)


def test_ssd300_takes_the_vgg16_encoder_weights_as_the_zoo_passes_them(tmp_path):
    encoder = kerasseg.encoders.get("vgg16")
    path = tmp_path / "vgg16.weights.h5"
    encoder.save_weights(path)
    model = kerasseg.zoo.get("ssd300_vgg16", weights=None, encoder_weights=str(path))
    network = model.network
    for layer in encoder.layers:
        if not layer.name.startswith("block") or not layer.weights:
            continue
        expected = layer.get_weights()
        if layer.name == "block1_conv1":
            expected = _fold_ssd_preprocessing(*expected)
        for a, b in zip(network.get_layer(layer.name).get_weights(), expected):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
