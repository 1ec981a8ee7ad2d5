import inspect

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import MultiHead, SeqSelfAttention
from tests.layer_checks import (
    assert_config_round_trip,
    assert_fit_improves,
    assert_save_and_load,
    randomize,
    tensor_mask,
    to_numpy,
)

BACKEND = keras.backend.backend()
HEADS = {
    "seq_self_attention": lambda: SeqSelfAttention(units=3, attention_width=3),
    "lstm": lambda: keras.layers.LSTM(3, return_sequences=True),
    "conv1d": lambda: keras.layers.Conv1D(3, 3, padding="same"),
}
# The last feature dimension of each head's output for an input of width 4
# (SeqSelfAttention keeps its input's width).
OUTPUT_DIM = {"seq_self_attention": None, "lstm": 3, "conv1d": 3}


def make_inputs(rng, masked, batch_size=3, length=6, dim=5):
    x = rng.standard_normal((batch_size, length, dim)).astype("float32")
    if not masked:
        return x, None
    mask = np.ones((batch_size, length), dtype=bool)
    mask[0, length - 2 :] = False
    mask[1, ::2] = False
    mask[2] = False  # all padding
    return x, mask


def run_head_alone(head, inputs, mask):
    kwargs = {}
    if mask is not None and "mask" in inspect.signature(head.call).parameters:
        kwargs["mask"] = ops.convert_to_tensor(mask)
    return ops.convert_to_numpy(head(inputs, **kwargs))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("hidden_dim", [None, 4])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_each_head_is_its_layer_alone(rng, head, hidden_dim, masked):
    x, mask = make_inputs(rng, masked)
    layer = MultiHead(HEADS[head](), layer_num=3, hidden_dim=hidden_dim)
    layer.build(x.shape)
    randomize(layer, rng)
    outputs = to_numpy(layer(x, mask=tensor_mask(mask)))[0]
    width = OUTPUT_DIM[head] or hidden_dim or x.shape[-1]
    assert outputs.shape == (*x.shape[:2], width, 3)
    for i, inner in enumerate(layer.layers):
        inputs = x
        if hidden_dim is not None:
            kernel, bias = layer.get_weights()[:2]
            columns = slice(i * hidden_dim, (i + 1) * hidden_dim)
            inputs = x @ kernel[:, columns] + bias[columns]
        np.testing.assert_allclose(
            outputs[..., i],
            run_head_alone(inner, inputs, mask),
            rtol=1e-5,
            atol=1e-5,
        )
    # Each head has weights of its own.
    assert not np.allclose(outputs[..., 0], outputs[..., 1])


def test_copies_are_named_clones(rng):
    original = SeqSelfAttention(units=3, attention_width=2, name="att")
    layer = MultiHead(original, layer_num=3)
    assert [h.name for h in layer.layers] == ["att_1", "att_2", "att_3"]
    assert all(h is not original for h in layer.layers)
    config = {k: v for k, v in original.get_config().items() if k != "name"}
    for head in layer.layers:
        assert {
            k: v for k, v in head.get_config().items() if k != "name"
        } == config
    layer(rng.standard_normal((2, 4, 5)).astype("float32"))
    assert not original.built
    assert len(layer.weights) == 3 * 5


class Doubling(keras.layers.Layer):
    """A head with only `call`: no `compute_output_shape`, no mask."""

    def call(self, inputs):
        return inputs * 2


def test_heads_with_only_call(rng):
    inputs = keras.Input(shape=(None, 5))
    outputs = MultiHead(Doubling(), layer_num=2, hidden_dim=3)(inputs)
    assert tuple(outputs.shape) == (None, None, 3, 2)
    x = rng.standard_normal((2, 4, 5)).astype("float32")
    predicted = keras.Model(inputs, outputs).predict(x, verbose=0)
    assert predicted.shape == (2, 4, 3, 2)


def test_list_of_layers_is_used_as_given(rng):
    convs = [keras.layers.Conv1D(3, size, padding="same") for size in (1, 3, 5)]
    layer = MultiHead(convs)
    assert layer.layer_num == 3 and all(
        head is conv for head, conv in zip(layer.layers, convs, strict=True)
    )
    x = rng.standard_normal((2, 6, 4)).astype("float32")
    outputs = ops.convert_to_numpy(layer(x))
    assert outputs.shape == (2, 6, 3, 3)
    for i, conv in enumerate(convs):
        np.testing.assert_allclose(
            outputs[..., i], ops.convert_to_numpy(conv(x)), atol=1e-6
        )


@pytest.mark.parametrize(
    "use_bias,expected",
    [(True, [("W", (5, 8)), ("b", (8,))]), (False, [("W", (5, 8))])],
)
def test_projection_weights(use_bias, expected):
    layer = MultiHead(
        keras.layers.Conv1D(3, 1), layer_num=2, hidden_dim=4, use_bias=use_bias
    )
    layer.build((None, None, 5))
    own = [(w.path.split("/")[-1], tuple(w.shape)) for w in layer.weights]
    assert own[: len(expected)] == expected
    # Then the heads' weights, head by head.
    assert [tuple(w.shape) for w in layer.weights[len(expected) :]] == [
        (1, 4, 3),
        (3,),
    ] * 2


