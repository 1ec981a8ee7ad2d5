"""Models saved by keras-self-attention 0.51 load and predict the same.

The fixture was made by `tests/fixtures/make_keras_self_attention_051.py`
with keras-self-attention 0.51.0 on TensorFlow 2.15.1 and its Keras 2.15
(the tf-keras line); that script's docstring gives the exact commands.
"""

import os

import keras
import numpy as np
import pytest

from keras_self_attention import SeqSelfAttention

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MODEL = os.path.join(FIXTURES, "seq_self_attention_051.h5")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "seq_self_attention_051.npz")) as data:
        return dict(data)


@pytest.mark.parametrize(
    "custom_objects", [None, SeqSelfAttention.get_custom_objects()]
)
def test_051_model_predicts_the_same(expected, custom_objects):
    model = keras.models.load_model(
        MODEL, custom_objects=custom_objects, compile=False
    )
    predictions, attention = model.predict(expected["inputs"], verbose=0)
    np.testing.assert_allclose(predictions, expected["predictions"], atol=1e-5)
    np.testing.assert_allclose(attention, expected["attention"], atol=1e-5)


def test_051_weights_and_arguments_load(expected):
    model = keras.models.load_model(MODEL, compile=False)
    layers = {
        item.name: item
        for item in model.layers
        if isinstance(item, SeqSelfAttention)
    }
    assert sorted(layers) == [
        "additive_global",
        "additive_local",
        "multiplicative_causal",
    ]
    for name, layer in layers.items():
        weights = layer.get_weights()
        assert len(weights) == sum(k.startswith(name + "/") for k in expected)
        for i, weight in enumerate(weights):
            np.testing.assert_array_equal(weight, expected[f"{name}/{i}"])
    local = layers["additive_local"]
    assert (local.units, local.attention_width) == (6, 3)
    assert keras.activations.serialize(local.attention_activation) == "sigmoid"
    assert isinstance(local.kernel_regularizer, keras.regularizers.L2)
    causal = layers["multiplicative_causal"]
    assert causal.history_only and causal.attention_type == "multiplicative"
    assert [tuple(w.shape) for w in causal.weights] == [(8, 8), (1,)]
    global_ = layers["additive_global"]
    assert global_.return_attention and not global_.use_additive_bias
    assert global_.attention_regularizer_weight == pytest.approx(1e-3)


def test_051_model_no_longer_attends_to_padding(expected):
    model = keras.models.load_model(MODEL, compile=False)
    tokens = expected["inputs"].copy()
    tokens[:, 5:] = 0
    _, attention = model.predict(tokens, verbose=0)
    assert np.all(attention[:, :, 5:] == 0)
    np.testing.assert_allclose(attention.sum(-1), 1, atol=1e-5)
