"""Streaming: a causal layer fed a chunk at a time equals one whole call."""

import itertools

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_self_attention import MultiHead, SeqSelfAttention
from tests import numpy_reference
from tests.layer_checks import (
    assert_config_round_trip,
    randomize,
    tensor_mask,
    to_numpy,
)

BATCH, LENGTH, DIM = 3, 13, 4
# (kwargs, state size): with a window the state keeps w - 1 steps, without
# one the whole history up to `max_length`.
STREAMS = {
    "add-w1": dict(attention_width=1),
    "add-w4": dict(attention_width=4),
    "add-all": dict(max_length=LENGTH),
    "mul-w3-sigmoid": dict(
        attention_type="multiplicative",
        attention_width=3,
        attention_activation="sigmoid",
    ),
    "mul-all": dict(attention_type="multiplicative", max_length=20),
}


def make_stream(rng, padded=True):
    x = rng.standard_normal((BATCH, LENGTH, DIM)).astype("float32")
    mask = np.ones((BATCH, LENGTH), dtype=bool)
    if padded:
        mask[0, 3] = False  # a hole
        mask[1, 6:9] = False  # a gap inside the stream
        mask[2, :2] = False  # the stream starts with padding
        x[~mask] = np.nan  # never read
    return x, mask


def whole_layer(rng, name, **extra):
    layer = SeqSelfAttention(
        units=5, history_only=True, **STREAMS[name], **extra
    )
    layer.build((None, None, DIM))
    randomize(layer, rng)
    return layer


def twin(layer, **overrides):
    """A layer of the same config and weights, with `overrides`."""
    config = {**layer.get_config(), **overrides}
    copy = SeqSelfAttention.from_config(config)
    copy.build((BATCH, None, DIM))
    copy.set_weights(layer.get_weights())
    return copy


def reference(layer, x, mask):
    return numpy_reference.seq_self_attention(
        x,
        layer.get_weights(),
        attention_type=layer.attention_type,
        attention_width=layer.attention_width,
        history_only=True,
        attention_activation=None
        if layer.attention_activation is None
        else keras.activations.serialize(layer.attention_activation),
        mask=mask,
    )


def stream_in_chunks(layer, x, mask, cuts):
    """Feeds `x` through `layer` (`return_state=True`) cut at `cuts`."""
    state = layer.get_initial_state(x.shape[0])
    outputs, weights = [], []
    bounds = [0, *cuts, x.shape[1]]
    for start, stop in itertools.pairwise(bounds):
        result = layer(
            x[:, start:stop],
            mask=tensor_mask(mask[:, start:stop]),
            initial_state=state,
        )
        if layer.return_attention:
            output, chunk_weights, *state = result
            weights.append((start, ops.convert_to_numpy(chunk_weights)))
        else:
            output, *state = result
        outputs.append(ops.convert_to_numpy(output))
    return np.concatenate(outputs, axis=1), weights, state