def test_inner_losses_are_collected(rng):
    layer = MultiHead(
        SeqSelfAttention(units=3, attention_regularizer_weight=0.1),
        layer_num=2,
    )
    layer(rng.standard_normal((2, 4, 5)).astype("float32"))
    assert len(layer.losses) == 2


def gram_penalty(rows, factor):
    rows = np.stack([r.reshape(-1) for r in rows]).astype(np.float64)
    return factor * np.sum((rows @ rows.T - np.eye(len(rows))) ** 2)


def test_regularization_matches_numpy(rng):
    layer = MultiHead(
        keras.layers.Conv1D(4, 3, padding="same"),
        layer_num=3,
        reg_index=[0, 1],
        reg_slice=[(slice(None), slice(0, 2)), None],
        reg_factor=[0.1, 0.2],
    )
    x = rng.standard_normal((2, 6, 5)).astype("float32")
    layer.build(x.shape)
    randomize(layer, rng)
    layer(x)
    kernels = [h.get_weights()[0][:, 0:2] for h in layer.layers]
    biases = [h.get_weights()[1] for h in layer.layers]
    expected = gram_penalty(kernels, 0.1) + gram_penalty(biases, 0.2)
    (loss,) = layer.losses
    np.testing.assert_allclose(ops.convert_to_numpy(loss), expected, rtol=1e-5)


def test_single_regularization_arguments_apply_to_every_index():
    layer = MultiHead(
        keras.layers.LSTM(2, return_sequences=True),
        layer_num=2,
        reg_index=1,
        reg_slice=slice(2, 4),
        reg_factor=0.5,
    )
    assert layer.reg_index == [1]
    assert layer.reg_slice == [slice(2, 4)]
    assert layer.reg_factor == [0.5]


def test_training_is_passed_to_the_heads():
    layer = MultiHead(keras.layers.Dropout(0.5), layer_num=2)
    x = np.ones((4, 8, 3), "float32")
    inference = ops.convert_to_numpy(layer(x, training=False))
    training = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_array_equal(inference, np.ones((4, 8, 3, 2)))
    assert np.any(training == 0)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_output_mask_is_input_mask(rng, head):
    x, mask = make_inputs(rng, True)
    layer = MultiHead(HEADS[head](), layer_num=2, hidden_dim=4)
    output_mask = layer.compute_mask(x, ops.convert_to_tensor(mask))
    np.testing.assert_array_equal(ops.convert_to_numpy(output_mask), mask)
    assert layer.compute_mask(x, None) is None


def test_sequence_to_vector_heads_drop_the_mask(rng):
    x, mask = make_inputs(rng, True)
    layer = MultiHead(keras.layers.LSTM(3), layer_num=2)
    assert layer.compute_mask(x, ops.convert_to_tensor(mask)) is None
    assert layer.compute_output_shape((None, None, 5)) == (None, 3, 2)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_symbolic_call_with_unknown_length(head):
    inputs = keras.Input(shape=(None, 5))
    outputs = MultiHead(HEADS[head](), layer_num=2, hidden_dim=4)(inputs)
    width = OUTPUT_DIM[head] or 4
    assert tuple(outputs.shape) == (None, None, width, 2)
    model = keras.Model(inputs, outputs)
    for length in (3, 8):
        x = np.ones((2, length, 5), "float32")
        assert model.predict(x, verbose=0).shape == (2, length, width, 2)


# ---------------------------------------------------------------- arguments


def _conv():
    return keras.layers.Conv1D(2, 1)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"layer": "lstm"}, "layer"),
        ({"layer": []}, "layer"),
        ({"layer": [_conv(), "conv"]}, "layer"),
        ({"layer_num": 0}, "layer_num"),
        ({"layer_num": 1.5}, "layer_num"),
        ({"layer_num": True}, "layer_num"),
        ({"layer": [_conv(), _conv()], "layer_num": 3}, "layer_num"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"hidden_dim": 2.5}, "hidden_dim"),
        ({"use_bias": "yes"}, "use_bias"),
        ({"reg_index": "0"}, "reg_index"),
        ({"reg_index": []}, "reg_index"),
        ({"reg_index": [True]}, "reg_index"),
        ({"reg_index": 0, "reg_slice": "all"}, "reg_slice"),
        ({"reg_index": 0, "reg_slice": [None, None]}, "reg_slice"),
        ({"reg_index": 0, "reg_factor": -1.0}, "reg_factor"),
        ({"reg_index": 0, "reg_factor": "big"}, "reg_factor"),
        ({"reg_index": 0, "reg_factor": [0.1, 0.2]}, "reg_factor"),
        ({"reg_factor": 0.1}, "reg_factor"),
        ({"reg_slice": slice(1)}, "reg_slice"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, argument):
    kwargs = {"layer": _conv(), **kwargs}
    value = kwargs[argument]
    with pytest.raises(ValueError, match=f"`{argument}`") as info:
        MultiHead(**kwargs)
    assert f"{argument}={value!r}" in str(info.value)


