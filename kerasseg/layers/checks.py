"""Input checks that run inside a model, so a saved model keeps giving clear errors."""

from __future__ import annotations

from typing import Any

import keras


def nearest_valid_sizes(size: int, divisor: int) -> tuple[int, ...]:
    """The multiples of `divisor` closest to `size` from below and above (positive only).

    Example: ``nearest_valid_sizes(250, 16) == (240, 256)``.
    """
    below = (size // divisor) * divisor
    above = below + divisor
    return tuple(s for s in (below, above) if s > 0)


def size_error(axis_name: str, size: int, divisor: int, reason: str) -> ValueError:
    """The error for an input size that is not a multiple of `divisor`."""
    options = " or ".join(str(s) for s in nearest_valid_sizes(size, divisor))
    return ValueError(
        f"Input {axis_name} {size} is not divisible by {divisor} ({reason}). Use a "
        f"{axis_name} divisible by {divisor}, e.g. {options}, or pad/crop the image."
    )


def check_input_shape(input_shape: tuple, divisor: int, reason: str) -> None:
    """Raises if the static height or width of an (H, W, C) shape is not divisible."""
    for axis_name, size in zip(("height", "width"), tuple(input_shape)[:2]):
        if size is not None and size % divisor:
            raise size_error(axis_name, size, divisor, reason)


@keras.saving.register_keras_serializable(package="kerasseg")
class DivisibleSizeCheck(keras.layers.Layer):
    """Identity layer that checks that height and width are multiples of `divisor`.

    Encoder-decoder models concatenate or add features of matching strides, which only line
    up when the input size is a multiple of the total stride. Without this check a wrong
    size fails deep inside the model with an unrelated shape error.

    The check runs on static shapes (eager calls, `predict`, JAX) and, on the TensorFlow
    backend, also on dynamic shapes inside a traced graph.

    Args:
        divisor: Required multiple, e.g. 32 for an encoder of output stride 32.
        reason: Why, for the message, e.g. ``"the encoder's output stride"``.

    Input shape: (B, H, W, C). Output: the input, unchanged.
    """

    def __init__(self, divisor: int, reason: str = "the model's output stride", **kwargs: Any):
        super().__init__(**kwargs)
        if int(divisor) < 1:
            raise ValueError(f"`divisor` must be a positive integer, got {divisor!r}.")
        self.divisor = int(divisor)
        self.reason = reason

    def call(self, inputs: Any) -> Any:
        static = tuple(inputs.shape)
        check_input_shape(static[1:3], self.divisor, self.reason)
        if keras.backend.backend() == "tensorflow" and None in static[1:3]:
            import tensorflow as tf

            shape = tf.shape(inputs)
            for axis, axis_name in ((1, "height"), (2, "width")):
                size = shape[axis]
                below = size // self.divisor * self.divisor
                reason = self.reason.replace("{", "(").replace("}", ")")
                message = tf.strings.format(
                    f"Input {axis_name} {{}} is not divisible by {self.divisor} ({reason}). "
                    f"Use a {axis_name} divisible by {self.divisor}, e.g. {{}} or {{}}, or "
                    "pad/crop the image.",
                    (size, below, below + self.divisor),
                )
                tf.debugging.Assert(tf.equal(size % self.divisor, 0), [message])
        return inputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "divisor": self.divisor, "reason": self.reason}
