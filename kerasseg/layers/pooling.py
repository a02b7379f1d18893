"""Max pooling that remembers where each maximum came from, and the matching unpooling.

SegNet (Badrinarayanan, Kendall & Cipolla, 2017) upsamples in its decoder by putting each
value back at the position of the maximum that the matching encoder pooling picked, with
zeros everywhere else. The encoder pooling therefore has to return the argmax positions
("indices") beside the pooled values, and the unpooling needs them plus the size of the
map before pooling.

**Index convention.** An index is the flat position of the maximum inside ONE image of
the (B, H, W, C) input, channels-last and row-major:

$$\\text{index} = (y \\cdot W + x) \\cdot C + c,$$

with $(y, x)$ the maximum's position in the unpadded input and $c$ its channel. The batch
position is not part of it (``tf.nn.max_pool_with_argmax(include_batch_in_index=False)``),
so indices of different images never mix and the unpooling adds the batch position
itself. PyTorch's ``max_pool2d(return_indices=True)`` stores $y \\cdot W + x$ per (N, C)
plane instead; $\\text{index} \\,//\\, C$ is that number.

**Index dtype.** ``int32``, whatever the compute dtype (``mixed_float16`` included): one
image's index is below $H \\cdot W \\cdot C$, which fits in int32 for any realistic map
(the layer refuses static shapes where it would not), int32 is the integer type every
Keras backend handles natively, and the unpooling never forms batch-wide flat indices,
so the batch size cannot overflow it. The TensorFlow kernel only produces int64 on GPU;
its result is cast.

**Ties.** The first maximum in the window, scanning rows then columns (row-major), wins:
that is what the TensorFlow kernel, the `keras.ops` path and PyTorch do, and the
gradient goes to that one position only.

**Implementations.** ``implementation="tensorflow"`` uses
``tf.nn.max_pool_with_argmax`` (its registered gradient routes the incoming gradient to
the argmax position). That op has no XLA kernel, so a layer using it sets
``supports_jit = False`` and Keras then trains the model without XLA.
``implementation="ops"`` is a pure `keras.ops` version (any backend, XLA-compatible):
it stacks the $k_h k_w$ strided views of the (padded) input and takes the argmax over
them, which costs $k_h k_w$ times the input's memory. ``"auto"`` (the default) picks
the TensorFlow kernel on the TensorFlow backend and the `keras.ops` path elsewhere.
Both give identical values, indices and gradients (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

PADDINGS = ("valid", "same")
IMPLEMENTATIONS = ("auto", "tensorflow", "ops")
INDEX_DTYPE = "int32"
_INT32_MAX = 2**31 - 1


def _pair(value: Any, argument: str) -> tuple[int, int]:
    """`value` as a pair of positive ints (an int means the same for height and width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"`{argument}` must be an int or a pair of ints, got {value!r}.")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"`{argument}` must hold positive ints, got {value!r}.")
    return (int(pair[0]), int(pair[1]))


def _check_padding(padding: str) -> str:
    padding = str(padding).lower()
    if padding not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}, got {padding!r}.")
    return padding


def _resolve_implementation(implementation: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}."
        )
    backend = keras.backend.backend()
    if implementation == "auto":
        return "tensorflow" if backend == "tensorflow" else "ops"
    if implementation == "tensorflow" and backend != "tensorflow":
        raise ValueError(
            "`implementation='tensorflow'` needs the TensorFlow backend, but the Keras "
            f"backend is {backend!r}; use implementation='ops' or 'auto'."
        )
    return implementation


def pooled_size(size: Any, pool: int, stride: int, padding: str) -> Any:
    """Output length of a max pooling along one axis (`size` may be a dynamic scalar).

    ``"valid"``: $\\lfloor (n - k) / s \\rfloor + 1$ (trailing rows that do not fill a
    window are dropped). ``"same"``: $\\lceil n / s \\rceil$.
    """
    if size is None:
        return None
    if padding == "valid":
        return (size - pool) // stride + 1
    return (size + stride - 1) // stride


def _same_padding(size: Any, pool: int, stride: int) -> tuple[Any, Any]:
    """TensorFlow's "same" padding: the extra row/column goes after, not before."""
    out = pooled_size(size, pool, stride, "same")
    needed = (out - 1) * stride + pool - size
    total = max(needed, 0) if isinstance(needed, int) else ops.maximum(needed, 0)
    before = total // 2
    return before, total - before


