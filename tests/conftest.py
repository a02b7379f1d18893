"""Test-session setup shared by every test module."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# PyTorch (the parity references) must be imported before TensorFlow: with torch 2.14.1 and
# TensorFlow 2.21 in one process, importing torchvision after TensorFlow segfaults, while the
# other order works. Harmless when the `parity` extra is not installed.
try:
    import torch
    import torchvision  # noqa: F401

    torch.set_num_threads(2)
except ImportError:
    pass
