import itertools
import os

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_self_attention import SeqSelfAttention
from tests import numpy_reference
from tests.layer_checks import assert_fit_improves

BACKEND = keras.backend.backend()
ATTENTION_TYPES = ["additive", "multiplicative"]
LENGTH = 7


def make_inputs(rng, batch_size=3, length=LENGTH, dim=4, padded=False):
    x = rng.standard_normal((batch_size, length, dim)).astype("float32")
    if not padded:
        return x, None
    mask = np.ones((batch_size, length), dtype=bool)
    mask[0, length - 2 :] = False  # trailing padding
    mask[1, :2] = False  # leading padding
    mask[2, ::3] = False  # holes
    return x, mask


def randomize(layer, rng):
    """Non-zero biases too, so that a bias dropped by mistake shows."""
    layer.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in layer.weights]
    )


def run_layer(layer, x, mask):
    result = layer(
        x, mask=None if mask is None else ops.convert_to_tensor(mask)
    )
    if layer.return_attention:
        return [ops.convert_to_numpy(r) for r in result]
    return [ops.convert_to_numpy(result)]


def reference(layer, x, mask):
    return numpy_reference.seq_self_attention(
        x,
        layer.get_weights(),
        attention_type=layer.attention_type,
        attention_width=layer.attention_width,
        history_only=layer.history_only,
        attention_activation=None
        if layer.attention_activation is None
        else keras.activations.serialize(layer.attention_activation),
        mask=mask,
        use_additive_bias=layer.use_additive_bias,
        use_attention_bias=layer.use_attention_bias,
    )


CASES = list(
    itertools.product(
        ATTENTION_TYPES,
        [None, 1, 2, 3, 4, 5, LENGTH + 3],
        [False, True],
        [None, "sigmoid"],
        [False, True],
        [False, True],
    )
)


@pytest.mark.parametrize(
    "attention_type,width,history_only,activation,padded,return_attention",
    CASES,
    ids=[
        f"{t[:3]}-w{w}-{'hist' if h else 'both'}-{a}-"
        f"{'pad' if p else 'full'}-{'ret' if r else 'out'}"
        for t, w, h, a, p, r in CASES
    ],
)
def test_matches_numpy_reference(
    rng,
    attention_type,
    width,
    history_only,
    activation,
    padded,
    return_attention,
):
    x, mask = make_inputs(rng, padded=padded)
    layer = SeqSelfAttention(
        units=5,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
        attention_activation=activation,
        return_attention=return_attention,
    )
    layer.build(x.shape)
    randomize(layer, rng)
    outputs, attention, _ = reference(layer, x, mask)
    result = run_layer(layer, x, mask)
    np.testing.assert_allclose(result[0], outputs, rtol=1e-5, atol=1e-5)
    if return_attention:
        np.testing.assert_allclose(result[1], attention, rtol=1e-5, atol=1e-5)
        if mask is not None:
            # The fix over 0.51: no query attends to a padded key.
            assert np.all(result[1].transpose(0, 2, 1)[~mask] == 0)


@pytest.mark.parametrize("use_additive_bias", [False, True])
@pytest.mark.parametrize("use_attention_bias", [False, True])
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_optional_biases(
    rng, attention_type, use_additive_bias, use_attention_bias
):
    x, mask = make_inputs(rng, padded=True)
    layer = SeqSelfAttention(
        units=3,
        attention_type=attention_type,
        use_additive_bias=use_additive_bias,
        use_attention_bias=use_attention_bias,
        attention_activation="tanh",
    )
    layer.build(x.shape)
    randomize(layer, rng)
    outputs, _, _ = reference(layer, x, mask)
    np.testing.assert_allclose(
        run_layer(layer, x, mask)[0], outputs, rtol=1e-5, atol=1e-5
    )


@settings(max_examples=30, deadline=None)
@given(
    batch_size=st.integers(1, 3),
    length=st.integers(1, 9),
    dim=st.integers(1, 5),
    attention_type=st.sampled_from(ATTENTION_TYPES),
    width=st.one_of(st.none(), st.integers(1, 12)),
    history_only=st.booleans(),
    seed=st.integers(0, 2**16),
    mask_density=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
)
def test_property_matches_reference(
    batch_size,
    length,
    dim,
    attention_type,
    width,
    history_only,
    seed,
    mask_density,
):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, length, dim)).astype("float32")
    mask = rng.random((batch_size, length)) >= mask_density
    layer = SeqSelfAttention(
        units=4,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
        return_attention=True,
    )
    layer.build(x.shape)
    randomize(layer, rng)
    outputs, attention, _ = reference(layer, x, mask)
    result, weights = run_layer(layer, x, mask)
    np.testing.assert_allclose(result, outputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, attention, rtol=1e-5, atol=1e-5)
    # Each row sums to one, or to zero when the query has no allowed key.
    sums = weights.sum(-1)
    assert np.all(np.isclose(sums, 1, atol=1e-5) | (sums == 0))


