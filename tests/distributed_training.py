"""Trains a small masked, regularized tagger on 1 or 2 devices; saves weights.

Run as a script by `test_distributed.py`, in a fresh process: the devices
must be set up before TensorFlow or JAX starts.

    KERAS_BACKEND=tensorflow python tests/distributed_training.py 2 out.npz
    KERAS_BACKEND=jax python tests/distributed_training.py 2 out.npz

With 2 devices TensorFlow trains under `tf.distribute.MirroredStrategy` on
two logical CPUs, JAX under `keras.distribution.DataParallel` on two host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`).
"""

import contextlib
import os
import sys

DEVICES = int(sys.argv[1])
OUTPUT = sys.argv[2]
BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={DEVICES}"
    )
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def strategy_scope():
    """The scope the model is built in, and the number of replicas."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES
        )
        if DEVICES == 1:
            return contextlib.nullcontext(), 1
        strategy = tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")]
        )
        return strategy.scope(), strategy.num_replicas_in_sync
    if BACKEND == "jax":
        import jax
        import keras

        assert len(jax.devices()) == DEVICES, jax.devices()
        if DEVICES > 1:
            distribution = keras.distribution.DataParallel(
                devices=jax.devices()
            )
            keras.distribution.set_distribution(distribution)
            return contextlib.nullcontext(), distribution.device_mesh.shape[0]
        return contextlib.nullcontext(), 1
    raise SystemExit(f"no distributed test for KERAS_BACKEND={BACKEND}")


def data(rng, count=32, length=10, vocabulary=20):
    """Padded tokens of varied lengths, and tags that need context.

    Keras averages a masked loss over each replica's own real tokens, so
    the two halves of every batch of 8 get the same lengths (in another
    order): then the mean of the replicas' means is the one-device mean.
    """
    tokens = rng.integers(1, vocabulary, size=(count, length))
    lengths = [rng.permutation([3, 5, 8, 10]) for _ in range(count // 4)]
    for row, real in enumerate(np.concatenate(lengths)):
        tokens[row, real:] = 0
    tags = (tokens + np.roll(tokens, 2, axis=1)) % 3
    return tokens.astype("int32"), tags.astype("int32")


def main():
    scope, replicas = strategy_scope()
    import keras

    from keras_self_attention import SeqSelfAttention

    tokens, tags = data(np.random.default_rng(0))
    keras.utils.set_random_seed(0)
    with scope:
        model = keras.Sequential(
            [
                keras.Input(shape=(None,), dtype="int32"),
                keras.layers.Embedding(20, 8, mask_zero=True),
                keras.layers.Dense(8, activation="tanh"),
                SeqSelfAttention(
                    units=6,
                    attention_width=5,
                    attention_activation="sigmoid",
                    attention_regularizer_weight=0.05,
                    name="local",
                ),
                SeqSelfAttention(
                    attention_type="multiplicative",
                    # `ba` would cancel in the softmax: no gradient to test.
                    use_attention_bias=False,
                    attention_regularizer_weight=0.05,
                    name="global",
                ),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss="sparse_categorical_crossentropy",
        )
    initial = [w.copy() for w in model.get_weights()]
    history = model.fit(
        tokens, tags, batch_size=8, epochs=6, shuffle=False, verbose=0
    )
    np.savez(
        OUTPUT,
        *initial,
        *model.get_weights(),
        replicas=replicas,
        losses=np.array(history.history["loss"]),
    )


if __name__ == "__main__":
    main()
