"""`get_attention_weights` reads a trained model's weights without changes."""

import keras
import numpy as np
import pytest

from keras_self_attention import (
    SeqSelfAttention,
    SeqWeightedAttention,
    get_attention_weights,
)
from tests import numpy_reference
from tests.test_seq_self_attention import randomize, reference

VOCABULARY, DIM = 12, 4


def tokens_with_padding(rng, batch=5, length=9):
    tokens = rng.integers(1, VOCABULARY, size=(batch, length))
    for row, real in enumerate(rng.integers(1, length + 1, size=batch)):
        tokens[row, real:] = 0
    tokens[0] = rng.integers(1, VOCABULARY, size=length)  # one unpadded
    return tokens.astype("int32")


def tagger(rng, attention, name="attention"):
    embedding = keras.layers.Embedding(VOCABULARY, DIM, mask_zero=True)
    model = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            embedding,
            attention,
            keras.layers.Dense(3),
        ]
    )
    randomize(attention, rng)
    return model, embedding


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"attention_type": "multiplicative"},  # the fused path in the model
        {"attention_width": 3},  # the band path
        {"attention_width": 4, "history_only": True},
        {"attention_activation": "sigmoid", "attention_regularizer_weight": 1},
    ],
    ids=["additive", "fused", "band", "band-causal", "regularized"],
)
def test_weights_match_numpy_reference(rng, kwargs):
    layer = SeqSelfAttention(units=5, name="attention", **kwargs)
    model, embedding = tagger(rng, layer)
    tokens = tokens_with_padding(rng)
    before = model.predict(tokens, verbose=0)
    weights = get_attention_weights(model, tokens, batch_size=2)

    x = keras.ops.convert_to_numpy(embedding(tokens))
    _, expected, _ = reference(layer, x, tokens != 0)
    assert weights.shape == (5, 9, 9)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    assert np.all(weights.transpose(0, 2, 1)[tokens == 0] == 0)  # padding
    # The model is unchanged.
    assert not layer.return_attention
    assert len(model.layers) == 3
    np.testing.assert_array_equal(model.predict(tokens, verbose=0), before)


def test_layer_that_already_returns_weights(rng):
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, DIM, mask_zero=True)(inputs)
    layer = SeqSelfAttention(return_attention=True, attention_width=3)
    outputs, scores = layer(x)
    model = keras.Model(inputs, [keras.layers.Dense(2)(outputs), scores])
    tokens = tokens_with_padding(rng)
    np.testing.assert_allclose(
        get_attention_weights(model, tokens),
        model.predict(tokens, verbose=0)[1],
        rtol=1e-6,
        atol=1e-7,
    )


def functional_with_two_layers():
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, DIM, mask_zero=True)(inputs)
    local = SeqSelfAttention(attention_width=3, name="local")
    pooling = SeqWeightedAttention(name="pooling")
    outputs = keras.layers.Dense(2)(pooling(local(x)))
    return keras.Model(inputs, outputs), local, pooling


def test_choose_layer_by_name_or_instance(rng):
    model, local, pooling = functional_with_two_layers()
    tokens = tokens_with_padding(rng)
    by_name = get_attention_weights(model, tokens, layer="local")
    by_layer = get_attention_weights(model, tokens, layer=local)
    assert by_name.shape == (5, 9, 9)
    np.testing.assert_array_equal(by_name, by_layer)
    pooled = get_attention_weights(model, tokens, layer=pooling)
    assert pooled.shape == (5, 9)
    hidden = keras.Model(model.inputs[0], local.output)
    expected = numpy_reference.seq_weighted_attention(
        keras.ops.convert_to_numpy(hidden(tokens)),
        *pooling.get_weights(),
        mask=tokens != 0,
    )[1]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)


def test_unclear_or_wrong_layer(rng):
    model, _, _ = functional_with_two_layers()
    tokens = tokens_with_padding(rng)
    with pytest.raises(ValueError, match=r"2 attention layers.*layer="):
        get_attention_weights(model, tokens)
    with pytest.raises(ValueError, match="no `return_attention` argument"):
        get_attention_weights(model, tokens, layer=model.layers[-1].name)
    with pytest.raises(ValueError, match="one of the model's layers"):
        get_attention_weights(model, tokens, layer=SeqSelfAttention())
    with pytest.raises(ValueError, match="a layer, a layer name or `None`"):
        get_attention_weights(model, tokens, layer=3)
