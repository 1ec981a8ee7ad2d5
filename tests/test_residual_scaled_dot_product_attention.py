import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import (
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
)
from tests import numpy_reference
from tests.layer_checks import (
    assert_config_round_trip,
    assert_fit_improves,
    assert_save_and_load,
    tensor_mask,
    to_numpy,
)

BACKEND = keras.backend.backend()
INPUTS = ["self", "qkv"]
MASKS = ["none", "padded", "all_masked"]


def make_mask(batch_size, length, masking):
    if masking == "none":
        return None
    mask = np.ones((batch_size, length), dtype=bool)
    mask[0, length - 2 :] = False
    mask[1, :2] = False
    mask[2, ::3] = False
    if masking == "all_masked":
        mask[3] = False
    return mask


def make_inputs(rng, kind, masking, batch_size=4):
    """`(inputs, masks, reference)`, the reference's arguments in a tuple.

    `reference` is `(query, key, value, key_mask, previous, query_mask)`.
    """
    if kind == "self":
        x = rng.standard_normal((batch_size, 6, 4)).astype("float32")
        previous = rng.standard_normal((batch_size, 6, 6)).astype("float32")
        mask = make_mask(batch_size, 6, masking)
        masks = None if mask is None else [mask, None]
        return [x, previous], masks, (x, x, x, mask, previous, mask)
    query = rng.standard_normal((batch_size, 4, 3)).astype("float32")
    key = rng.standard_normal((batch_size, 6, 3)).astype("float32")
    value = rng.standard_normal((batch_size, 6, 5)).astype("float32")
    previous = rng.standard_normal((batch_size, 4, 6)).astype("float32")
    key_mask = make_mask(batch_size, 6, masking)
    masks = query_mask = None
    if key_mask is not None:
        query_mask = np.ones((batch_size, 4), dtype=bool)
        query_mask[:, -1] = False
        masks = [query_mask, key_mask, key_mask, None]
    return (
        [query, key, value, previous],
        masks,
        (query, key, value, key_mask, previous, query_mask),
    )


def call(layer, inputs, masks):
    if masks is not None:
        masks = [tensor_mask(m) for m in masks]
    return to_numpy(layer(inputs, mask=masks))


CASES = list(itertools.product(INPUTS, MASKS, [False, True], [False, True]))


@pytest.mark.parametrize(
    "kind,masking,history_only,return_attention",
    CASES,
    ids=[
        f"{k}-{m}-{'hist' if h else 'both'}-{'ret' if r else 'out'}"
        for k, m, h, r in CASES
    ],
)
def test_matches_numpy_reference(
    rng, kind, masking, history_only, return_attention
):
    inputs, masks, reference = make_inputs(rng, kind, masking)
    query, key, value, key_mask, previous, query_mask = reference
    layer = ResidualScaledDotProductAttention(
        history_only=history_only, return_attention=return_attention
    )
    expected = numpy_reference.scaled_dot_product_attention(
        query, key, value, key_mask, history_only, previous, query_mask
    )
    result = call(layer, inputs, masks)
    assert len(result) == (3 if return_attention else 2)
    for actual, want in zip(result, expected[: len(result)], strict=True):
        np.testing.assert_allclose(actual, want, rtol=1e-5, atol=1e-5)
    if masking == "all_masked":
        assert np.all(result[0][3] == 0)


