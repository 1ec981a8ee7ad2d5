"""Export to a TensorFlow SavedModel, and `.keras` files across backends.

The model runs every `SeqSelfAttention` path (band, fused, dense additive
and multiplicative) and the other layers on padded token batches. CI runs
this file once per backend, so the `.keras` test covers all six
(saved on, loaded on) pairs of backends.

Tolerances: the outputs are of order 1 to 10, computed in float32 by
different kernels (oneDNN, XLA, ATen) that sum in different orders, and
the random weights make the attention sharp, which magnifies the rounding
of the scores. The largest differences measured are below 7e-6, under a
third of `rtol=atol=1e-5` element by element; a real mistake, such as a
padding step leaking into the weights, moves the outputs by 1 or more.
"""

import keras
import numpy as np
import pytest

from keras_self_attention import (
    MultiHead,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
)
from tests.cross_backend_predict import OUTPUTS
from tests.processes import run_python

BACKENDS = ("tensorflow", "jax", "torch")
VOCABULARY = 30
# (batch size, length) of the padded batches served: 70 steps cross the
# band path's 64-query blocks.
BATCHES = [(3, 7), (5, 12), (2, 70)]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def attention_model(rng):
    """Every `SeqSelfAttention` path on masked tokens, with four outputs.

    The attention layers run side by side on the token embeddings, so that
    each of them shapes the result; their weights are random normal, so
    that the attention is far from uniform. The outputs are the attention
    layers' outputs side by side `(batch_size, T, 48)`, a pooled vector
    `(batch_size, 2)`, the attention weights `(batch_size, T, T)` of one
    layer and two stacked heads `(batch_size, T, 4, 2)`.
    """
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 8, mask_zero=True)(tokens)
    attended, weights = SeqSelfAttention(
        attention_type="multiplicative", return_attention=True
    )(x)  # dense, as the weights are returned
    attended = keras.layers.Concatenate()(
        [
            attended,
            # T is unknown when traced. Local windows: the band path.
            SeqSelfAttention(
                attention_width=3, attention_regularizer_weight=0.1
            )(x),
            SeqSelfAttention(
                attention_width=4,
                attention_type="multiplicative",
                history_only=True,
            )(x),
            # Global multiplicative: the fused path.
            SeqSelfAttention(
                attention_type="multiplicative", history_only=True
            )(x),
            # Global additive: the dense kernel or the row-block loop,
            # chosen when the call runs (the loop for a symbolic JAX T).
            SeqSelfAttention(attention_activation="sigmoid")(x),
            ScaledDotProductAttention(history_only=True)(x),
        ]
    )
    heads = MultiHead(
        SeqSelfAttention(units=4, attention_width=5), layer_num=2, hidden_dim=4
    )(x)
    pooled = keras.layers.Dense(2)(SeqWeightedAttention()(attended))
    model = keras.Model(tokens, [attended, pooled, weights, heads])
    model.set_weights(
        [
            rng.standard_normal(w.shape).astype("float32")
            for w in model.get_weights()
        ]
    )
    return model


def padded_batches(rng):
    """Token batches of the `BATCHES` sizes, padded with `0`.

    The first row of each is full, the others are cut at random lengths,
    and the last row of the largest batch is all padding.
    """
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
    "installed. Load a .keras file saved on torch with the TensorFlow or "
    "JAX backend and export it there (test_keras_file_on_other_backends "
    "checks that it predicts the same).",
)
def test_saved_model_serves_variable_length_padded_batches(rng, tmp_path):
    import tensorflow as tf

    model = attention_model(rng)
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
    run_python(
        "-m",
        "tests.cross_backend_predict",
        model_path,
        inputs_path,
        output_path,
        backend=backend,
    )
    predictions = np.load(output_path)
    assert str(predictions["backend"]) == backend
    return predictions


def test_keras_file_on_other_backends(rng, tmp_path):
    model = attention_model(rng)
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
