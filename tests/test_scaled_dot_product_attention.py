import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import ScaledDotProductAttention
from tests import numpy_reference
from tests.layer_checks import (
    assert_config_round_trip,
    assert_fit_improves,
    assert_input_gradient_matches,
    assert_save_and_load,
    tensor_mask,
    to_numpy,
)

BACKEND = keras.backend.backend()
# "self": one input; "qkv": three inputs, values as wide as the queries (the
# fused op); "qkv_wide": values wider than the queries (the dense path).
INPUTS = ["self", "qkv", "qkv_wide"]
MASKS = ["none", "padded", "all_masked"]


def make_mask(batch_size, length, masking):
    if masking == "none":
        return None
    mask = np.ones((batch_size, length), dtype=bool)
    mask[0, length - 2 :] = False  # trailing padding
    mask[1, :2] = False  # leading padding: early causal queries see nothing
    mask[2, ::3] = False  # holes
    if masking == "all_masked":
        mask[3] = False
    return mask


def make_inputs(rng, kind, masking, batch_size=4):
    """`(inputs, mask, (query, key, value, key_mask, query_mask))`."""
    if kind == "self":
        x = rng.standard_normal((batch_size, 6, 4)).astype("float32")
        mask = make_mask(batch_size, 6, masking)
        return x, mask, (x, x, x, mask, mask)
    query = rng.standard_normal((batch_size, 4, 3)).astype("float32")
    key = rng.standard_normal((batch_size, 6, 3)).astype("float32")
    width = 5 if kind == "qkv_wide" else 3
    value = rng.standard_normal((batch_size, 6, width)).astype("float32")
    key_mask = make_mask(batch_size, 6, masking)
    mask = query_mask = None
    if key_mask is not None:
        # Keys are masked; padded queries are only read as zeros.
        query_mask = np.ones((batch_size, 4), dtype=bool)
        query_mask[:, -1] = False
        mask = [query_mask, key_mask, key_mask]
    return (
        [query, key, value],
        mask,
        (query, key, value, key_mask, query_mask),
    )


def call(layer, inputs, mask):
    if isinstance(mask, list):
        return to_numpy(layer(inputs, mask=[tensor_mask(m) for m in mask]))
    return to_numpy(layer(inputs, mask=tensor_mask(mask)))


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
    inputs, mask, (query, key, value, key_mask, query_mask) = make_inputs(
        rng, kind, masking
    )
    layer = ScaledDotProductAttention(
        history_only=history_only, return_attention=return_attention
    )
    outputs, _, weights = numpy_reference.scaled_dot_product_attention(
        query, key, value, key_mask, history_only, query_mask=query_mask
    )
    result = call(layer, inputs, mask)
    assert len(result) == (2 if return_attention else 1)
    np.testing.assert_allclose(result[0], outputs, rtol=1e-5, atol=1e-5)
    if return_attention:
        np.testing.assert_allclose(result[1], weights, rtol=1e-5, atol=1e-5)
    if masking == "all_masked":
        assert np.all(result[0][3] == 0)
    assert np.all(np.isfinite(result[0]))


@pytest.mark.parametrize("history_only", [False, True])
@pytest.mark.parametrize("masking", MASKS)
def test_input_gradient_matches_numeric(rng, masking, history_only):
    """Through the fused op, whose gradient must match the formula too."""
    x = rng.standard_normal((4, 5, 3)).astype("float32")
    mask = make_mask(4, 5, masking)
    layer = ScaledDotProductAttention(history_only=history_only)

    def reference(value):
        return numpy_reference.scaled_dot_product_attention(
            value, value, value, mask, history_only, query_mask=mask
        )[0]

    assert_input_gradient_matches(layer, reference, x, mask, rng)


@pytest.mark.parametrize("return_attention", [False, True])
def test_output_mask_is_query_mask(rng, return_attention):
    inputs, mask, _ = make_inputs(rng, "qkv", "padded")
    layer = ScaledDotProductAttention(return_attention=return_attention)
    masks = [ops.convert_to_tensor(m) for m in mask]
    output_mask = layer.compute_mask(inputs, masks)
    if return_attention:
        assert output_mask[1] is None
        output_mask = output_mask[0]
    np.testing.assert_array_equal(ops.convert_to_numpy(output_mask), mask[0])
    x, self_mask, _ = make_inputs(rng, "self", "padded")
    self_output_mask = ScaledDotProductAttention().compute_mask(
        x, ops.convert_to_tensor(self_mask)
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(self_output_mask), self_mask
    )
    assert layer.compute_mask(inputs, None) == (
        (None, None) if return_attention else None
    )


def test_has_no_weights(rng):
    layer = ScaledDotProductAttention()
    layer(rng.standard_normal((2, 3, 4)).astype("float32"))
    assert layer.weights == []