def test_fully_masked_sequence_gives_zeros_not_nan(rng):
    x, _ = make_inputs(rng)
    mask = np.zeros(x.shape[:2], dtype=bool)
    mask[1] = True
    layer = SeqSelfAttention(return_attention=True)
    outputs, weights = run_layer(layer, x, mask)
    assert np.all(outputs[0] == 0) and np.all(weights[0] == 0)
    assert np.all(np.isfinite(outputs)) and np.abs(outputs[1]).sum() > 0


@pytest.mark.parametrize(
    "attention_type,expected",
    [
        ("additive", ["Wt", "Wx", "bh", "Wa", "ba"]),
        ("multiplicative", ["Wa", "ba"]),
    ],
)
def test_weight_order_and_shapes(attention_type, expected):
    layer = SeqSelfAttention(units=6, attention_type=attention_type)
    layer.build((None, None, 4))
    assert [w.path.split("/")[-1] for w in layer.weights] == expected
    shapes = {
        "additive": [(4, 6), (4, 6), (6,), (6, 1), (1,)],
        "multiplicative": [(4, 4), (1,)],
    }[attention_type]
    assert [tuple(w.shape) for w in layer.weights] == shapes


def test_weights_without_biases():
    layer = SeqSelfAttention(
        units=6, use_additive_bias=False, use_attention_bias=False
    )
    layer.build((None, None, 4))
    assert [tuple(w.shape) for w in layer.weights] == [(4, 6), (4, 6), (6, 1)]


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_attention_regularizer_loss(rng, attention_type):
    x, mask = make_inputs(rng, padded=True)
    layer = SeqSelfAttention(
        units=3,
        attention_type=attention_type,
        attention_regularizer_weight=0.25,
    )
    layer.build(x.shape)
    randomize(layer, rng)
    _, _, regularization = reference(layer, x, mask)
    run_layer(layer, x, mask)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.losses[0]), 0.25 * regularization, rtol=1e-5
    )


def test_kernel_and_bias_regularizers_and_constraints():
    layer = SeqSelfAttention(
        units=2,
        kernel_regularizer="l2",
        bias_regularizer="l1",
        kernel_constraint="non_neg",
        bias_constraint="unit_norm",
    )
    layer.build((None, None, 3))
    # One loss per weight: 3 kernels and 2 biases.
    assert len(layer.losses) == 5
    for weight in layer.weights:
        expected = (
            "UnitNorm"
            if weight.path.split("/")[-1].startswith("b")
            else "NonNeg"
        )
        assert type(weight.constraint).__name__ == expected


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"units": 0}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": True}, "units"),
        ({"attention_width": 0}, "attention_width"),
        ({"attention_width": -3}, "attention_width"),
        ({"attention_width": 2.0}, "attention_width"),
        ({"attention_type": "dot"}, "attention_type"),
        ({"return_attention": "yes"}, "return_attention"),
        ({"history_only": 1}, "history_only"),
        ({"use_additive_bias": None}, "use_additive_bias"),
        ({"use_attention_bias": "no"}, "use_attention_bias"),
        (
            {"attention_regularizer_weight": -1e-4},
            "attention_regularizer_weight",
        ),
        (
            {"attention_regularizer_weight": "big"},
            "attention_regularizer_weight",
        ),
        (
            {"attention_regularizer_weight": float("nan")},
            "attention_regularizer_weight",
        ),
        (
            {"attention_activation": "no_such_activation"},
            "attention_activation",
        ),
        ({"kernel_initializer": "no_such_init"}, "kernel_initializer"),
        ({"bias_initializer": 3}, "bias_initializer"),
        ({"kernel_regularizer": "no_such_reg"}, "kernel_regularizer"),
        ({"bias_regularizer": "no_such_reg"}, "bias_regularizer"),
        ({"kernel_constraint": "no_such_constraint"}, "kernel_constraint"),
        ({"bias_constraint": "no_such_constraint"}, "bias_constraint"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, argument):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"`{argument}`") as info:
        SeqSelfAttention(**kwargs)
    assert f"{name}={value!r}" in str(info.value)


