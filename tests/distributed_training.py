"""Trains a small masked, regularized tagger on 1 or 2 devices; saves weights.

`test_distributed.py` runs this in a fresh process, because the devices must
be set up before TensorFlow or JAX starts:

    KERAS_BACKEND=tensorflow python tests/distributed_training.py 2 out.npz
    KERAS_BACKEND=jax python tests/distributed_training.py 2 out.npz

On 2 devices, TensorFlow trains under `tf.distribute.MirroredStrategy` on two
logical CPUs and JAX under `keras.distribution.DataParallel` on two host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`). On 1 device
the model is also trained with the attention regularizer doubled, as it would
be if the replicas' regularizers were added up instead of averaged, so that
the test can check that such a mistake would show.

Keras and the frameworks are imported only once the devices are set up.
"""

import contextlib
import os
import sys

import numpy as np

VOCABULARY = 20
TAGS = 3
LENGTH = 12
# Each replica's half of a batch holds one sequence of each length.
LENGTHS = (4, 7, 9, 12)
BATCH_SIZE = 2 * len(LENGTHS)
BATCHES = 4
EPOCHS = 3
REGULARIZER_WEIGHT = 0.05


def set_up_devices(backend, devices):
    """Makes `devices` devices: a scope to build models in, and the replicas.

    Must run before TensorFlow or JAX starts.
    """
    if backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )
        if devices == 1:
            strategy = tf.distribute.get_strategy()
        else:
            cpus = tf.config.list_logical_devices("CPU")
            strategy = tf.distribute.MirroredStrategy([d.name for d in cpus])
        return strategy.scope, strategy.num_replicas_in_sync
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (
            f"--xla_force_host_platform_device_count={devices}"
        )
        import jax
        import keras

        if len(jax.devices()) != devices:
            raise SystemExit(f"expected {devices} devices: {jax.devices()}")
        if devices == 1:
            return contextlib.nullcontext, 1
        distribution = keras.distribution.DataParallel(devices=jax.devices())
        keras.distribution.set_distribution(distribution)
        return contextlib.nullcontext, distribution.device_mesh.devices.size
    raise SystemExit(f"no distributed training for KERAS_BACKEND={backend}")


def variable_devices(variable):
    """The number of devices that hold a copy of the Keras `variable`."""
    value = variable.value
    if hasattr(value, "sharding"):
        return len(value.sharding.device_set)
    # A TensorFlow `MirroredVariable` has one component per replica.
    return len({part.device for part in getattr(value, "values", [value])})


def make_data(rng):
    """Zero-padded tokens of varied lengths, and tags that need context.

    Keras averages a masked loss over the real tokens of each replica's half
    of the batch, then averages the replicas; with the same number of real
    tokens in each half, that is the mean over the whole batch, as on one
    device.
    """
    count = BATCHES * BATCH_SIZE
    tokens = rng.integers(1, VOCABULARY, size=(count, LENGTH))
    lengths = np.concatenate(
        [rng.permutation(LENGTHS) for _ in range(count // len(LENGTHS))]
    )
    tokens[np.arange(LENGTH) >= lengths[:, None]] = 0
    # Each tag depends on the token two steps earlier.
    tags = (tokens + np.roll(tokens, 2, axis=1)) % TAGS
    return tokens.astype("int32"), tags.astype("int32")


def build_model(regularizer_weight):
    """A local additive and a global multiplicative attention, side by side."""
    import keras

    from keras_self_attention import SeqSelfAttention

    keras.utils.set_random_seed(0)
    tokens = keras.Input(shape=(None,), dtype="int32")
    embedded = keras.layers.Embedding(
        VOCABULARY,
        8,
        # Inputs of about unit size, so that every attention weight trains.
        embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
        mask_zero=True,
    )(tokens)
    features = keras.layers.Dense(8, activation="tanh")(embedded)
    local = SeqSelfAttention(
        units=6,
        attention_width=5,
        attention_activation="sigmoid",
        attention_regularizer_weight=regularizer_weight,
        name="local",
    )(features)
    global_ = SeqSelfAttention(
        attention_type="multiplicative",
        # `ba` cancels in the softmax, so it would never train.
        use_attention_bias=False,
        attention_activation="tanh",
        attention_regularizer_weight=regularizer_weight,
        name="global",
    )(features)
    merged = keras.layers.Concatenate()([local, global_])
    tags = keras.layers.Dense(TAGS, activation="softmax")(merged)
    model = keras.Model(tokens, tags)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1.0),
        loss="sparse_categorical_crossentropy",
    )
    return model


def train(scope, tokens, tags, regularizer_weight):
    """Initial and trained weights, epoch losses, devices holding a weight."""
    with scope():
        model = build_model(regularizer_weight)
    initial = model.get_weights()
    history = model.fit(
        tokens,
        tags,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
    )
    devices = variable_devices(model.get_layer("local").Wt)
    return initial, model.get_weights(), history.history["loss"], devices


def main(devices, output):
    scope, replicas = set_up_devices(os.environ["KERAS_BACKEND"], devices)
    tokens, tags = make_data(np.random.default_rng(0))
    initial, trained, losses, weight_devices = train(
        scope, tokens, tags, REGULARIZER_WEIGHT
    )
    results = {
        "replicas": replicas,
        "weight_devices": weight_devices,
        "losses": np.array(losses),
    }
    runs = [("initial", initial), ("trained", trained)]
    if devices == 1:
        runs.append(
            ("doubled", train(scope, tokens, tags, 2 * REGULARIZER_WEIGHT)[1])
        )
    for name, weights in runs:
        results.update({f"{name}_{i}": w for i, w in enumerate(weights)})
    np.savez(output, **results)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
