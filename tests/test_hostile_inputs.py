"""Bad and extreme input: a correct answer or a clear error, never silence.

Integer inputs, NaN or inf at padded steps, masks of the wrong shape, empty
batches and sequences, inputs that do not fit a built layer, and arguments
out of range, for every layer (and every path of `SeqSelfAttention`).
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_self_attention import (
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
    get_attention_weights,
)
from tests import numpy_reference
from tests.gradients import layer_gradients
from tests.test_attention_paths import forced
from tests.test_seq_self_attention import randomize

LENGTH, DIM = 7, 4
MASK = np.array(
    [
        [1, 1, 1, 1, 1, 0, 0],  # trailing padding
        [0, 0, 1, 1, 1, 1, 1],  # leading padding
        [1, 0, 1, 1, 0, 1, 1],  # holes
    ],
    dtype=bool,
)


def _seq_self_attention(path=None, **kwargs):
    def make():
        layer = SeqSelfAttention(units=5, **kwargs)
        layer.build((None, None, DIM))
        randomize(layer, np.random.default_rng(1))
        return layer if path is None else forced(layer, path)

    return make


def _built(layer_class, **kwargs):
    def make():
        layer = layer_class(**kwargs)
        layer.build((None, None, DIM))
        randomize(layer, np.random.default_rng(1))
        return layer

    return make


# Each makes a fresh layer with fixed weights; all take one tensor + mask.
LAYERS = {
    "ssa-dense": _seq_self_attention("dense"),
    "ssa-blocked": _seq_self_attention("blocked"),
    "ssa-band": _seq_self_attention("band", attention_width=3),
    "ssa-band-history": _seq_self_attention(
        "band", attention_width=3, history_only=True
    ),
    "ssa-mul-dense": _seq_self_attention(
        "dense", attention_type="multiplicative"
    ),
    "ssa-mul-band": _seq_self_attention(
        "band", attention_type="multiplicative", attention_width=4
    ),
    "ssa-fused": _seq_self_attention(
        "fused", attention_type="multiplicative", history_only=True
    ),
    "ssa-regularizer": _seq_self_attention(
        "dense", attention_regularizer_weight=0.3, attention_width=3
    ),
    "ssa-band-regularizer": _seq_self_attention(
        "band", attention_regularizer_weight=0.3, attention_width=3
    ),
    "swa": _built(SeqWeightedAttention),
    "sdpa": _built(ScaledDotProductAttention),
    "sdpa-history": _built(ScaledDotProductAttention, history_only=True),
    "multi-head": _built(
        MultiHead,
        layer=SeqSelfAttention(units=3, attention_width=3),
        layer_num=2,
        hidden_dim=3,
    ),
}


def _gradients(layer, x, mask):
    output = ops.convert_to_numpy(layer(x, mask=ops.convert_to_tensor(mask)))
    cotangent = np.random.default_rng(2).standard_normal(output.shape)
    return layer_gradients(layer, x, mask, cotangent.astype("float32"))


PADDING_VALUES = [np.nan, np.inf, -np.inf, 3e38, -1e30, 0.0, 7.0]


@pytest.mark.parametrize("name", LAYERS)
@settings(max_examples=8, deadline=None)
@given(
    fill=st.lists(
        st.sampled_from(PADDING_VALUES),
        min_size=int((~MASK).sum()) * DIM,
        max_size=int((~MASK).sum()) * DIM,
    )
)
def test_padded_steps_are_never_read(name, fill):
    """Any values at masked steps leave outputs and gradients unchanged."""
    x = np.random.default_rng(0).standard_normal((3, LENGTH, DIM))
    x = x.astype("float32")
    hostile = x.copy()
    hostile[~MASK] = np.reshape(fill, (-1, DIM))
    output, grads = _gradients(LAYERS[name](), x, MASK)
    hostile_output, hostile_grads = _gradients(LAYERS[name](), hostile, MASK)
    assert np.all(np.isfinite(hostile_output))
    np.testing.assert_allclose(hostile_output, output, rtol=1e-6, atol=1e-6)
    # Padded inputs get no gradient; everything else is unchanged.
    assert np.all(hostile_grads[0][~MASK] == 0)
    for hostile_grad, grad in zip(hostile_grads, grads, strict=True):
        assert np.all(np.isfinite(hostile_grad))
        np.testing.assert_allclose(hostile_grad, grad, rtol=1e-5, atol=1e-6)


def test_residual_padded_steps_are_never_read(rng):
    x = rng.standard_normal((3, LENGTH, DIM)).astype("float32")
    previous = rng.standard_normal((3, LENGTH, LENGTH)).astype("float32")
    hostile = x.copy()
    hostile[~MASK] = np.nan
    masks = [ops.convert_to_tensor(MASK), None]
    layer = ResidualScaledDotProductAttention()
    outputs, scores = layer([x, previous], mask=masks)
    hostile_outputs, hostile_scores = layer([hostile, previous], mask=masks)
    np.testing.assert_allclose(
        ops.convert_to_numpy(hostile_outputs), ops.convert_to_numpy(outputs)
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(hostile_scores), ops.convert_to_numpy(scores)
    )


@pytest.mark.parametrize("name", LAYERS)
def test_integer_inputs_compute_in_floats(name):
    x = np.random.default_rng(0).integers(-3, 4, (3, LENGTH, DIM))
    layer = LAYERS[name]()
    output = layer(x.astype("int32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    expected = ops.convert_to_numpy(layer(x.astype("float32")))
    np.testing.assert_allclose(ops.convert_to_numpy(output), expected)
    assert np.any(expected != 0)


def test_integer_inputs_in_a_model_train(rng):
    inputs = keras.Input((LENGTH, DIM), dtype="int32")
    outputs = keras.layers.Dense(1)(SeqSelfAttention(units=4)(inputs))
    model = keras.Model(inputs, outputs)
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == (
        "float32"
    )
    model.compile("adam", "mse")
    x = rng.integers(0, 5, (8, LENGTH, DIM)).astype("int32")
    history = model.fit(x, np.ones((8, LENGTH, 1)), epochs=2, verbose=0)
    assert all(math.isfinite(loss) for loss in history.history["loss"])


@pytest.mark.parametrize("pads", [0, 2, 10])
@pytest.mark.parametrize("leading", [False, True])
@pytest.mark.parametrize("attention_width", [None, 3])
@pytest.mark.parametrize("history_only", [False, True])
def test_regularizer_counts_real_steps_only(
    pads, leading, attention_width, history_only
):
    """The same 4 real steps give the same term, however much padding."""
    real = np.random.default_rng(0).standard_normal((1, 4, DIM))
    padding = np.full((1, pads, DIM), 5.0)
    parts = [padding, real] if leading else [real, padding]
    x = np.concatenate(parts, axis=1).astype("float32")
    mask = np.concatenate(
        [np.zeros((1, pads), bool), np.ones((1, 4), bool)][
            :: 1 if leading else -1
        ],
        axis=1,
    )
    layer = SeqSelfAttention(
        units=5,
        attention_width=attention_width,
        history_only=history_only,
        attention_regularizer_weight=1.0,
    )
    layer.build((None, None, DIM))
    randomize(layer, np.random.default_rng(1))
    layer(x, mask=ops.convert_to_tensor(mask))
    _, _, expected = numpy_reference.seq_self_attention(
        real,
        layer.get_weights(),
        attention_width=attention_width,
        history_only=history_only,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.losses[0]), expected, rtol=1e-5
    )


BAD_MASKS = {
    "(T,)": np.ones(LENGTH, bool),
    "(B, T, 1)": np.ones((3, LENGTH, 1), bool),
    "wrong T": np.ones((3, LENGTH - 1), bool),
    "wrong batch": np.ones((2, LENGTH), bool),
}


@pytest.mark.parametrize("mask", BAD_MASKS)
@pytest.mark.parametrize("name", LAYERS)
def test_mask_of_the_wrong_shape_raises(name, mask):
    x = np.zeros((3, LENGTH, DIM), "float32")
    with pytest.raises(ValueError, match=r"mask.*\(batch_size, T\).*Received"):
        LAYERS[name]()(x, mask=ops.convert_to_tensor(BAD_MASKS[mask]))


@pytest.mark.parametrize("which", [0, 1])
def test_query_or_key_mask_of_the_wrong_shape_raises(which):
    query = np.zeros((3, 5, DIM), "float32")
    key = np.zeros((3, LENGTH, DIM), "float32")
    masks = [np.ones((3, 5), bool), np.ones((3, LENGTH), bool)]
    masks[which] = np.ones((3, 6), bool)
    name = "query mask" if which == 0 else "key mask"
    with pytest.raises(ValueError, match=f"`{name}` of shape"):
        ScaledDotProductAttention()(
            [query, key, key],
            mask=[ops.convert_to_tensor(m) for m in [*masks, masks[1]]],
        )


@pytest.mark.parametrize("name", LAYERS)
def test_mask_with_a_batch_of_one_broadcasts(name):
    x = np.random.default_rng(0).standard_normal((3, LENGTH, DIM))
    x = x.astype("float32")
    layer = LAYERS[name]()
    one = layer(x, mask=ops.convert_to_tensor(MASK[:1]))
    tiled = layer(x, mask=ops.convert_to_tensor(np.repeat(MASK[:1], 3, 0)))
    np.testing.assert_allclose(
        ops.convert_to_numpy(one), ops.convert_to_numpy(tiled), atol=1e-6
    )


EMPTY_LAYERS = {
    "ssa": lambda: SeqSelfAttention(),
    "ssa-width": lambda: SeqSelfAttention(attention_width=3),
    "ssa-return": lambda: SeqSelfAttention(return_attention=True),
    "ssa-width-return": lambda: SeqSelfAttention(
        attention_width=3, return_attention=True
    ),
    "ssa-mul-width": lambda: SeqSelfAttention(
        attention_type="multiplicative", attention_width=3
    ),
    "ssa-mul": lambda: SeqSelfAttention(attention_type="multiplicative"),
    "ssa-regularizer": lambda: SeqSelfAttention(
        attention_width=3, attention_regularizer_weight=0.1
    ),
    "multi-head": lambda: MultiHead(SeqSelfAttention(), layer_num=2),
    "swa": lambda: SeqWeightedAttention(return_attention=True),
    "sdpa": lambda: ScaledDotProductAttention(return_attention=True),
}


@pytest.mark.parametrize("shape", [(2, 0, DIM), (0, 5, DIM)])
@pytest.mark.parametrize("name", EMPTY_LAYERS)
def test_empty_batch_or_sequence(name, shape):
    layer = EMPTY_LAYERS[name]()
    x = np.zeros(shape, "float32")
    outputs = layer(x, mask=ops.convert_to_tensor(np.ones(shape[:2], bool)))
    expected = layer.compute_output_shape(shape)
    if not all(isinstance(s, tuple) for s in expected):
        expected = (expected,)
    shapes = tuple(tuple(t.shape) for t in keras.tree.flatten(outputs))
    assert shapes == expected
    for tensor in keras.tree.flatten(outputs):
        assert np.all(np.isfinite(ops.convert_to_numpy(tensor)))


@pytest.mark.parametrize(
    "layer",
    [
        lambda: SeqSelfAttention(),
        lambda: SeqWeightedAttention(),
        lambda: MultiHead(SeqSelfAttention(), layer_num=2),
    ],
    ids=["ssa", "swa", "multi-head"],
)
@pytest.mark.parametrize(
    "shape,message",
    [
        ((2, 5, DIM + 1), f"axis -1 of input shape to have value {DIM}"),
        ((2, 5, DIM, 1), "expected ndim=3"),
    ],
    ids=["other-dim", "rank-4"],
)
def test_built_layer_rejects_inputs_it_was_not_built_for(layer, shape, message):
    layer = layer()
    layer(np.zeros((2, 5, DIM), "float32"))
    with pytest.raises(ValueError, match=message):
        layer(np.zeros(shape, "float32"))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_get_attention_weights_rejects_bad_batch_size(batch_size):
    inputs = keras.Input((None, DIM))
    model = keras.Model(inputs, SeqSelfAttention()(inputs))
    with pytest.raises(ValueError, match="`batch_size` must be"):
        get_attention_weights(
            model, np.zeros((2, 5, DIM), "float32"), batch_size=batch_size
        )


@pytest.mark.parametrize("weight", [math.inf, -math.inf, math.nan])
def test_regularizer_weight_must_be_finite(weight):
    with pytest.raises(ValueError, match="attention_regularizer_weight"):
        SeqSelfAttention(attention_regularizer_weight=weight)


@pytest.mark.parametrize("error", [ValueError, NotImplementedError])
def test_unknown_attention_type_raises_both_old_and_new_errors(error):
    """0.51 raised `NotImplementedError`; code catching it keeps working."""
    with pytest.raises(error, match="attention_type"):
        SeqSelfAttention(attention_type="dot")