def test_the_same_layer_twice_raises():
    conv = _conv()
    with pytest.raises(ValueError, match="distinct"):
        MultiHead([conv, conv])


def test_out_of_range_reg_index_raises():
    layer = MultiHead(_conv(), layer_num=2, reg_index=2)
    with pytest.raises(ValueError, match="`reg_index` must index"):
        layer.build((None, None, 4))


def test_heads_with_several_outputs_raise(rng):
    layer = MultiHead(SeqSelfAttention(return_attention=True), layer_num=2)
    with pytest.raises(ValueError, match="one tensor"):
        layer(rng.standard_normal((2, 4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="one tensor"):
        MultiHead(SeqSelfAttention(return_attention=True))(
            keras.Input((None, 3))
        )


def test_heads_of_different_shapes_raise(rng):
    layer = MultiHead([keras.layers.Conv1D(2, 1), keras.layers.Conv1D(3, 1)])
    with pytest.raises(ValueError, match="of one shape"):
        layer(rng.standard_normal((2, 4, 3)).astype("float32"))


@pytest.mark.parametrize("shape", [(4,), (None, None, None)])
def test_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match=r"\(batch_size, \.\.\., dim\)"):
        MultiHead(keras.layers.Dense(2), layer_num=2).build(shape)


# ----------------------------------------------------------- layer protocol


CONFIGS = {
    "copies": lambda: MultiHead(
        SeqSelfAttention(units=3, attention_type="multiplicative"), 2
    ),
    "list": lambda: MultiHead(
        [keras.layers.Conv1D(2, 3, padding="same"), keras.layers.Conv1D(2, 5)],
        name="convs",
    ),
    "all": lambda: MultiHead(
        keras.layers.LSTM(2, return_sequences=True),
        layer_num=3,
        hidden_dim=4,
        use_bias=False,
        reg_index=[0, 1],
        reg_slice=[slice(None, 2), (slice(1, None, 2), slice(0, 4))],
        reg_factor=[0.1, 0.01],
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_round_trip(name):
    layer = CONFIGS[name]()
    rebuilt = assert_config_round_trip(layer)
    assert [type(h) for h in rebuilt.layers] == [type(h) for h in layer.layers]
    assert [h.name for h in rebuilt.layers] == [h.name for h in layer.layers]
    assert rebuilt.reg_slice == layer.reg_slice


def multi_head_model(head, masked=True, **kwargs):
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(20, 6, mask_zero=masked)(tokens)
    outputs = MultiHead(HEADS[head](), layer_num=2, **kwargs)(x)
    return keras.Model(tokens, outputs)


def token_data(rng, batch_size=4, length=6):
    tokens = rng.integers(1, 20, size=(batch_size, length)).astype("int32")
    tokens[: batch_size // 2, length - 2 :] = 0
    return tokens


@pytest.mark.parametrize("hidden_dim", [None, 4])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_save_and_load(rng, tmp_path, head, hidden_dim):
    model = multi_head_model(
        head, hidden_dim=hidden_dim, reg_index=0, reg_factor=0.1
    )
    loaded = assert_save_and_load(model, token_data(rng), tmp_path)
    layer = next(item for item in loaded.layers if isinstance(item, MultiHead))
    assert layer.hidden_dim == hidden_dim and layer.reg_factor == [0.1]
    assert [h.name for h in layer.layers] == [
        h.name for h in model.layers[-1].layers
    ]


def test_save_and_load_h5_without_masks(rng, tmp_path):
    model = multi_head_model("seq_self_attention", masked=False, hidden_dim=3)
    assert_save_and_load(model, token_data(rng), tmp_path, ".h5")


def test_fit_under_jit(rng):
    inputs = keras.Input(shape=(6, 5))
    x = MultiHead(
        SeqSelfAttention(units=3, attention_width=3),
        layer_num=2,
        hidden_dim=4,
        reg_index=0,
        reg_factor=0.01,
    )(inputs)
    x = keras.layers.Reshape((6, 8))(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    x = rng.standard_normal((8, 6, 5)).astype("float32")
    assert_fit_improves(model, x, x.sum(-1, keepdims=True), loss="mse")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_mixed_precision(rng, policy, head):
    keras.config.set_dtype_policy(policy)
    x, mask = make_inputs(rng, True)
    layer = MultiHead(HEADS[head](), layer_num=2, hidden_dim=4)
    outputs = layer(
        ops.convert_to_tensor(x * 30), mask=ops.convert_to_tensor(mask)
    )
    compute_dtype = policy.split("_")[1]
    assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
    assert np.all(
        np.isfinite(ops.convert_to_numpy(ops.cast(outputs, "float32")))
    )
    assert all(w.dtype == "float32" for w in layer.weights)


def test_custom_objects():
    assert MultiHead.get_custom_objects() == {"MultiHead": MultiHead}
