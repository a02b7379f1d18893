"""PyTorch references for the architecture tests: smp models with random weights, their
transfer onto our Keras models, and the shared checks every architecture must pass.

The transfer is written here, independently of the library (the library has no smp
converter): for each Keras layer the test names the smp module it must equal.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tests.encoders.reference import normalise, scaled_error
from tests.support import require_module

TOLERANCE = 1e-4  # scaled_error bound, as in the encoder parity tests


def trainable_parameters(model: keras.Model) -> int:
    """Trainable parameters (PyTorch's count: BN running statistics are not parameters)."""
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def torch_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def smp_model(arch: str, encoder: str, *, meta: bool = False, **kwargs):
    """smp's `arch` ("Unet", "FPN") on `encoder`, random weights; on the meta device if `meta`."""
    torch = require_module("torch")
    smp = require_module("segmentation_models_pytorch")
    if meta:
        with torch.device("meta"):
            return getattr(smp, arch)(encoder, encoder_weights=None, **kwargs)
    torch.manual_seed(0)
    return getattr(smp, arch)(encoder, encoder_weights=None, **kwargs)


def randomise(model, input_size: int = 64, seed: int = 0):
    """Seeded random weights everywhere, including non-default norm parameters and BN stats.

    Convolutions: He-normal kernels, N(0, 0.1^2) biases; norm layers: gamma U(0.5, 1.5),
    beta N(0, 0.1^2). BN running statistics: the batch statistics of one random batch
    (so activations stay O(1) through deep encoders), then shifted and scaled at random, so
    a transfer that ignored them would be caught. Returns the model in eval mode.
    """
    torch = require_module("torch")
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0):
        return torch.randn(shape, generator=generator) * std

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    batch_norms = []
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, math.sqrt(2.0 / fan_in)))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(normal(module.bias.shape, 0.1))
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None  # cumulative: one batch gives its statistics
                    batch_norms.append(module)
        if batch_norms:
            model.train()
            model(normal((2, 3, input_size, input_size)))
            for module in batch_norms:
                std = module.running_var.sqrt()
                module.running_mean += normal(std.shape, 0.3) * std
                module.running_var *= uniform(std.shape, 0.5, 2.0)
                module.momentum = 0.1
    return model.eval()


def state_dict(module, prefix: str = "") -> dict[str, np.ndarray]:
    return {
        k[len(prefix) :]: v.detach().cpu().numpy()
        for k, v in module.state_dict().items()
        if k.startswith(prefix)
    }


class Transfer:
    """Copies named PyTorch tensors into Keras layers and checks every tensor is used once."""

    def __init__(self, model: keras.Model, state: dict[str, np.ndarray]):
        self.model = model
        self.state = dict(state)
        self.used: set[str] = set()

    def _take(self, name: str) -> np.ndarray:
        assert name not in self.used, f"{name} used twice"
        self.used.add(name)
        return self.state[name]

    def conv(self, layer: str, prefix: str) -> None:
        target = self.model.get_layer(layer)
        # Conv2d (out, in, kh, kw) -> (kh, kw, in, out); ConvTranspose2d (in, out, kh, kw)
        # -> Conv2DTranspose (kh, kw, out, in): the same axis permutation.
        values = [self._take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        if target.use_bias:
            values.append(self._take(f"{prefix}.bias"))
        target.set_weights(values)

    def batch_norm(self, layer: str, prefix: str) -> None:
        self.model.get_layer(layer).set_weights(
            [self._take(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
        )
        self.used.add(f"{prefix}.num_batches_tracked")

    def group_norm(self, layer: str, prefix: str) -> None:
        self.model.get_layer(layer).set_weights(
            [self._take(f"{prefix}.weight"), self._take(f"{prefix}.bias")]
        )

    def check_complete(self) -> None:
        unused = sorted(set(self.state) - self.used)
        assert not unused, f"source tensors not transferred: {unused}"


def load_smp_encoder(model: keras.Model, encoder: str, smp) -> None:
    """smp's encoder state dict (torchvision names) into our nested encoder, via the library's
    torchvision converter (itself tested against torchvision in tests/encoders)."""
    from kerasseg.zoo import convert

    convert.load_torchvision_weights(
        model.get_layer(encoder), state_dict(smp.encoder), encoder=encoder
    )


def torch_forward(module, images_nhwc: np.ndarray, mean=None, std=None) -> np.ndarray:
    """Runs a PyTorch model on 0..255 NHWC images normalised like torchvision; NHWC output."""
    torch = require_module("torch")
    x = normalise(images_nhwc) if mean is None else normalise(images_nhwc, mean, std)
    with torch.no_grad():
        y = module(torch.from_numpy(x))
    return y.permute(0, 2, 3, 1).numpy()


def assert_close(ours, reference) -> None:
    ours = np.asarray(ours)
    assert ours.shape == reference.shape
    assert scaled_error(ours, reference) <= TOLERANCE, scaled_error(ours, reference)


def images(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


# --- checks shared by every architecture ---------------------------------------------------


def check_outputs(model: keras.Model, num_classes: int, size=(32, 64)) -> None:
    """Output shape, float32 and the activation: probabilities in [0, 1], summing to 1 for
    several classes."""
    y = np.asarray(model(images((2, *size, model.input_shape[-1])), training=False))
    assert y.shape == (2, *size, num_classes)
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    if num_classes > 1:
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    else:
        assert ((y >= 0) & (y <= 1)).all()


def check_size_errors(build) -> None:
    """A static size not divisible by 32 is refused at build time, a dynamic one at call
    time, both naming the size and the nearest valid sizes."""
    import pytest

    with pytest.raises(ValueError, match=r"Input height 100 is not divisible by 32 .*96 or 128"):
        build(input_shape=(100, 64, 3))
    with keras.StatelessScope():  # build-only: skip the weight initialisation
        model = build()
    with pytest.raises(ValueError, match=r"Input width 80 is not divisible by 32 .*64 or 96"):
        model(np.zeros((1, 64, 80, 3), "float32"))