@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 3, 1), (5,)])
def test_wrong_rank_raises(shape):
    with pytest.raises(ValueError, match=r"\(batch_size, T, dim\)"):
        SeqSelfAttention()(np.zeros(shape, dtype="float32"))


def test_unknown_feature_dimension_raises():
    with pytest.raises(ValueError, match="known `dim`"):
        SeqSelfAttention().build((None, None, None))


def test_class_constants_and_custom_objects():
    assert SeqSelfAttention.ATTENTION_TYPE_ADD == "additive"
    assert SeqSelfAttention.ATTENTION_TYPE_MUL == "multiplicative"
    assert SeqSelfAttention.get_custom_objects() == {
        "SeqSelfAttention": SeqSelfAttention
    }


def test_defaults_match_051():
    layer = SeqSelfAttention()
    config = layer.get_config()
    expected = {
        "units": 32,
        "attention_width": None,
        "attention_type": "additive",
        "return_attention": False,
        "history_only": False,
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
        "use_additive_bias": True,
        "use_attention_bias": True,
        "attention_activation": None,
        "attention_regularizer_weight": 0.0,
    }
    assert {k: config[k] for k in expected} == expected
    assert config["kernel_initializer"]["class_name"] == "GlorotNormal"
    assert config["bias_initializer"]["class_name"] == "Zeros"


# ----------------------------------------------------------- layer protocol


FULL_CONFIG = dict(
    units=7,
    attention_width=4,
    attention_type="multiplicative",
    return_attention=True,
    history_only=True,
    kernel_initializer=keras.initializers.RandomUniform(-0.2, 0.3, seed=1),
    bias_initializer="ones",
    kernel_regularizer=keras.regularizers.L1L2(0.1, 0.2),
    bias_regularizer="l2",
    kernel_constraint=keras.constraints.MaxNorm(2.0),
    bias_constraint="non_neg",
    use_additive_bias=False,
    use_attention_bias=False,
    attention_activation="softplus",
    attention_regularizer_weight=1e-3,
    name="attention",
)


@pytest.mark.parametrize("kwargs", [{}, FULL_CONFIG], ids=["defaults", "all"])
def test_config_round_trip(kwargs):
    layer = SeqSelfAttention(**kwargs)
    config = layer.get_config()
    rebuilt = SeqSelfAttention.from_config(config)
    assert rebuilt.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert (
        serialized["registered_name"] == "keras_self_attention>SeqSelfAttention"
    )
    again = keras.saving.deserialize_keras_object(serialized)
    assert again.get_config() == config


def tagging_model(return_attention=False, masked=True, **kwargs):
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(20, 6, mask_zero=masked)(tokens)
    x = keras.layers.LSTM(6, return_sequences=True)(x)
    result = SeqSelfAttention(
        units=4, return_attention=return_attention, **kwargs
    )(x)
    x = result[0] if return_attention else result
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    if return_attention:
        return keras.Model(tokens, [outputs, result[1]])
    return keras.Model(tokens, outputs)


def tagging_data(rng, batch_size=8, length=6):
    tokens = rng.integers(1, 20, size=(batch_size, length)).astype("int32")
    tokens[: batch_size // 2, length - 2 :] = 0
    return tokens, tokens % 3


@pytest.mark.parametrize("return_attention", [False, True])
def test_symbolic_call_with_unknown_length(return_attention):
    inputs = keras.Input(shape=(None, 5))
    layer = SeqSelfAttention(return_attention=return_attention)
    result = layer(inputs)
    if return_attention:
        outputs, weights = result
        assert tuple(weights.shape) == (None, None, None)
    else:
        outputs = result
    assert tuple(outputs.shape) == (None, None, 5)
    model = keras.Model(inputs, result)
    for length in (3, 8):
        x = np.ones((2, length, 5), dtype="float32")
        predicted = model.predict(x, verbose=0)
        predicted = predicted if return_attention else [predicted]
        assert predicted[0].shape == (2, length, 5)
        if return_attention:
            assert predicted[1].shape == (2, length, length)


@pytest.mark.parametrize("return_attention", [False, True])
def test_output_mask_is_input_mask(rng, return_attention):
    x = rng.standard_normal((2, 4, 3)).astype("float32")
    mask = ops.convert_to_tensor(np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool))
    layer = SeqSelfAttention(return_attention=return_attention)
    output_mask = layer.compute_mask(x, mask)
    if return_attention:
        assert output_mask[1] is None
        output_mask = output_mask[0]
    np.testing.assert_array_equal(
        ops.convert_to_numpy(output_mask), ops.convert_to_numpy(mask)
    )