@pytest.mark.parametrize(
    "kwargs", [{"return_attention": "yes"}, {"history_only": 1}]
)
def test_invalid_arguments_raise_value_error(kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        ScaledDotProductAttention(**kwargs)
    assert f"{name}={value!r}" in str(info.value)


@pytest.mark.parametrize(
    "shapes,message",
    [
        ([(2, 3, 4), (2, 3, 4)], r"\[query, key, value\]"),
        ([(2, 3, 4)] * 4, r"\[query, key, value\]"),
        ([(2, 3)] * 3, "rank 3"),
        ([(2, 3, 4), (2, 3, 4, 1), (2, 3, 4)], "rank 3"),
        ([(2, 3, 4), (2, 3, 5), (2, 3, 5)], "same last dimension"),
        ([(2, 3, 4), (2, 3, 4), (2, 5, 4)], "as many values as keys"),
    ],
)
def test_wrong_inputs_raise(shapes, message):
    inputs = [np.zeros(shape, "float32") for shape in shapes]
    with pytest.raises(ValueError, match=message):
        ScaledDotProductAttention()(inputs)


def test_wrong_rank_and_unknown_dimension_raise():
    with pytest.raises(ValueError, match="rank 3"):
        ScaledDotProductAttention()(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="known last dimension"):
        ScaledDotProductAttention().build((None, None, None))


@pytest.mark.parametrize("return_attention", [False, True])
def test_symbolic_call_with_unknown_lengths(return_attention):
    query = keras.Input(shape=(None, 4))
    key = keras.Input(shape=(None, 4))
    value = keras.Input(shape=(None, 6))
    layer = ScaledDotProductAttention(return_attention=return_attention)
    result = layer([query, key, value])
    shapes = [
        tuple(t.shape) for t in (result if return_attention else [result])
    ]
    assert shapes == [(None, None, 6), (None, None, None)][: len(shapes)]
    model = keras.Model([query, key, value], result)
    for query_length, key_length in ((2, 5), (7, 3)):
        predicted = to_numpy(
            model.predict(
                [
                    np.ones((2, query_length, 4), "float32"),
                    np.ones((2, key_length, 4), "float32"),
                    np.ones((2, key_length, 6), "float32"),
                ],
                verbose=0,
            )
        )
        expected = [(2, query_length, 6), (2, query_length, key_length)]
        assert [p.shape for p in predicted] == expected[: len(shapes)]


def test_symbolic_self_attention_with_unknown_length():
    inputs = keras.Input(shape=(None, 4))
    outputs = ScaledDotProductAttention(history_only=True)(inputs)
    assert tuple(outputs.shape) == (None, None, 4)
    model = keras.Model(inputs, outputs)
    for length in (3, 8):
        x = np.ones((2, length, 4), "float32")
        assert model.predict(x, verbose=0).shape == (2, length, 4)


def tagging_model(masked=True, history_only=False):
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(20, 6, mask_zero=masked)(tokens)
    x = ScaledDotProductAttention(history_only=history_only)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(tokens, outputs)


def token_data(rng, batch_size=8, length=6):
    tokens = rng.integers(1, 20, size=(batch_size, length)).astype("int32")
    tokens[: batch_size // 2, length - 2 :] = 0
    return tokens, tokens % 3


def test_mask_from_embedding_matches_explicit_mask(rng):
    tokens, _ = token_data(rng)
    embedding = keras.layers.Embedding(20, 4, mask_zero=True)
    layer = ScaledDotProductAttention()
    through_model = ops.convert_to_numpy(layer(embedding(tokens)))
    explicit = ops.convert_to_numpy(
        layer(embedding(tokens), mask=ops.convert_to_tensor(tokens != 0))
    )
    np.testing.assert_allclose(through_model, explicit, rtol=1e-6, atol=1e-6)


def test_fit_under_jit(rng):
    tokens, targets = token_data(rng)
    model = tagging_model(history_only=True)
    assert_fit_improves(model, tokens, targets, epochs=10)


@pytest.mark.parametrize("return_attention", [False, True])
def test_config_round_trip(return_attention):
    layer = ScaledDotProductAttention(
        return_attention=return_attention, history_only=True, name="sdpa"
    )
    rebuilt = assert_config_round_trip(layer)
    assert rebuilt.history_only and rebuilt.return_attention == return_attention


@pytest.mark.parametrize(
    "extension,masked", [(".keras", True), (".keras", False), (".h5", False)]
)
def test_save_and_load(rng, tmp_path, extension, masked):
    tokens, _ = token_data(rng)
    loaded = assert_save_and_load(
        tagging_model(masked=masked, history_only=True),
        tokens,
        tmp_path,
        extension,
    )
    layer = [
        item
        for item in loaded.layers
        if isinstance(item, ScaledDotProductAttention)
    ]
    assert layer[0].history_only


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("return_attention", [False, True])
def test_mixed_precision(rng, policy, kind, return_attention):
    keras.config.set_dtype_policy(policy)
    inputs, mask, _ = make_inputs(rng, kind, "all_masked")
    if isinstance(inputs, list):
        inputs = [ops.convert_to_tensor(x * 100) for x in inputs]
        mask = [ops.convert_to_tensor(m) for m in mask]
    else:
        inputs, mask = (
            ops.convert_to_tensor(inputs * 100),
            ops.convert_to_tensor(mask),
        )
    layer = ScaledDotProductAttention(
        history_only=True, return_attention=return_attention
    )
    result = layer(inputs, mask=mask)
    result = result if return_attention else [result]
    compute_dtype = policy.split("_")[1]
    for tensor in result:
        assert keras.backend.standardize_dtype(tensor.dtype) == compute_dtype
        values = ops.convert_to_numpy(ops.cast(tensor, "float32"))
        assert np.all(np.isfinite(values)) and np.all(values[3] == 0)


def test_custom_objects():
    assert ScaledDotProductAttention.get_custom_objects() == {
        "ScaledDotProductAttention": ScaledDotProductAttention
    }
