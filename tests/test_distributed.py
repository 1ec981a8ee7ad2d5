"""Training on 2 devices gives the weights of training on one.

TensorFlow: `tf.distribute.MirroredStrategy` on two logical CPUs; JAX:
`keras.distribution.DataParallel` on two host devices. Each run is a fresh
process (`tests/distributed_training.py`), since the devices must be set up
before the framework starts. The model has padding masks, a local and a
global `SeqSelfAttention` and the attention regularizer on both.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "distributed_training.py")

pytestmark = pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="data-parallel training is tested with tf.distribute (TensorFlow) "
    "and keras.distribution (JAX)",
)


def train(devices, path):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    done = subprocess.run(
        [sys.executable, SCRIPT, str(devices), str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = np.load(path)
    count = (len(saved.files) - 2) // 2
    initial = [saved[f"arr_{i}"] for i in range(count)]
    trained = [saved[f"arr_{count + i}"] for i in range(count)]
    return int(saved["replicas"]), saved["losses"], initial, trained


def test_two_devices_match_one(tmp_path):
    replicas, losses, initial, trained = train(1, tmp_path / "one.npz")
    assert replicas == 1
    replicas, two_losses, two_initial, two_trained = train(
        2, tmp_path / "two.npz"
    )
    assert replicas == 2
    for before, other in zip(initial, two_initial, strict=True):
        np.testing.assert_array_equal(before, other)
    # Training moved every weight far more than the tolerance.
    moved = [np.abs(a - b).max() for a, b in zip(trained, initial, strict=True)]
    assert min(moved) > 1e-2, moved
    for one, two in zip(trained, two_trained, strict=True):
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two_losses, losses, rtol=1e-5)