def test_mask_from_embedding_matches_explicit_mask(rng):
    tokens, _ = tagging_data(rng)
    embedding = keras.layers.Embedding(
        20, 4, mask_zero=True, embeddings_initializer="random_normal"
    )
    attention = SeqSelfAttention(units=3, kernel_initializer="ones")
    through_model = ops.convert_to_numpy(attention(embedding(tokens)))
    explicit = ops.convert_to_numpy(
        attention(embedding(tokens), mask=ops.convert_to_tensor(tokens != 0))
    )
    unmasked = ops.convert_to_numpy(
        attention(embedding(tokens), mask=ops.ones(tokens.shape, "bool"))
    )
    np.testing.assert_allclose(through_model, explicit, rtol=1e-6, atol=1e-6)
    assert not np.allclose(through_model, unmasked, atol=1e-4)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_fit_under_jit(rng, attention_type):
    tokens, targets = tagging_data(rng)
    model = tagging_model(
        attention_type=attention_type,
        attention_width=3,
        attention_regularizer_weight=1e-2,
    )
    assert_fit_improves(model, tokens, targets, epochs=15)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_mixed_precision(rng, policy, attention_type):
    keras.config.set_dtype_policy(policy)
    x, mask = make_inputs(rng, padded=True)
    mask[0] = False  # a fully padded sequence too
    layer = SeqSelfAttention(
        units=4,
        attention_type=attention_type,
        attention_width=3,
        return_attention=True,
        attention_regularizer_weight=0.1,
    )
    outputs, weights = layer(
        ops.convert_to_tensor(x * 300), mask=ops.convert_to_tensor(mask)
    )
    compute_dtype = policy.split("_")[1]
    assert ops.convert_to_numpy(outputs).dtype == np.dtype(compute_dtype)
    assert keras.backend.standardize_dtype(weights.dtype) == compute_dtype
    assert all(w.dtype == "float32" for w in layer.weights)
    for tensor in (outputs, weights, layer.losses[0]):
        assert np.all(
            np.isfinite(ops.convert_to_numpy(ops.cast(tensor, "float32")))
        )
    assert np.all(ops.convert_to_numpy(ops.cast(weights, "float32"))[0] == 0)


def test_mixed_precision_training(rng):
    keras.config.set_dtype_policy("mixed_float16")
    tokens, targets = tagging_data(rng)
    model = tagging_model(attention_regularizer_weight=1e-2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(tokens, targets, epochs=3, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("extension", [".keras", ".h5"])
@pytest.mark.parametrize("custom_objects", [False, True])
def test_save_and_load(rng, tmp_path, extension, custom_objects):
    tokens, targets = tagging_data(rng)
    model = tagging_model(
        return_attention=True,
        # Keras 3 itself cannot reload any model that consumes a mask from
        # .h5 ("Unknown layer: 'NotEqual'"), with or without this package.
        masked=extension == ".keras",
        attention_width=3,
        attention_activation="sigmoid",
        kernel_regularizer="l2",
    )
    model.compile(
        optimizer="adam", loss=["sparse_categorical_crossentropy", None]
    )
    model.fit(tokens, [targets, np.zeros((8, 6, 6))], epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model" + extension)
    model.save(path)
    loaded = keras.models.load_model(
        path,
        custom_objects=SeqSelfAttention.get_custom_objects()
        if custom_objects
        else None,
    )
    for expected, actual in zip(
        model.predict(tokens, verbose=0),
        loaded.predict(tokens, verbose=0),
        strict=True,
    ):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    layer = next(
        item for item in loaded.layers if isinstance(item, SeqSelfAttention)
    )
    assert layer.attention_width == 3 and layer.return_attention


def test_weights_round_trip(rng, tmp_path):
    model = tagging_model()
    path = os.path.join(tmp_path, "model.weights.h5")
    model.save_weights(path)
    other = tagging_model()
    other.load_weights(path)
    tokens, _ = tagging_data(rng)
    np.testing.assert_allclose(
        other.predict(tokens, verbose=0),
        model.predict(tokens, verbose=0),
        atol=1e-6,
    )
