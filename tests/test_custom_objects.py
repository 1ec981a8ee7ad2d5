import keras
import numpy as np
import pytest
from keras import ops

import keras_self_attention
from keras_self_attention import (
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
    get_custom_objects,
)

LAYERS = [
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
]


def test_package_custom_objects_hold_every_layer():
    objects = get_custom_objects()
    assert sorted(objects) == sorted(
        [layer.__name__ for layer in LAYERS] + ["Any", "NotEqual"]
    )
    for layer in LAYERS:
        assert objects[layer.__name__] is layer
    assert sorted(keras_self_attention.__all__) == sorted(
        [layer.__name__ for layer in LAYERS]
        + ["get_attention_weights", "get_custom_objects", "plot_attention"]
    )


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_class_custom_objects_are_part_of_the_package_ones(layer):
    assert layer.get_custom_objects() == {layer.__name__: layer}
    assert get_custom_objects()[layer.__name__] is layer


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "SeqWeightedAttention", "config": {"use_bias": False}},
        {
            "class_name": "ScaledDotProductAttention",
            "config": {"history_only": True},
        },
        {
            "class_name": "ResidualScaledDotProductAttention",
            "config": {"return_attention": True},
        },
        {"class_name": "SeqSelfAttention", "config": {"units": 3}},
    ],
    ids=lambda config: config["class_name"],
)
def test_plain_class_names_deserialize(config):
    """0.51 saved configs name the class without a package."""
    layer = keras.layers.deserialize(config)
    assert type(layer).__name__ == config["class_name"]
    ((name, value),) = config["config"].items()
    assert getattr(layer, name) == value


def masked_model(masking):
    """`masking -> BiLSTM -> SeqSelfAttention -> Dense`, compiled with "mse".

    `masking` is `"embedding"` (`Embedding(mask_zero=True)`) or `"masking"`
    (`Masking`): the two ways a 0.51 model got its mask.
    """
    if masking == "embedding":
        inputs = keras.Input(shape=(None,), dtype="int32")
        features = keras.layers.Embedding(10, 8, mask_zero=True)(inputs)
    else:
        inputs = keras.Input(shape=(None, 3))
        features = keras.layers.Masking()(inputs)
    features = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True)
    )(features)
    features = SeqSelfAttention(units=4)(features)
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    model.compile(optimizer="adam", loss="mse")
    return model


def padded_inputs(masking, rng):
    if masking == "embedding":
        return np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]], dtype="int32")
    inputs = rng.random((2, 5, 3)).astype("float32")
    inputs[0, 3:] = 0
    return inputs


def test_mask_operations_cover_what_keras_saves(rng):
    """Stand-ins by the class names Keras saves, computing the same."""
    inputs = keras.Input(shape=(None, 3))
    outputs = keras.layers.LSTM(2)(keras.layers.Masking()(inputs))
    saved = {
        type(operation).__name__
        for operation in keras.Model(inputs, outputs).operations
    }
    objects = get_custom_objects()
    assert {"NotEqual", "Any"} <= saved
    x = rng.integers(0, 2, (2, 3, 4)).astype("float32")
    not_equal = objects["NotEqual"]()(x, 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(not_equal), x != 0)
    found = objects["Any"](axis=-1)(not_equal)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(found), (x != 0).any(axis=-1)
    )


@pytest.mark.parametrize("masking", ["embedding", "masking"])
@pytest.mark.parametrize(
    "custom_objects",
    [
        get_custom_objects(),
        SeqSelfAttention.get_custom_objects(),
        None,
    ],
    ids=["package", "class", "none"],
)
def test_masked_h5_model_loads_and_predicts_the_same(
    masking, custom_objects, tmp_path, rng
):
    """Keras 3 saves the mask's operations, which its `.h5` loader misses."""
    model = masked_model(masking)
    path = str(tmp_path / "model.h5")
    model.save(path)
    # `compile=False`: Keras 3's `.h5` loader fails on the loss "mse".
    loaded = keras.models.load_model(
        path, custom_objects=custom_objects, compile=False
    )
    inputs = padded_inputs(masking, rng)
    np.testing.assert_allclose(
        loaded.predict(inputs, verbose=0),
        model.predict(inputs, verbose=0),
        atol=1e-6,
    )


def test_h5_model_compiled_again_trains(tmp_path, rng):
    model = masked_model("embedding")
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = keras.models.load_model(
        path, custom_objects=get_custom_objects(), compile=False
    )
    loaded.compile(optimizer="adam", loss="mse")
    inputs = padded_inputs("embedding", rng)
    before = loaded.get_weights()
    history = loaded.fit(inputs, rng.random((2, 5, 3)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not all(
        np.array_equal(old, new)
        for old, new in zip(before, loaded.get_weights(), strict=True)
    )
