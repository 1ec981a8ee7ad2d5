"""The fast paths (band, fused, blocked) agree with the dense formulas.

Each case runs the layer twice, once on the path it picks by itself and once
forced onto the dense path, and compares outputs and gradients.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import SeqSelfAttention, attention_ops
from tests import numpy_reference
from tests.gradients import layer_gradients
from tests.layer_checks import assert_fit_improves
from tests.test_seq_self_attention import make_inputs, randomize, reference

LENGTH = 9


def build(rng, **kwargs):
    layer = SeqSelfAttention(units=5, **kwargs)
    layer.build((None, None, 4))
    randomize(layer, rng)
    return layer


def forced_dense(layer):
    dense = SeqSelfAttention.from_config(layer.get_config())
    dense.build((None, None, 4))
    dense.set_weights(layer.get_weights())
    dense._attention_path = lambda inputs: "dense"
    return dense


def compare_with_dense(layer, x, mask, rng):
    cotangent = rng.standard_normal(x.shape).astype("float32")
    output, grads = layer_gradients(layer, x, mask, cotangent)
    expected_output, expected_grads = layer_gradients(
        forced_dense(layer), x, mask, cotangent
    )
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(expected_grads)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


BAND_CASES = list(
    itertools.product(
        ["additive", "multiplicative"],
        [1, 2, 3, 4, 8],
        [False, True],
        [False, True],
    )
)


@pytest.mark.parametrize("attention_type,width,history_only,padded", BAND_CASES)
def test_band_path_matches_dense(
    rng, attention_type, width, history_only, padded
):
    layer = build(
        rng,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
        attention_activation="sigmoid",
        attention_regularizer_weight=0.1,
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=padded)
    assert layer._attention_path(ops.convert_to_tensor(x)) == "band"
    compare_with_dense(layer, x, mask, rng)


@pytest.mark.parametrize("history_only", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_path_matches_dense(rng, history_only, padded):
    layer = build(
        rng, attention_type="multiplicative", history_only=history_only
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=padded)
    if padded:
        mask[1] = False  # a query with no key at all
        mask[2, :4] = False  # causal queries before the first real key
    assert layer._attention_path(ops.convert_to_tensor(x)) == "fused"
    compare_with_dense(layer, x, mask, rng)
    outputs, _, _ = reference(layer, x, mask)
    np.testing.assert_allclose(
        ops.convert_to_numpy(
            layer(x, mask=None if mask is None else ops.convert_to_tensor(mask))
        ),
        outputs,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("history_only", [False, True])
def test_blocked_additive_scores_match_one_block(
    rng, history_only, monkeypatch
):
    layer = build(
        rng, history_only=history_only, attention_regularizer_weight=0.1
    )
    x, mask = make_inputs(rng, length=LENGTH, padded=True)
    cotangent = rng.standard_normal(x.shape).astype("float32")
    whole = layer_gradients(layer, x, mask, cotangent)
    # One unit per block: the blocked sum and its recomputed gradient.
    monkeypatch.setattr(attention_ops, "ADDITIVE_BLOCK_ELEMENTS", 1)
    blocked = layer_gradients(layer, x, mask, cotangent)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-5, atol=1e-6)
    for grad, expected in zip(blocked[1], whole[1], strict=True):
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_path_choice():
    x = ops.zeros((2, 10, 4))
    add = SeqSelfAttention
    assert add(attention_width=3)._attention_path(x) == "band"
    assert add(attention_width=10)._attention_path(x) == "dense"
    assert add()._attention_path(x) == "dense"
    mul = dict(attention_type="multiplicative")
    assert add(**mul)._attention_path(x) == "fused"
    assert add(history_only=True, **mul)._attention_path(x) == "fused"
    assert add(return_attention=True, **mul)._attention_path(x) == "dense"
    assert add(attention_activation="tanh", **mul)._attention_path(x) == "dense"
    assert (
        add(attention_regularizer_weight=0.1, **mul)._attention_path(x)
        == "dense"
    )
    # A width as big as 0.51's stand-in for "no width" is never unrolled.
    symbolic = keras.KerasTensor((None, None, 4))
    assert (
        add(attention_width=10**9, history_only=True)._attention_path(symbolic)
        == "dense"
    )
    assert add(attention_width=15)._attention_path(symbolic) == "band"


@pytest.mark.parametrize(
    "width,history_only", [(1, False), (3, True), (4, False), (6, True)]
)
def test_band_regularization_equals_dense(rng, width, history_only):
    band = rng.random((2, 7, width)).astype("float32")
    allowed = ops.convert_to_numpy(
        attention_ops.band_allowed_keys(7, width, history_only)
    )
    band = band * allowed
    dense = attention_ops.band_to_dense(
        ops.convert_to_tensor(band), width, history_only
    )
    expected = ops.convert_to_numpy(
        attention_ops.attention_regularization(dense)
    )
    actual = ops.convert_to_numpy(
        attention_ops.band_attention_regularization(
            ops.convert_to_tensor(band), width, history_only
        )
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    # And the dense weights put each slot where the window rule says.
    dense = ops.convert_to_numpy(dense)
    for t in range(7):
        for s in range(7):
            inside = numpy_reference.is_allowed(t, s, width, history_only)
            if not inside:
                assert dense[:, t, s].tolist() == [0, 0]


def test_fused_path_trains_without_missing_gradients(rng):
    # `ba` cancels in the softmax, but it must stay in the graph: Keras warns
    # (an error under this suite's settings) about weights with no gradient.
    layer = SeqSelfAttention(attention_type="multiplicative")
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            layer,
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = rng.standard_normal((8, LENGTH, 4)).astype("float32")
    assert layer._attention_path(ops.convert_to_tensor(x)) == "fused"
    y = (x.sum(-1) > 0).astype("int32") + (x[..., 0] > 1)
    assert_fit_improves(model, x, y)