def test_zero_previous_scores_match_scaled_dot_product_attention(rng):
    inputs, masks, _ = make_inputs(rng, "qkv", "padded")
    inputs[3] = np.zeros_like(inputs[3])
    outputs, scores, weights = call(
        ResidualScaledDotProductAttention(return_attention=True),
        inputs,
        masks,
    )
    expected = call(
        ScaledDotProductAttention(return_attention=True),
        inputs[:3],
        masks[:3],
    )
    np.testing.assert_allclose(outputs, expected[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(weights, expected[1], rtol=1e-6, atol=1e-6)
    # The scores are passed on unmasked, from padded steps read as zeros.
    query = np.where(masks[0][..., None], inputs[0], 0.0)
    key = np.where(masks[1][..., None], inputs[1], 0.0)
    np.testing.assert_allclose(
        scores, query @ key.transpose(0, 2, 1) / np.sqrt(3), rtol=1e-5
    )


def test_stacked_layers_pass_scores_on(rng):
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    first = ResidualScaledDotProductAttention(history_only=True)
    second = ResidualScaledDotProductAttention(history_only=True)
    masks = [ops.convert_to_tensor(mask), None]
    hidden, scores = first([x, np.zeros((2, 5, 5), "float32")], mask=masks)
    outputs, scores = to_numpy(second([hidden, scores], mask=masks))
    want_hidden, want_scores, _ = numpy_reference.scaled_dot_product_attention(
        x, x, x, mask, True, np.zeros((2, 5, 5)), mask
    )
    want, want_scores, _ = numpy_reference.scaled_dot_product_attention(
        want_hidden, want_hidden, want_hidden, mask, True, want_scores, mask
    )
    np.testing.assert_allclose(outputs, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("return_attention", [False, True])
def test_output_masks(rng, return_attention):
    inputs, masks, _ = make_inputs(rng, "qkv", "padded")
    layer = ResidualScaledDotProductAttention(return_attention=return_attention)
    output_masks = layer.compute_mask(inputs, [tensor_mask(m) for m in masks])
    assert len(output_masks) == (3 if return_attention else 2)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(output_masks[0]), masks[0]
    )
    assert all(m is None for m in output_masks[1:])
    assert layer.compute_mask(inputs, None)[0] is None


@pytest.mark.parametrize(
    "kwargs", [{"return_attention": "yes"}, {"history_only": 1}]
)
def test_invalid_arguments_raise_value_error(kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        ResidualScaledDotProductAttention(**kwargs)
    assert f"{name}={value!r}" in str(info.value)


@pytest.mark.parametrize(
    "shapes,message",
    [
        ([(2, 3, 4)], r"\[x, previous_scores\]"),
        ([(2, 3, 4)] * 3, r"\[x, previous_scores\]"),
        ([(2, 3, 4)] * 5, r"\[x, previous_scores\]"),
        ([(2, 3, 4), (2, 3)], "rank 3"),
        ([(2, 3, 4), (2, 3, 4)], r"\(batch_size, Tq, Tk\)"),
        ([(2, 3, 4), (2, 5, 4), (2, 5, 2), (2, 3, 4)], r"Tq, Tk"),
        ([(2, 3, 4), (2, 5, 3), (2, 5, 2), (2, 3, 5)], "same last dimension"),
    ],
)
def test_wrong_inputs_raise(shapes, message):
    inputs = [np.zeros(shape, "float32") for shape in shapes]
    with pytest.raises(ValueError, match=message):
        ResidualScaledDotProductAttention()(inputs)


def test_single_tensor_raises():
    with pytest.raises(ValueError, match="Received: one tensor"):
        ResidualScaledDotProductAttention()(np.zeros((2, 3, 4), "float32"))


@pytest.mark.parametrize("return_attention", [False, True])
def test_symbolic_call_with_unknown_lengths(return_attention):
    query = keras.Input(shape=(None, 4))
    key = keras.Input(shape=(None, 4))
    value = keras.Input(shape=(None, 6))
    previous = keras.Input(shape=(None, None))
    result = ResidualScaledDotProductAttention(
        return_attention=return_attention
    )([query, key, value, previous])
    expected = [(None, None, 6), (None, None, None), (None, None, None)]
    assert [tuple(t.shape) for t in result] == expected[: len(result)]
    model = keras.Model([query, key, value, previous], result)
    predicted = model.predict(
        [
            np.ones((2, 3, 4), "float32"),
            np.ones((2, 5, 4), "float32"),
            np.ones((2, 5, 6), "float32"),
            np.zeros((2, 3, 5), "float32"),
        ],
        verbose=0,
    )
    assert [p.shape for p in predicted] == [(2, 3, 6), (2, 3, 5), (2, 3, 5)][
        : len(result)
    ]


def realformer(masked=True):
    """Two residual attention layers, the scores passed from one to the next."""
    tokens = keras.Input(shape=(None,), dtype="int32")
    previous = keras.Input(shape=(None, None))
    x = keras.layers.Embedding(20, 6, mask_zero=masked)(tokens)
    x, scores = ResidualScaledDotProductAttention(history_only=True)(
        [x, previous]
    )
    x = keras.layers.Dense(6)(x)
    x, scores = ResidualScaledDotProductAttention()([x, scores])
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model([tokens, previous], outputs)


def token_data(rng, batch_size=8, length=6):
    tokens = rng.integers(1, 20, size=(batch_size, length)).astype("int32")
    tokens[: batch_size // 2, length - 2 :] = 0
    previous = np.zeros((batch_size, length, length), "float32")
    return [tokens, previous], tokens % 3


def test_fit_under_jit(rng):
    inputs, targets = token_data(rng)
    model = realformer()
    assert_fit_improves(model, inputs, targets, epochs=10)


@pytest.mark.parametrize("return_attention", [False, True])
def test_config_round_trip(return_attention):
    layer = ResidualScaledDotProductAttention(
        return_attention=return_attention, history_only=True, name="real"
    )
    rebuilt = assert_config_round_trip(layer)
    assert rebuilt.history_only and rebuilt.return_attention == return_attention


@pytest.mark.parametrize(
    "extension,masked", [(".keras", True), (".keras", False), (".h5", False)]
)
def test_save_and_load(rng, tmp_path, extension, masked):
    inputs, _ = token_data(rng)
    loaded = assert_save_and_load(
        realformer(masked=masked), inputs, tmp_path, extension
    )
    layers = [
        item
        for item in loaded.layers
        if isinstance(item, ResidualScaledDotProductAttention)
    ]
    assert [item.history_only for item in layers] == [True, False]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("return_attention", [False, True])
def test_mixed_precision(rng, policy, return_attention):
    keras.config.set_dtype_policy(policy)
    inputs, masks, _ = make_inputs(rng, "qkv", "all_masked")
    inputs = [ops.convert_to_tensor(x * 30) for x in inputs]
    layer = ResidualScaledDotProductAttention(
        history_only=True, return_attention=return_attention
    )
    result = layer(inputs, mask=[tensor_mask(m) for m in masks])
    compute_dtype = policy.split("_")[1]
    for tensor in result:
        assert keras.backend.standardize_dtype(tensor.dtype) == compute_dtype
        assert np.all(
            np.isfinite(ops.convert_to_numpy(ops.cast(tensor, "float32")))
        )
    assert np.all(ops.convert_to_numpy(ops.cast(result[0], "float32"))[3] == 0)


def test_custom_objects():
    assert ResidualScaledDotProductAttention.get_custom_objects() == {
        "ResidualScaledDotProductAttention": ResidualScaledDotProductAttention
    }
