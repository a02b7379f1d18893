"""Test-session setup shared by every test module."""

import gc
import os

import pytest

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


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_state_per_module():
    """Drops the models, graphs and traced functions a test module leaves behind.

    Without it they pile up over the session (hundreds of models), and every later
    training step pays for it in garbage collection: the ISBI training took 114 s at the
    end of the suite against 65 s on its own.
    """
    yield
    import keras

    keras.backend.clear_session()
    gc.collect()
