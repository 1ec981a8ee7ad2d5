"""Training on 2 devices gives the weights of training on one.

TensorFlow trains under `tf.distribute.MirroredStrategy` on two logical CPUs,
JAX under `keras.distribution.DataParallel` on two host devices, with the same
global batch as the one-device run. Each run is a fresh process
(`tests/distributed_training.py`), since the devices must be set up before
the framework starts. The model has padding masks and a local and a global
`SeqSelfAttention`, both with the attention regularizer, and trains with SGD,
whose steps scale with the gradients: a loss counted once per replica, or not
at all, would show.

Under TensorFlow each replica computes the losses of its half of the batch,
and Keras scales them by 1/2; under JAX one program runs over the whole batch,
which XLA shards.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from tests.processes import ROOT, run_python

SCRIPT = os.path.join(ROOT, "tests", "distributed_training.py")
TOLERANCE = 1e-5
# Training must move the weights by far more than the tolerance.
CHANGE = 100 * TOLERANCE


def train(devices, path):
    """Runs the training script on `devices` CPU devices; its saved results."""
    run_python(
        SCRIPT,
        devices,
        path,
        backend=keras.backend.backend(),
        # The same CPU arithmetic for 1 and 2 devices, GPU or not.
        CUDA_VISIBLE_DEVICES="",
        JAX_PLATFORMS="cpu",
    )
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def weights(results, name):
    """The weights saved under `name`, in `model.get_weights()` order."""
    count = sum(key.startswith(f"{name}_") for key in results)
    return [results[f"{name}_{i}"] for i in range(count)]


def max_difference(these, those):
    return max(np.abs(a - b).max() for a, b in zip(these, those, strict=True))


def assert_two_devices_match_one(tmp_path):
    # The two runs are independent processes, so they may as well overlap.
    with ThreadPoolExecutor(2) as pool:
        one, two = pool.map(
            lambda devices: train(devices, tmp_path / f"{devices}.npz"), (1, 2)
        )
    assert one["replicas"] == 1 and one["weight_devices"] == 1
    # Two replicas, each with its own copy of the weights.
    assert two["replicas"] == 2 and two["weight_devices"] == 2

    initial = weights(one, "initial")
    trained = weights(one, "trained")
    # Embedding, Dense (2), local Wt, Wx, bh, Wa, ba, global Wa, Dense (2).
    assert len(initial) == 11
    assert max_difference(weights(two, "initial"), initial) == 0
    for index, (before, after) in enumerate(zip(initial, trained, strict=True)):
        assert np.abs(after - before).max() > CHANGE, f"weight {index}"
    # Regularizers summed over the 2 replicas instead of averaged would show.
    assert max_difference(weights(one, "doubled"), trained) > CHANGE

    for one_device, two_devices in zip(
        trained, weights(two, "trained"), strict=True
    ):
        np.testing.assert_allclose(
            two_devices, one_device, rtol=TOLERANCE, atol=TOLERANCE
        )
    np.testing.assert_allclose(
        two["losses"], one["losses"], rtol=TOLERANCE, atol=TOLERANCE
    )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute.MirroredStrategy needs the TensorFlow backend",
)
def test_mirrored_strategy_matches_one_device(tmp_path):
    assert_two_devices_match_one(tmp_path)


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution.DataParallel is tested on the JAX backend",
)
def test_data_parallel_matches_one_device(tmp_path):
    assert_two_devices_match_one(tmp_path)
