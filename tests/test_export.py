"""Export to a TensorFlow SavedModel, and `.keras` files across backends.

The model runs every `SeqSelfAttention` path (band, fused, dense additive
and multiplicative) and the other layers on padded token batches. CI runs
this file once per backend, so the `.keras` test covers all six
(saved on, loaded on) pairs of backends.

Tolerances: the outputs are probabilities and activations of order one,
computed in float32 by different kernels (oneDNN, XLA, ATen) that sum in
different orders. The largest differences measured are about 1e-7
(rounding, float32 epsilon is 1.2e-7), so `rtol=1e-5, atol=1e-6` passes
them with room to spare and still fails on any real mistake, such as a
padding step that leaks into the weights.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_self_attention import (
    MultiHead,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
VOCABULARY = 30
# (batch size, length) of the padded batches served: 70 steps cross the
# band path's 64-query blocks.
BATCHES = [(3, 7), (5, 12), (2, 70)]
OUTPUTS = ("tags", "pooled", "weights", "heads")
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def attention_model():
    """Every `SeqSelfAttention` path on masked tokens, with four outputs.

    The outputs are per-step tags, a pooled vector, the attention weights
    `(batch_size, T, T)` of one layer and two stacked heads
    `(batch_size, T, 4, 2)`.
    """
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 8, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(
        x
    )
    # Local windows: the band path.
    x = SeqSelfAttention(attention_width=3, attention_regularizer_weight=0.1)(
        x
    )
    x = SeqSelfAttention(
        attention_width=4, attention_type="multiplicative", history_only=True
    )(x)
    # Global multiplicative: the fused path, then the dense one, which the
    # returned weights need.
    x = SeqSelfAttention(attention_type="multiplicative", history_only=True)(
        x
    )
    x, weights = SeqSelfAttention(
        attention_type="multiplicative", return_attention=True
    )(x)
    # Global additive: the dense path, its scores built in blocks.
    x = SeqSelfAttention(attention_activation="sigmoid")(x)
    x = ScaledDotProductAttention(history_only=True)(x)
    heads = MultiHead(
        SeqSelfAttention(units=4, attention_width=5), layer_num=2, hidden_dim=4
    )(x)
    tags = keras.layers.Dense(3, activation="softmax")(x)
    pooled = keras.layers.Dense(2)(SeqWeightedAttention()(x))
    return keras.Model(tokens, [tags, pooled, weights, heads])


def padded_batches(rng):
    """Token batches padded with `0`: the first row is full, the others
    are cut at random lengths, and the last row of the widest batch is all
    padding."""
    batches = {}
    for batch_size, length in BATCHES:
        tokens = rng.integers(1, VOCABULARY, size=(batch_size, length))
        for row in range(1, batch_size):
            tokens[row, rng.integers(1, length) :] = 0
        if batch_size == max(size for size, _ in BATCHES):
            tokens[-1] = 0
        batches[f"batch_{batch_size}x{length}"] = tokens.astype("int32")
    return batches


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras 3.15 cannot export a torch model to a SavedModel, even a "
    "plain Embedding + Dense one: torch.export.export fails with 'Detected "
    "mismatch between the structure of `inputs` and `dynamic_shapes`: "
    "`inputs[0]` is a <class 'tuple'>, but `dynamic_shapes[0]` is a "
    "<class 'dict'>', and the export then needs torch_xla, which is not "
    "installed. A .keras file saved on torch exports from TensorFlow or "
    "JAX (see test_keras_file_on_other_backends).",
)
def test_saved_model_serves_variable_length_padded_batches(rng, tmp_path):
    import tensorflow as tf

    model = attention_model()
    path = str(tmp_path / "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(path)
    (spec,) = served.serve.input_signature
    assert spec.shape.as_list() == [None, None]
    assert spec.dtype == tf.int32
    for name, tokens in padded_batches(rng).items():
        expected = model.predict(tokens, verbose=0)
        outputs = served.serve(tf.constant(tokens))
        assert len(outputs) == len(OUTPUTS), name
        for output_name, output, want in zip(
            OUTPUTS, outputs, expected, strict=True
        ):
            np.testing.assert_allclose(
                np.asarray(output),
                want,
                err_msg=f"{name}: {output_name}",
                **TOLERANCE,
            )


def predict_on(backend, model_path, inputs_path, output_path):
    """Predictions of a `.keras` file, loaded in a `backend` process."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.cross_backend_predict"]
        + [str(model_path), str(inputs_path), str(output_path)],
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = np.load(output_path)
    assert str(predictions["backend"]) == backend
    return predictions


def test_keras_file_on_other_backends(rng, tmp_path):
    model = attention_model()
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    inputs_path = tmp_path / "tokens.npz"
    batches = padded_batches(rng)
    np.savez(inputs_path, **batches)
    expected = {
        f"{name}_{output_name}": output
        for name, tokens in batches.items()
        for output_name, output in zip(
            OUTPUTS, model.predict(tokens, verbose=0), strict=True
        )
    }
    for backend in BACKENDS:
        if backend == keras.backend.backend():
            continue
        predictions = predict_on(
            backend, model_path, inputs_path, tmp_path / f"{backend}.npz"
        )
        assert sorted(predictions.files) == sorted([*expected, "backend"])
        for name, want in expected.items():
            np.testing.assert_allclose(
                predictions[name],
                want,
                err_msg=f"saved on {keras.backend.backend()}, loaded on "
                f"{backend}: {name}",
                **TOLERANCE,
            )
