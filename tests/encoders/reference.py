"""torchvision reference models for the encoder tests: randomised weights, features by stride."""

from __future__ import annotations

import functools
import math

import numpy as np

from tests.support import require_module

# The ImageNet normalisation written out here independently of the library.
MEAN = np.array([0.485, 0.456, 0.406], "float32")
STD = np.array([0.229, 0.224, 0.225], "float32")


@functools.lru_cache(maxsize=3)  # tests share models; never mutate them
def random_torchvision_model(name: str, seed: int = 0):
    """torchvision's `name` (weights=None) in eval mode with every feature tensor randomised.

    The model is constructed on the meta device and materialised uninitialised, so the huge
    VGG classifier is never initialised (it is not converted: `classifier.*` is skipped by
    rule); every other parameter and buffer is then drawn from a seeded generator:
    convolution kernels He-normal (fan in), biases N(0, 0.1^2), BN gamma U(0.5, 1.5), beta
    N(0, 0.1^2). The BN running statistics are random too, but on the scale of the actual
    activations, so that features stay O(1)-O(10) through 100 layers instead of exploding:
    first the true batch statistics of a random N(0, 1) batch, then running_mean shifted by
    N(0, 0.3^2) standard deviations and running_var multiplied by U(0.5, 2).
    """
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)

    def statistics_batch(normal) -> None:
        model.train()
        torchvision_features(model, name, normal((2, 3, 64, 64)).numpy())

    trunk = (m for n, m in model.named_modules() if not n.startswith(("classifier", "fc")))
    randomise_conv_and_batch_norm(trunk, generator, statistics_batch)
    return model.eval()


def randomise_conv_and_batch_norm(modules, generator, statistics_batch) -> None:
    """Randomises the Conv2d and BatchNorm2d among `modules` as `random_torchvision_encoder`
    describes; ``statistics_batch(normal)`` runs one N(0, 1) batch (drawn with `normal`)
    through the model in training mode to set the BN statistics before they are perturbed."""
    torch = require_module("torch")

    def normal(shape, std=1.0):
        return torch.randn(shape, generator=generator) * std

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    norms = []
    with torch.no_grad():
        for module in modules:
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, math.sqrt(2.0 / fan_in)))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(normal(module.bias.shape, 0.1))
                module.reset_running_stats()
                module.momentum = None  # cumulative average: one batch -> its statistics
                norms.append(module)
        if norms:
            statistics_batch(normal)
            for module in norms:
                std = module.running_var.sqrt()
                module.running_mean += normal(std.shape, 0.3) * std
                module.running_var *= uniform(std.shape, 0.5, 2.0)
                module.momentum = 0.1


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def torchvision_features(model, name: str, x_nchw: np.ndarray) -> list[np.ndarray]:
    """Features at strides (1,) 2, 4, 8, 16, 32 from torchvision's submodules, as NHWC arrays.

    VGG: the output of the module just before each max-pool of `features` (the last ReLU of
    each block, strides 1..16) and the last max-pool (stride 32) -- six maps. ResNet: the
    stem's ReLU (stride 2), then layer1 .. layer4 -- five maps.
    """
    torch = require_module("torch")
    x = torch.from_numpy(x_nchw)
    outputs = []
    with torch.no_grad():
        if name.startswith("vgg"):
            modules = list(model.features)
            for i, module in enumerate(modules):
                x = module(x)
                next_is_pool = i + 1 < len(modules) and isinstance(
                    modules[i + 1], torch.nn.MaxPool2d
                )
                if next_is_pool or i == len(modules) - 1:
                    outputs.append(x)
        else:
            x = model.relu(model.bn1(model.conv1(x)))
            outputs.append(x)
            x = model.maxpool(x)
            for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
                x = stage(x)
                outputs.append(x)
    return [o.permute(0, 2, 3, 1).numpy() for o in outputs]


def normalise(images_nhwc: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """torchvision's preprocessing of 0..255 images: (x / 255 - mean) / std, as NCHW."""
    x = (images_nhwc / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype("float32")


def scaled_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max(1, max |reference|): the parity measure of these tests."""
    return float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))
