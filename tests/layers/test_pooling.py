import itertools
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasseg
from kerasseg.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from kerasseg.layers.pooling import max_pool_with_argmax, max_unpool
from tests.support import REPO_ROOT, require_module

IMPLEMENTATIONS = ("tensorflow", "ops")
# (pool_size, strides, padding): SegNet's 2x2/2, overlapping windows, uneven "same" padding.
CONFIGS = [
    (2, 2, "valid"),
    (2, 2, "same"),
    (3, 2, "valid"),
    (3, 2, "same"),
    ((3, 2), (1, 2), "same"),
]


def _distinct(shape: tuple, seed: int = 0) -> np.ndarray:
    """Random values without ties, so every window has a unique argmax."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0 - 50.0).astype("float32")


# Odd height and width, batch 3.
X = _distinct((3, 15, 17, 4))


def _decode(x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """x[b].ravel()[indices[b]] for every image b."""
    flat = x.reshape(x.shape[0], -1)
    return np.stack([flat[b][indices[b].ravel()].reshape(indices.shape[1:]) for b in range(len(x))])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("pool", "strides", "padding"), CONFIGS)
def test_pooled_values_equal_max_pooling_and_indices_point_at_them(
    implementation, pool, strides, padding
):
    pooled, indices = max_pool_with_argmax(X, pool, strides, padding, implementation=implementation)
    expected = keras.layers.MaxPooling2D(pool, strides, padding)(X)
    np.testing.assert_array_equal(pooled, expected)
    assert indices.dtype == "int32"
    indices = np.asarray(indices)
    # Per-image positions: in range for one image, and they address that image's maxima.
    assert indices.min() >= 0 and indices.max() < 15 * 17 * 4
    np.testing.assert_array_equal(_decode(X, indices), pooled)
    # Channel c's maximum comes from channel c.
    np.testing.assert_array_equal(indices % 4, np.broadcast_to(np.arange(4), indices.shape))


@pytest.mark.parametrize(("pool", "strides", "padding"), CONFIGS)
def test_ops_path_agrees_with_tensorflow_kernel_on_dynamic_shapes(pool, strides, padding):
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4))])
    def ops_path(x):
        return max_pool_with_argmax(x, pool, strides, padding, implementation="ops")

    for x in (X, X[:2, :12, :9]):
        expected = max_pool_with_argmax(x, pool, strides, padding, implementation="tensorflow")
        got = ops_path(x)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_ops_path_compiles_with_xla():
    compiled = tf.function(
        lambda x: max_pool_with_argmax(x, 2, 2, "same", implementation="ops"), jit_compile=True
    )
    got = compiled(X)
    expected = max_pool_with_argmax(X, 2, 2, "same", implementation="tensorflow")
    np.testing.assert_array_equal(got[1], expected[1])
    assert MaxPoolingWithArgmax2D(implementation="ops").supports_jit
    assert not MaxPoolingWithArgmax2D(implementation="tensorflow").supports_jit
    # Keras then declines XLA for a model using the TensorFlow kernel, instead of failing.
    model = _segnet_pool_unpool(implementation="tensorflow")
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is False


_TORCH_BACKEND_SCRIPT = textwrap.dedent(
    """
    import keras
    import numpy as np
    from kerasseg.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    assert keras.backend.backend() == "torch"
    x = np.load("x.npy")
    inputs = keras.Input((None, None, 4))
    pooled, indices = MaxPoolingWithArgmax2D(pool_size=3, strides=2, padding="same")(inputs)
    restored = MaxUnpooling2D()([pooled, indices, inputs])
    outputs = keras.Model(inputs, [pooled, indices, restored])(x)
    np.savez("out.npz", *(keras.ops.convert_to_numpy(t) for t in outputs))
    """
)


@pytest.mark.parity
def test_ops_path_gives_the_same_results_on_the_torch_backend(tmp_path):
    require_module("torch")
    np.save(tmp_path / "x.npy", X)
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-c", _TORCH_BACKEND_SCRIPT],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=120,
    )
    with np.load(tmp_path / "out.npz") as got:
        pooled, indices, restored = (got[f"arr_{i}"] for i in range(3))
    expected_pooled, expected_indices = max_pool_with_argmax(X, 3, 2, "same")
    np.testing.assert_array_equal(pooled, expected_pooled)
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(restored, max_unpool(expected_pooled, expected_indices, (15, 17)))


_GRAPPLER_SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    from kerasseg.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    pooled, indices = MaxPoolingWithArgmax2D(2, implementation="tensorflow")(x)
    outputs = MaxUnpooling2D()([pooled, indices, x])
    keras.Model(inputs, outputs).predict(np.ones((1, 8, 8, 3), "float32"), verbose=0)
    print("predicted")
    """
)


