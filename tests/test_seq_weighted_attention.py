import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import SeqWeightedAttention
from tests import numpy_reference
from tests.layer_checks import (
    assert_config_round_trip,
    assert_fit_improves,
    assert_input_gradient_matches,
    assert_save_and_load,
    randomize,
    tensor_mask,
    to_numpy,
)

BACKEND = keras.backend.backend()
MASKS = ["none", "padded", "all_masked"]


def make_inputs(rng, masking, batch_size=3, length=6, dim=4):
    x = rng.standard_normal((batch_size, length, dim)).astype("float32")
    if masking == "none":
        return x, None
    mask = np.ones((batch_size, length), dtype=bool)
    mask[0, length - 2 :] = False  # trailing padding
    mask[1, ::2] = False  # holes
    if masking == "all_masked":
        mask[2] = False
    return x, mask


def reference(layer, x, mask):
    weights = layer.get_weights()
    return numpy_reference.seq_weighted_attention(
        x, weights[0], weights[1] if layer.use_bias else None, mask
    )


@pytest.mark.parametrize("return_attention", [False, True])
@pytest.mark.parametrize("masking", MASKS)
@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_numpy_reference(rng, use_bias, masking, return_attention):
    x, mask = make_inputs(rng, masking)
    layer = SeqWeightedAttention(
        use_bias=use_bias, return_attention=return_attention
    )
    layer.build(x.shape)
    randomize(layer, rng)
    outputs, weights = reference(layer, x, mask)
    result = to_numpy(layer(x, mask=tensor_mask(mask)))
    assert len(result) == (2 if return_attention else 1)
    np.testing.assert_allclose(result[0], outputs, rtol=1e-5, atol=1e-5)
    if return_attention:
        np.testing.assert_allclose(result[1], weights, rtol=1e-5, atol=1e-5)


def test_fully_masked_sequence_gives_zeros_not_nan(rng):
    x, mask = make_inputs(rng, "all_masked")
    outputs, weights = to_numpy(
        SeqWeightedAttention(return_attention=True)(
            x, mask=ops.convert_to_tensor(mask)
        )
    )
    assert np.all(outputs[2] == 0) and np.all(weights[2] == 0)
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(weights[:2].sum(-1), 1, atol=1e-6)
    assert np.all(weights[~mask] == 0)


@pytest.mark.parametrize("masking", MASKS)
def test_input_gradient_matches_numeric(rng, masking):
    x, mask = make_inputs(rng, masking, batch_size=3, length=4, dim=3)
    layer = SeqWeightedAttention()
    layer.build(x.shape)
    randomize(layer, rng)
    assert_input_gradient_matches(
        layer, lambda value: reference(layer, value, mask)[0], x, mask, rng
    )


@pytest.mark.parametrize(
    "use_bias,expected", [(True, ["W", "b"]), (False, ["W"])]
)
def test_weight_order_and_shapes(use_bias, expected):
    layer = SeqWeightedAttention(use_bias=use_bias)
    layer.build((None, None, 5))
    assert [w.path.split("/")[-1] for w in layer.weights] == expected
    assert [tuple(w.shape) for w in layer.weights] == [(5, 1), (1,)][
        : len(expected)
    ]


@pytest.mark.parametrize(
    "kwargs", [{"use_bias": "yes"}, {"return_attention": 1}]
)
def test_invalid_arguments_raise_value_error(kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"`{name}`") as info:
        SeqWeightedAttention(**kwargs)
    assert f"{name}={value!r}" in str(info.value)


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 3, 1), (None, None, None)])
def test_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match=r"\(batch_size, T, dim\)"):
        SeqWeightedAttention().build(shape)


@pytest.mark.parametrize("return_attention", [False, True])
def test_no_output_mask(rng, return_attention):
    x, mask = make_inputs(rng, "padded")
    layer = SeqWeightedAttention(return_attention=return_attention)
    expected = (None, None) if return_attention else None
    assert layer.compute_mask(x, ops.convert_to_tensor(mask)) == expected


@pytest.mark.parametrize("return_attention", [False, True])
def test_symbolic_call_with_unknown_length(return_attention):
    inputs = keras.Input(shape=(None, 5))
    result = SeqWeightedAttention(return_attention=return_attention)(inputs)
    shapes = [
        tuple(t.shape) for t in (result if return_attention else [result])
    ]
    assert shapes == [(None, 5), (None, None)][: len(shapes)]
    model = keras.Model(inputs, result)
    for length in (3, 8):
        predicted = to_numpy(
            model.predict(np.ones((2, length, 5), "float32"), verbose=0)
        )
        assert [p.shape for p in predicted] == [(2, 5), (2, length)][
            : len(shapes)
        ]


def classifier(masked=True, return_attention=False):
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(20, 6, mask_zero=masked)(tokens)
    x = keras.layers.LSTM(6, return_sequences=True)(x)
    result = SeqWeightedAttention(return_attention=return_attention)(x)
    pooled = result[0] if return_attention else result
    outputs = keras.layers.Dense(3, activation="softmax")(pooled)
    if return_attention:
        return keras.Model(tokens, [outputs, result[1]])
    return keras.Model(tokens, outputs)


def token_data(rng, batch_size=8, length=6):
    tokens = rng.integers(1, 20, size=(batch_size, length)).astype("int32")
    tokens[: batch_size // 2, length - 2 :] = 0
    return tokens, tokens[:, 0] % 3


def test_mask_from_embedding_is_applied(rng):
    tokens, _ = token_data(rng)
    _, weights = to_numpy(
        classifier(return_attention=True).predict(tokens, verbose=0)
    )
    assert np.all(weights[tokens == 0] == 0)
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-5)


def test_fit_under_jit(rng):
    tokens, targets = token_data(rng)
    model = classifier()
    assert_fit_improves(model, tokens, targets, epochs=10)


@pytest.mark.parametrize("return_attention", [False, True])
def test_config_round_trip(return_attention):
    layer = SeqWeightedAttention(
        use_bias=False, return_attention=return_attention, name="pool"
    )
    rebuilt = assert_config_round_trip(layer)
    assert rebuilt.return_attention == return_attention
    assert not rebuilt.use_bias


@pytest.mark.parametrize(
    "extension,masked", [(".keras", True), (".keras", False), (".h5", False)]
)
def test_save_and_load(rng, tmp_path, extension, masked):
    tokens, _ = token_data(rng)
    model = classifier(masked=masked, return_attention=True)
    loaded = assert_save_and_load(model, tokens, tmp_path, extension)
    layer = [
        item for item in loaded.layers if isinstance(item, SeqWeightedAttention)
    ]
    assert layer[0].return_attention


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(rng, policy):
    keras.config.set_dtype_policy(policy)
    x, mask = make_inputs(rng, "all_masked")
    layer = SeqWeightedAttention(return_attention=True)
    outputs, weights = layer(
        ops.convert_to_tensor(x * 300), mask=ops.convert_to_tensor(mask)
    )
    compute_dtype = policy.split("_")[1]
    for tensor in (outputs, weights):
        assert keras.backend.standardize_dtype(tensor.dtype) == compute_dtype
        values = ops.convert_to_numpy(ops.cast(tensor, "float32"))
        assert np.all(np.isfinite(values)) and np.all(values[2] == 0)
    assert all(w.dtype == "float32" for w in layer.weights)


def test_custom_objects():
    assert SeqWeightedAttention.get_custom_objects() == {
        "SeqWeightedAttention": SeqWeightedAttention
    }