def _check_index_range(shape: Sequence[Any]) -> None:
    height, width, channels = shape[1:4]
    if None not in (height, width, channels) and height * width * channels > _INT32_MAX:
        raise ValueError(
            f"An input of shape {tuple(shape)} has {height * width * channels} positions "
            "per image, more than int32 indices can address; pool smaller maps."
        )


def _opaque_copy(x: Any) -> Any:
    """`x` through a Snapshot op, whose gradient passes through unchanged.

    Grappler's arithmetic optimizer rewrites MaxPool(ReLU(x)) as ReLU(MaxPool(x)); it takes
    ``MaxPoolWithArgmax`` for a MaxPool and reconnects the consumers of the argmax output to
    the ReLU's float output, so the rewrite fails ("Input 0 of node .../Cast was passed
    float ... expected int64") and TensorFlow runs the graph without its optimisations. A
    Snapshot between them (a copy Grappler keeps, unlike an Identity) prevents the match.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def copy(value):
        return tf.raw_ops.Snapshot(input=value), lambda upstream: upstream

    return copy(x)


def _max_pool_with_argmax_tf(x: Any, pool: tuple, strides: tuple, padding: str) -> tuple:
    import tensorflow as tf

    pooled, argmax = tf.nn.max_pool_with_argmax(
        _opaque_copy(x),
        ksize=(1, *pool, 1),
        strides=(1, *strides, 1),
        padding=padding.upper(),
        output_dtype=tf.int64,  # the only index type with a GPU kernel
        include_batch_in_index=False,
    )
    return pooled, tf.cast(argmax, INDEX_DTYPE)


def _max_pool_with_argmax_ops(x: Any, pool: tuple, strides: tuple, padding: str) -> tuple:
    _, height, width, channels = ops.shape(x)
    (kh, kw), (sh, sw) = pool, strides
    out_h = pooled_size(height, kh, sh, padding)
    out_w = pooled_size(width, kw, sw, padding)
    top = left = 0
    if padding == "same":
        top, bottom = _same_padding(height, kh, sh)
        left, right = _same_padding(width, kw, sw)
        # -inf never wins a window that holds at least one real value.
        x = ops.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=-math.inf)
    # One strided view per window offset: views[..., k, :] is the window element k
    # (row-major in the window) of every output position.
    views = [
        x[:, di : di + (out_h - 1) * sh + 1 : sh, dj : dj + (out_w - 1) * sw + 1 : sw, :]
        for di in range(kh)
        for dj in range(kw)
    ]
    stacked = ops.stack(views, axis=3)  # (B, out_h, out_w, kh*kw, C)
    winner = ops.cast(ops.argmax(stacked, axis=3), INDEX_DTYPE)  # first max on ties
    # Select (rather than reduce_max) so the gradient goes to the winner only, ties included.
    chosen = ops.equal(ops.expand_dims(winner, 3), ops.reshape(ops.arange(kh * kw), (kh * kw, 1)))
    pooled = ops.sum(ops.where(chosen, stacked, ops.zeros_like(stacked)), axis=3)

    rows = ops.reshape(ops.arange(out_h, dtype=INDEX_DTYPE) * sh - top, (1, -1, 1, 1))
    cols = ops.reshape(ops.arange(out_w, dtype=INDEX_DTYPE) * sw - left, (1, 1, -1, 1))
    y = rows + winner // kw
    x_pos = cols + winner % kw
    c = ops.reshape(ops.arange(channels, dtype=INDEX_DTYPE), (1, 1, 1, -1))
    width = ops.cast(width, INDEX_DTYPE)
    channels = ops.cast(channels, INDEX_DTYPE)
    indices = (y * width + x_pos) * channels + c
    return pooled, indices


def max_pool_with_argmax(
    x: Any,
    pool_size: int | tuple[int, int] = 2,
    strides: int | tuple[int, int] | None = None,
    padding: str = "valid",
    *,
    implementation: str = "auto",
) -> tuple[Any, Any]:
    """Max pooling that also returns the position of each maximum.

    Args:
        x: (B, H, W, C) float features, channels-last. H and W may be dynamic.
        pool_size: Window size, an int or (height, width).
        strides: Step between windows; defaults to `pool_size` (non-overlapping windows).
        padding: ``"valid"`` (drop trailing rows/columns that do not fill a window) or
            ``"same"`` (pad, after rather than before where uneven, so the output is
            $\\lceil H / s \\rceil \\times \\lceil W / s \\rceil$; padding never wins).
        implementation: ``"auto"``, ``"tensorflow"`` or ``"ops"`` (see the module notes).

    Returns:
        ``(pooled, indices)``, both (B, H', W', C): the maxima (dtype of `x`) and their
        int32 flat positions $(y W + x) C + c$ within their own image.
    """
    pool = _pair(pool_size, "pool_size")
    strides = pool if strides is None else _pair(strides, "strides")
    padding = _check_padding(padding)
    _check_index_range(tuple(x.shape))
    if _resolve_implementation(implementation) == "tensorflow":
        return _max_pool_with_argmax_tf(x, pool, strides, padding)
    return _max_pool_with_argmax_ops(x, pool, strides, padding)


def max_unpool(values: Any, indices: Any, output_size: tuple[Any, Any]) -> Any:
    """Puts every value at its recorded position in a zero map of size `output_size`.

    The inverse placement of `max_pool_with_argmax`: for ``pooled, indices =
    max_pool_with_argmax(x)``, ``max_unpool(pooled, indices, x.shape[1:3])`` equals `x`
    at the argmax positions and 0 elsewhere. Where overlapping windows (strides smaller
    than the pool) picked the same position more than once, the values are summed, which
    makes unpooling exactly the transpose (the gradient) of the pooling's selection.

    Args:
        values: (B, h, w, C) values to place.
        indices: (B, h, w, C) integer flat positions $(y W + x) C + c$ within each image,
            as returned by `max_pool_with_argmax`.
        output_size: (H, W) of the output; ints or dynamic scalars.

    Returns:
        (B, H, W, C) with the dtype of `values`.
    """
    batch = ops.shape(values)[0]
    channels = ops.shape(values)[3]
    height, width = output_size
    flat_values = ops.reshape(values, (-1,))
    flat_indices = ops.reshape(ops.cast(indices, INDEX_DTYPE), (batch, -1))
    # (image, position-in-image) pairs instead of batch-wide flat indices: no int32 overflow.
    images = ops.broadcast_to(
        ops.reshape(ops.arange(batch, dtype=INDEX_DTYPE), (-1, 1)), ops.shape(flat_indices)
    )
    coordinates = ops.reshape(ops.stack([images, flat_indices], axis=-1), (-1, 2))
    out = ops.scatter(coordinates, flat_values, (batch, height * width * channels))
    return ops.reshape(out, (batch, height, width, channels))


@keras.saving.register_keras_serializable(package="kerasseg")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2-D max pooling returning ``(pooled, indices)``, the encoder half of SegNet's pooling.

    Pooled values equal `keras.layers.MaxPooling2D` with the same arguments; `indices`
    are the int32 flat positions $(y W + x) C + c$ of the maxima within their own image
    (see the module notes for the convention, ties and the two implementations). Feed
    both, and the pooling's input, to `MaxUnpooling2D`.

    Args:
        pool_size: Window size, an int or (height, width).
        strides: Step between windows; defaults to `pool_size`.
        padding: ``"valid"`` or ``"same"`` (TensorFlow's: extra padding after).
        implementation: ``"auto"`` (TensorFlow kernel on the TensorFlow backend, `keras.ops`
            elsewhere), ``"tensorflow"`` or ``"ops"``. The TensorFlow kernel has no XLA
            version, so with it the layer reports ``supports_jit = False``.
        **kwargs: `keras.layers.Layer` arguments (name, dtype ...).

    Input shape: (B, H, W, C), channels-last, float; H and W may be None.
    Output: ``[pooled, indices]``, each (B, H', W', C) with H' = (H - k) // s + 1
    ("valid") or ceil(H / s) ("same"); pooled in the compute dtype, indices int32.

    Example:
        ```python
        pooled, indices = MaxPoolingWithArgmax2D()(features)      # 15x17 -> 7x8
        restored = MaxUnpooling2D()([pooled, indices, features])  # 7x8 -> 15x17
        ```
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        implementation: str = "auto",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.padding = _check_padding(padding)
        _resolve_implementation(implementation)  # validates now, resolves at call time
        self.implementation = implementation
        self.supports_jit = _resolve_implementation(implementation) != "tensorflow"
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs: Any) -> list[Any]:
        pooled, indices = max_pool_with_argmax(
            inputs, self.pool_size, self.strides, self.padding, implementation=self.implementation
        )
        return [pooled, indices]

    def compute_output_shape(self, input_shape: tuple) -> list[tuple]:
        batch, height, width, channels = input_shape
        shape = (
            batch,
            pooled_size(height, self.pool_size[0], self.strides[0], self.padding),
            pooled_size(width, self.pool_size[1], self.strides[1], self.padding),
            channels,
        )
        return [shape, shape]

    def compute_output_spec(self, inputs: Any) -> list[keras.KerasTensor]:
        _check_index_range(tuple(inputs.shape))
        shape, _ = self.compute_output_shape(tuple(inputs.shape))
        return [
            keras.KerasTensor(shape, dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype=INDEX_DTYPE),
        ]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "implementation": self.implementation,
        }


@keras.saving.register_keras_serializable(package="kerasseg")
class MaxUnpooling2D(keras.layers.Layer):
    """Places values back at the positions recorded by `MaxPoolingWithArgmax2D`; zeros elsewhere.

    The decoder half of SegNet's pooling. The output size cannot be recovered from the
    pooled map alone: "valid" pooling of 15 rows and of 14 rows both give 7. So the layer
    takes it from a third input, the tensor that went INTO the matching pooling (only
    its dynamic shape is read; no gradient flows into it), which works for any input
    size in a model built with ``keras.Input((None, None, C))``. Alternatively give a
    fixed `output_size` and call the layer on ``[values, indices]``.

    Values that several overlapping windows sent to the same position are summed.

    Args:
        output_size: Optional fixed (H, W) of the output, used when no third input is
            given. With a third input, that input's H and W win.
        **kwargs: `keras.layers.Layer` arguments (name, dtype ...).

    Input: ``[values, indices, reference]`` or ``[values, indices]``:
        values: (B, h, w, C) float.
        indices: (B, h, w, C) integer, as returned by `MaxPoolingWithArgmax2D`.
        reference: (B, H, W, C') tensor whose H and W are the output's, normally the
            pooling's input (C' is not used).

    Output: (B, H, W, C) in the compute dtype.
    """

    def __init__(self, output_size: tuple[int, int] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.output_size = None if output_size is None else _pair(output_size, "output_size")

    def _split(self, inputs: Any) -> tuple[Any, Any, Any]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                "MaxUnpooling2D expects [values, indices, reference] or [values, indices] "
                f"(with `output_size`), got {type(inputs).__name__} of "
                f"{len(inputs) if isinstance(inputs, (list, tuple)) else 1} tensor(s)."
            )
        values, indices, *rest = inputs
        reference = rest[0] if rest else None
        if reference is None and self.output_size is None:
            raise ValueError(
                "MaxUnpooling2D needs the output size: pass the pooling's input as a third "
                "input ([values, indices, reference]) or set `output_size=(H, W)`."
            )
        for name, tensor in (("values", values), ("indices", indices), ("reference", reference)):
            if tensor is not None and len(tensor.shape) != 4:
                raise ValueError(
                    f"MaxUnpooling2D: `{name}` must be 4-D (B, H, W, C), got shape "
                    f"{tuple(tensor.shape)}."
                )
        if tuple(values.shape[1:]) != tuple(indices.shape[1:]) and None not in (
            *values.shape[1:],
            *indices.shape[1:],
        ):
            raise ValueError(
                "MaxUnpooling2D: `values` and `indices` must have the same shape, got "
                f"{tuple(values.shape)} and {tuple(indices.shape)}."
            )
        if not str(keras.backend.standardize_dtype(indices.dtype)).startswith(("int", "uint")):
            raise ValueError(
                f"MaxUnpooling2D: `indices` must be integers, got dtype {indices.dtype}."
            )
        return values, indices, reference

    def call(self, inputs: Any) -> Any:
        values, indices, reference = self._split(inputs)
        if reference is not None:
            size = ops.shape(reference)[1:3]
        else:
            size = self.output_size
        return max_unpool(values, indices, size)

    def compute_output_spec(self, inputs: Any) -> keras.KerasTensor:
        values, _, reference = self._split(inputs)
        size = tuple(reference.shape[1:3]) if reference is not None else self.output_size
        return keras.KerasTensor(
            (values.shape[0], *size, values.shape[3]), dtype=self.compute_dtype
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "output_size": self.output_size}