def test_tensorflow_graph_optimisation_keeps_the_index_cast():
    """Grappler once moved the int64->int32 cast of the argmax onto the float input of the
    pooling (Conv-BN-ReLU before it triggered it), logging "Ignoring multi-device function
    optimization failure" and running the graph unoptimised; TensorFlow's C++ log (level 0)
    must show no such failure."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _GRAPPLER_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "predicted" in result.stdout, result.stderr[-3000:]
    assert "optimization failure" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ties_go_to_the_first_maximum_in_row_major_order(implementation):
    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, 1, 0, 0] = x[0, 1, 1, 0] = 5.0  # tie in the top-left window: (1,0) comes first
    # The top-right window is all zeros: its first element (0, 2) wins.
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pooled, indices = max_pool_with_argmax(x, 2, 2, implementation=implementation)
    np.testing.assert_array_equal(np.asarray(indices)[0, :, :, 0], [[4, 2], [8, 10]])
    expected_grad = np.zeros((4, 4), "float32")
    expected_grad[1, 0] = expected_grad[0, 2] = expected_grad[2, 0] = expected_grad[2, 2] = 1
    np.testing.assert_array_equal(tape.gradient(pooled, x)[0, :, :, 0], expected_grad)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("pool", "strides", "padding"), [CONFIGS[0], CONFIGS[3]])
def test_gradient_matches_max_pooling_and_is_the_unpooling_of_the_upstream(
    implementation, pool, strides, padding
):
    x = tf.constant(X)
    upstream = tf.constant(_distinct(max_pool_with_argmax(X, pool, strides, padding)[0].shape, 1))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        pooled, indices = max_pool_with_argmax(
            x, pool, strides, padding, implementation=implementation
        )
        ours = tf.reduce_sum(pooled * upstream)
        reference = tf.reduce_sum(keras.layers.MaxPooling2D(pool, strides, padding)(x) * upstream)
    grad = tape.gradient(ours, x)
    np.testing.assert_allclose(grad, tape.gradient(reference, x), rtol=1e-5, atol=1e-5)
    # The gradient is the transpose of the selection: upstream placed back (summed where
    # overlapping windows chose the same position).
    np.testing.assert_allclose(grad, max_unpool(upstream, indices, (15, 17)), rtol=1e-5, atol=1e-5)
    # With an all-ones upstream and non-overlapping windows: the mask of argmax positions.
    if pool == strides:
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, _ = max_pool_with_argmax(
                x, pool, strides, padding, implementation=implementation
            )
        mask = np.zeros(X.size // 3, "float32")
        expected = np.stack([mask.copy() for _ in range(3)])
        for b in range(3):
            expected[b][np.asarray(indices)[b].ravel()] = 1.0
        np.testing.assert_array_equal(tape.gradient(pooled, x), expected.reshape(X.shape))


def _segnet_pool_unpool(channels: int = 4, implementation: str = "auto") -> keras.Model:
    inputs = keras.Input((None, None, channels))
    pooled, indices = MaxPoolingWithArgmax2D(implementation=implementation, name="pool")(inputs)
    outputs = MaxUnpooling2D(name="unpool")([pooled, indices, inputs])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unpool_of_pool_keeps_maxima_in_place_and_zeros_elsewhere_for_any_size(implementation):
    model = _segnet_pool_unpool(implementation=implementation)
    for x in (X, _distinct((2, 16, 10, 4), 3), _distinct((1, 9, 11, 4), 4)):
        restored = np.asarray(model(x))
        assert restored.shape == x.shape
        pooled, indices = max_pool_with_argmax(x, 2, 2)
        expected = np.zeros_like(x).reshape(len(x), -1)
        for b in range(len(x)):
            expected[b][np.asarray(indices)[b].ravel()] = np.asarray(pooled)[b].ravel()
        np.testing.assert_array_equal(restored, expected.reshape(x.shape))
        # Exactly one surviving value per (window, channel); odd last row/column dropped.
        assert np.count_nonzero(restored) == np.asarray(pooled).size


def test_unpool_sums_values_that_overlapping_windows_sent_to_one_position():
    x = np.zeros((1, 3, 3, 1), "float32")
    x[0, 1, 1, 0] = 1.0  # the centre is the maximum of all four 2x2 windows (stride 1)
    _pooled, indices = max_pool_with_argmax(x, 2, 1)
    np.testing.assert_array_equal(np.asarray(indices).ravel(), [4, 4, 4, 4])
    values = tf.constant([[[[1.0], [2.0]], [[3.0], [4.0]]]])
    restored = np.asarray(max_unpool(values, indices, (3, 3)))
    assert restored[0, 1, 1, 0] == 10.0 and np.count_nonzero(restored) == 1


def test_unpool_gradient_routes_back_to_the_recorded_positions():
    pooled, indices = max_pool_with_argmax(X, 2, 2)
    values = tf.constant(np.asarray(pooled))
    downstream = tf.constant(_distinct(X.shape, 5))
    with tf.GradientTape() as tape:
        tape.watch(values)
        loss = tf.reduce_sum(MaxUnpooling2D(output_size=(15, 17))([values, indices]) * downstream)
    expected = _decode(np.asarray(downstream), np.asarray(indices))
    np.testing.assert_array_equal(tape.gradient(loss, values), expected)


@pytest.mark.parity
def test_matches_pytorch_max_pool2d_and_max_unpool2d():
    torch = require_module("torch")
    functional = torch.nn.functional
    cases = [
        # (pool, stride, our padding, torch kwargs): "same" 2x2/2 on odd sizes pads one
        # row/column after, which is torch's ceil_mode; 3x3/2 "same" on 15x17 pads 1 each side.
        (2, 2, "valid", {}),
        (3, 2, "valid", {}),
        (2, 2, "same", {"ceil_mode": True}),
        (3, 2, "same", {"padding": 1}),
    ]
    x = _distinct((3, 15, 17, 4), 7)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for pool, stride, padding, torch_kwargs in cases:
        pooled, indices = (np.asarray(t) for t in max_pool_with_argmax(x, pool, stride, padding))
        t_pooled, t_indices = functional.max_pool2d(
            x_torch, pool, stride, return_indices=True, **torch_kwargs
        )
        np.testing.assert_array_equal(pooled, t_pooled.numpy().transpose(0, 2, 3, 1))
        # torch: y * W + x per (N, C) plane; ours: (y * W + x) * C + c per image.
        np.testing.assert_array_equal(indices // 4, t_indices.numpy().transpose(0, 2, 3, 1))
        values = _distinct(pooled.shape, 8)
        t_restored = functional.max_unpool2d(
            torch.from_numpy(values.transpose(0, 3, 1, 2).copy()),
            t_indices,
            pool,
            stride,
            padding=torch_kwargs.get("padding", 0),
            output_size=(15, 17),
        )
        restored = np.asarray(MaxUnpooling2D()([values, indices, x]))
        t_restored = t_restored.numpy().transpose(0, 2, 3, 1)
        if pool == stride:
            np.testing.assert_array_equal(restored, t_restored)
        else:
            # Where overlapping windows chose one position several times, torch keeps one
            # of the values and we sum them (tested above); elsewhere both must agree.
            chosen = np.stack([np.bincount(i.ravel(), minlength=x[0].size) for i in indices])
            once = chosen.reshape(x.shape) <= 1
            assert (~once).any() and once.sum() > 0.9 * once.size
            np.testing.assert_array_equal(restored[once], t_restored[once])


def _tiny_segnet() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled, indices = MaxPoolingWithArgmax2D()(features)
    middle = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(pooled)
    restored = MaxUnpooling2D()([middle, indices, features])
    outputs = keras.layers.Conv2D(2, 3, padding="same")(restored)
    return keras.Model(inputs, outputs, name="tiny_segnet")


def test_tiny_segnet_trains_and_round_trips_through_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 15, 17, 3)).astype("float32")
    labels = (images[..., :1] + images[..., 1:2] > 0).astype("int32")  # a per-pixel rule
    model = _tiny_segnet()
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(images, labels, batch_size=4, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert all(b < a for a, b in itertools.pairwise(losses)) and losses[-1] < 0.9 * losses[0], (
        losses
    )

    path = tmp_path / "tiny_segnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: registered classes
    pool = loaded.get_layer(model.layers[2].name)
    assert isinstance(pool, kerasseg.layers.MaxPoolingWithArgmax2D)
    assert (pool.pool_size, pool.strides, pool.padding) == ((2, 2), (2, 2), "valid")
    probe = rng.normal(size=(2, 11, 9, 3)).astype("float32")
    np.testing.assert_allclose(loaded(probe), model(probe), rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    layer = MaxPoolingWithArgmax2D((3, 2), strides=1, padding="same", implementation="ops")
    clone = MaxPoolingWithArgmax2D.from_config(layer.get_config())
    assert (clone.pool_size, clone.strides, clone.padding, clone.implementation) == (
        (3, 2),
        (1, 1),
        "same",
        "ops",
    )
    unpool = MaxUnpooling2D.from_config(MaxUnpooling2D(output_size=(15, 17)).get_config())
    assert unpool.output_size == (15, 17)


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mixed_float16_pools_in_float16_with_int32_indices(mixed_float16, implementation):
    inputs = keras.Input((None, None, 4))
    pooled, indices = MaxPoolingWithArgmax2D(padding="same", implementation=implementation)(inputs)
    restored = MaxUnpooling2D()([pooled, indices, inputs])
    assert (pooled.dtype, indices.dtype, restored.dtype) == ("float16", "int32", "float16")
    model = keras.Model(inputs, [pooled, indices, restored])
    x = _distinct((2, 7, 9, 4), 9) / 100.0  # distinct in float16 as well
    assert len(np.unique(x.astype("float16"))) == x.size
    got_pooled, got_indices, got_restored = (np.asarray(t) for t in model(x))
    dtypes = (got_pooled.dtype, got_indices.dtype, got_restored.dtype)
    assert dtypes == ("float16", "int32", "float16")
    expected_pooled, expected_indices = max_pool_with_argmax(x.astype("float16"), 2, 2, "same")
    np.testing.assert_array_equal(got_pooled, expected_pooled)
    np.testing.assert_array_equal(got_indices, expected_indices)
    assert got_restored.shape == x.shape


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="`pool_size` must hold positive ints"):
        MaxPoolingWithArgmax2D(pool_size=0)
    with pytest.raises(ValueError, match="`strides` must be an int or a pair"):
        MaxPoolingWithArgmax2D(strides=(1, 2, 3))
    with pytest.raises(ValueError, match="`padding` must be one of"):
        MaxPoolingWithArgmax2D(padding="full")
    with pytest.raises(ValueError, match="`implementation` must be one of"):
        MaxPoolingWithArgmax2D(implementation="cuda")
    pooled, indices = max_pool_with_argmax(X, 2, 2)
    with pytest.raises(ValueError, match="needs the output size"):
        MaxUnpooling2D()([pooled, indices])
    with pytest.raises(ValueError, match="`values` and `indices` must have the same shape"):
        MaxUnpooling2D()([pooled[:, :6], indices, X])
    with pytest.raises(ValueError, match="`indices` must be integers"):
        MaxUnpooling2D()([pooled, tf.cast(indices, "float32"), X])
    with pytest.raises(ValueError, match=r"expects \[values, indices, reference\]"):
        MaxUnpooling2D()(pooled)