@settings(deadline=None, max_examples=12)
@given(
    name=st.sampled_from(sorted(STREAMS)),
    cuts=st.sets(st.integers(1, LENGTH - 1), max_size=6),
    seed=st.integers(0, 2**16),
)
def test_any_chunks_equal_the_whole_sequence(name, cuts, seed):
    rng = np.random.default_rng(seed)
    layer = whole_layer(rng, name)
    x, mask = make_stream(rng)
    expected = ops.convert_to_numpy(layer(x, mask=tensor_mask(mask)))
    streamer = twin(layer, return_state=True)
    actual, _, state = stream_in_chunks(streamer, x, mask, sorted(cuts))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    reference_outputs = reference(layer, x, mask)[0]
    np.testing.assert_allclose(actual, reference_outputs, atol=1e-5)
    assert ops.convert_to_numpy(state[3]).tolist() == [LENGTH] * BATCH


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_one_step_at_a_time_with_weights(rng, name):
    layer = whole_layer(rng, name, return_attention=True)
    x, mask = make_stream(rng)
    expected, expected_weights = to_numpy(layer(x, mask=tensor_mask(mask)))
    streamer = twin(layer, return_state=True)
    actual, weights, state = stream_in_chunks(
        streamer, x, mask, list(range(1, LENGTH))
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # Each step's weights are over the state's `size` steps, then itself:
    # the whole call's row, from `size` steps back (zeros before the start).
    size = streamer._state_size()
    padded = np.pad(expected_weights, ((0, 0), (0, 0), (size, 0)))
    for start, step_weights in weights:
        assert step_weights.shape == (BATCH, 1, size + 1)
        np.testing.assert_allclose(
            step_weights[:, 0],
            padded[:, start, start : start + size + 1],
            atol=1e-6,
        )
    # The state: the last `size` steps, oldest first, padding marked.
    keys, values, key_mask, position = (ops.convert_to_numpy(s) for s in state)
    assert keys.shape[:2] == values.shape[:2] == key_mask.shape == (3, size)
    if size:
        # Slots before the stream's first step: empty and not real.
        history = np.pad(mask, ((0, 0), (size, 0)))[:, -size:]
        np.testing.assert_array_equal(key_mask, history)
        clean = np.pad(
            np.where(mask[..., None], x, 0.0), ((0, 0), (size, 0), (0, 0))
        )
        np.testing.assert_allclose(values, clean[:, -size:], atol=1e-6)
    assert position.tolist() == [LENGTH] * BATCH


def test_the_state_keeps_what_later_steps_need(rng):
    # Multiplicative keys are the inputs; additive ones `x Wx`.
    x, mask = make_stream(rng, padded=False)
    for name, key in (("mul-w3-sigmoid", None), ("add-w4", "Wx")):
        layer = twin(whole_layer(rng, name), return_state=True)
        _, _, state = stream_in_chunks(layer, x, mask, [5])
        size = layer._state_size()
        expected = x[:, -size:]
        if key is not None:
            expected = expected @ ops.convert_to_numpy(layer.Wx)
        np.testing.assert_allclose(
            ops.convert_to_numpy(state[0]), expected, rtol=1e-5, atol=1e-5
        )


def stateful_model(layer, jit_compile=None):
    inputs = keras.Input(batch_shape=(BATCH, None, DIM))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    model = keras.Model(inputs, layer(masked))
    if jit_compile is not None:
        model.compile(jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", ["add-w4", "mul-all"])
def test_stateful_model_streams_in_predict_on_batch(rng, name, jit_compile):
    layer = whole_layer(rng, name)
    x, mask = make_stream(rng)
    x[~mask] = 0.0  # `Masking` marks the padding
    expected = ops.convert_to_numpy(layer(x, mask=tensor_mask(mask)))
    streamer = twin(layer, stateful=True)
    model = stateful_model(streamer, jit_compile)
    for _ in range(2):  # a second stream after `reset_state`
        actual = np.concatenate(
            [
                model.predict_on_batch(x[:, start : start + 3])
                for start in range(0, LENGTH, 3)
            ],
            axis=1,
        )
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
        position = ops.convert_to_numpy(streamer._stream_state[3])
        assert position.tolist() == [LENGTH] * BATCH
        streamer.reset_state()
        position = ops.convert_to_numpy(streamer._stream_state[3])
        assert position.tolist() == [0] * BATCH


def test_a_stateful_layer_keeps_the_state_it_was_given(rng):
    # As Keras's RNNs do: `initial_state` replaces the kept state, and the
    # layer keeps the state that call leaves.
    layer = whole_layer(rng, "add-w4")
    x, _ = make_stream(rng, padded=False)
    expected = ops.convert_to_numpy(layer(x))
    streamer = twin(layer, stateful=True)
    streamer(x[:, 5:])  # a state the next call replaces
    streamer(x[:, :5], initial_state=streamer.get_initial_state(BATCH))
    actual = ops.convert_to_numpy(streamer(x[:, 5:]))
    np.testing.assert_allclose(actual, expected[:, 5:], rtol=1e-5, atol=1e-5)


def test_stateful_layer_streams_in_eager_calls(rng):
    layer = whole_layer(rng, "add-w4", return_attention=True)
    x, mask = make_stream(rng)
    expected = to_numpy(layer(x, mask=tensor_mask(mask)))[0]
    streamer = twin(layer, stateful=True)
    outputs = []
    for step in range(LENGTH):
        output, weights = streamer(
            x[:, step : step + 1], mask=tensor_mask(mask[:, step : step + 1])
        )
        assert tuple(weights.shape) == (BATCH, 1, 4)
        outputs.append(ops.convert_to_numpy(output))
    actual = np.concatenate(outputs, axis=1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_state_is_not_a_weight(rng, tmp_path):
    layer = whole_layer(rng, "add-w4")
    streamer = twin(layer, stateful=True)
    # 0.51's weights, in 0.51's order, on both twins.
    assert [w.name for w in streamer.weights] == [w.name for w in layer.weights]
    assert len(streamer.non_trainable_variables) == 4
    assert streamer.non_trainable_weights == []
    # Saved and loaded, a stateful model starts a new stream; its weights
    # load into the non-stateful twin and back.
    model = stateful_model(streamer)
    x = rng.standard_normal((BATCH, 2, DIM)).astype("float32")
    first = model.predict_on_batch(x)
    model.save_weights(tmp_path / "stateful.weights.h5")
    path = tmp_path / "stateful.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict_on_batch(x), first, atol=1e-6)
    plain = keras.Sequential([keras.Input((None, DIM)), twin(layer)])
    plain.load_weights(tmp_path / "stateful.weights.h5")
    plain.save_weights(tmp_path / "plain.weights.h5")
    model.load_weights(tmp_path / "plain.weights.h5")


def test_config_round_trip():
    layer = SeqSelfAttention(
        history_only=True, stateful=True, return_state=True, max_length=9
    )
    rebuilt = assert_config_round_trip(layer)
    assert (rebuilt.stateful, rebuilt.return_state, rebuilt.max_length) == (
        True,
        True,
        9,
    )


def test_functional_state_in_a_served_model(rng):
    # The state as explicit inputs and outputs, as an exported model
    # carries it; under jit_compile.
    layer = twin(whole_layer(rng, "add-w4"), return_state=True)
    x, mask = make_stream(rng, padded=False)
    expected, _, _ = stream_in_chunks(layer, x, mask, [4, 9])
    size, key_dim = layer._state_size(), layer._key_dim()
    chunk = keras.Input((None, DIM))
    state_inputs = [
        keras.Input((size, key_dim)),
        keras.Input((size, DIM)),
        keras.Input((size,)),
        keras.Input((), dtype="int32"),
    ]
    outputs = layer(chunk, initial_state=state_inputs)
    assert outputs[-1].dtype == "int32"
    model = keras.Model([chunk, *state_inputs], list(outputs))
    model.compile(jit_compile=True)
    state = [ops.convert_to_numpy(s) for s in layer.get_initial_state(BATCH)]
    actual = []
    for start, stop in ((0, 4), (4, 9), (9, LENGTH)):
        output, *state = model.predict_on_batch([x[:, start:stop], *state])
        actual.append(output)
    np.testing.assert_allclose(
        np.concatenate(actual, 1), expected, rtol=1e-5, atol=1e-5
    )


def test_a_stateful_model_trains(rng):
    # As Keras allows it for RNNs: batches continue the stream, and the
    # attention's weights learn.
    layer = SeqSelfAttention(
        units=4, history_only=True, attention_width=3, stateful=True
    )
    inputs = keras.Input(batch_shape=(BATCH, 4, DIM))
    hidden = keras.layers.LSTM(DIM, return_sequences=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(hidden)))
    model.compile("adam", "mse")
    x = rng.standard_normal((4 * BATCH, 4, DIM)).astype("float32")
    before = layer.get_weights()
    history = model.fit(
        x, x.sum(-1, keepdims=True), batch_size=BATCH, epochs=3, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    for old, new in zip(before, layer.get_weights(), strict=True):
        assert not np.allclose(old, new)
    position = ops.convert_to_numpy(layer._stream_state[3])
    assert position.tolist() == [3 * 4 * 4] * BATCH


def test_readme_pattern_lstm_then_attention(rng):
    # Train the non-stateful model on whole sequences, copy its weights into
    # a stateful twin, stream one step at a time.
    def build(stateful, batch_shape):
        inputs = keras.Input(batch_shape=batch_shape)
        hidden = keras.layers.LSTM(6, return_sequences=True, stateful=stateful)(
            inputs
        )
        hidden = SeqSelfAttention(
            units=4,
            history_only=True,
            attention_width=5,
            stateful=stateful,
        )(hidden)
        return keras.Model(inputs, keras.layers.Dense(2)(hidden))

    model = build(False, (None, None, DIM))
    model.compile("adam", "mse")
    x = rng.standard_normal((BATCH, LENGTH, DIM)).astype("float32")
    model.fit(x, x[..., :2], epochs=2, verbose=0)
    streamer = build(True, (BATCH, 1, DIM))
    streamer.set_weights(model.get_weights())
    # Eager calls: on JAX, Keras's stateful LSTM keeps its state there but
    # not in `predict_on_batch` (Keras 3.15).
    steps = [
        ops.convert_to_numpy(streamer(x[:, t : t + 1])) for t in range(LENGTH)
    ]
    np.testing.assert_allclose(
        np.concatenate(steps, 1), model.predict_on_batch(x), atol=1e-5
    )


def test_multi_head_of_stateful_heads_streams(rng):
    head = SeqSelfAttention(units=3, history_only=True, attention_width=3)
    whole = MultiHead(head, layer_num=2, hidden_dim=4)
    x, mask = make_stream(rng)
    x[~mask] = 0.0
    whole.build((None, None, DIM))
    randomize(whole, rng)
    expected = ops.convert_to_numpy(whole(x, mask=tensor_mask(mask)))
    stateful_head = SeqSelfAttention.from_config(
        {**head.get_config(), "stateful": True}
    )
    streamer = MultiHead(stateful_head, layer_num=2, hidden_dim=4)
    model = stateful_model(streamer)
    model.set_weights(whole.get_weights())
    for _ in range(2):
        actual = np.concatenate(
            [model.predict_on_batch(x[:, t : t + 1]) for t in range(LENGTH)],
            axis=1,
        )
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
        streamer.reset_state()  # every head starts a new stream


def test_multi_head_refuses_heads_that_return_their_state():
    head = SeqSelfAttention(
        history_only=True, attention_width=3, return_state=True
    )
    with pytest.raises(ValueError, match="return_state"):
        MultiHead(head, layer_num=2)(np.zeros((2, 3, 4), "float32"))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(stateful=True), "history_only"),
        (dict(return_state=True, attention_width=3), "history_only"),
        (dict(stateful=True, history_only=True), "max_length"),
        (dict(return_state=True, history_only=True), "max_length"),
        (dict(max_length=0), "max_length"),
        (dict(stateful="yes"), "stateful"),
    ],
)
def test_arguments_that_cannot_stream(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SeqSelfAttention(**kwargs)


def test_streaming_errors(rng):
    x = rng.standard_normal((BATCH, 2, DIM)).astype("float32")
    with pytest.raises(ValueError, match="batch_shape"):
        keras.Sequential(
            [
                keras.Input((None, DIM)),
                SeqSelfAttention(
                    history_only=True, attention_width=3, stateful=True
                ),
            ]
        )
    streamer = SeqSelfAttention(
        history_only=True, attention_width=3, stateful=True
    )
    streamer(x)
    with pytest.raises(ValueError, match="batch size cannot change"):
        streamer(x[:2])
    non_causal = SeqSelfAttention(attention_width=3)
    non_causal(x)
    with pytest.raises(ValueError, match="history_only"):
        non_causal(x, initial_state=non_causal.weights)
    unbuilt = SeqSelfAttention(history_only=True, attention_width=3)
    with pytest.raises(ValueError, match="built"):
        unbuilt.get_initial_state(2)
    layer = SeqSelfAttention(history_only=True, attention_width=3)
    layer(x)
    state = layer.get_initial_state(BATCH)
    with pytest.raises(ValueError, match="initial_state"):
        layer(x, initial_state=state[:3])
    with pytest.raises(ValueError, match="initial_state"):
        layer(x, initial_state=[state[1], state[0], *state[2:]])
    regularized = SeqSelfAttention(
        history_only=True,
        attention_width=3,
        attention_regularizer_weight=0.1,
        return_state=True,
    )
    regularized(x)  # inference: no loss, no error
    assert not regularized.losses
    with pytest.raises(ValueError, match="attention_regularizer_weight"):
        regularized(x, training=True)


def test_a_stream_past_max_length(rng):
    x = rng.standard_normal((BATCH, 4, DIM)).astype("float32")
    layer = SeqSelfAttention(history_only=True, max_length=6, stateful=True)
    layer(x)
    with pytest.raises(ValueError, match="max_length"):
        layer(x)
    layer.reset_state()
    layer(x)
    # A compiled call cannot raise: the steps past the bound are NaN, the
    # steps within it right. (PyTorch runs the check eagerly and raises.)
    model = stateful_model(
        SeqSelfAttention(history_only=True, max_length=6, stateful=True),
        jit_compile=True,
    )
    model.predict_on_batch(x)
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="max_length"):
            model.predict_on_batch(x)
        return
    past = model.predict_on_batch(x)
    assert np.isfinite(past[:, :2]).all()
    assert np.isnan(past[:, 2:]).all()
