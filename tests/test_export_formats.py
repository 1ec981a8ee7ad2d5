"""`model.export` to every format, run in that format's own runtime.

Each layer of the package (`SeqSelfAttention` on each path it takes when
served, with and without its weights returned; `SeqWeightedAttention`;
`ScaledDotProductAttention`; `ResidualScaledDotProductAttention`;
`MultiHead`) sits in a model on masked tokens (`Embedding(mask_zero=True)`),
is exported with `model.export(path, format=...)` with a variable and with
a fixed `T`, run by TensorFlow, the LiteRT interpreter (built-in ops only,
no Flex delegate), onnxruntime or OpenVINO, and compared with
`model.predict` on padded batches (of two lengths where `T` varies).

Where Keras or the runtime cannot export even a model of plain Keras layers
(`TOOLCHAIN_LIMITS`, each found with such a control model), the case is
skipped with that reason: those limits are not this package's.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_self_attention import (
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
    attention_plan,
)

BACKEND = keras.backend.backend()
VOCABULARY, DIM, FIXED_LENGTH = 20, 8, 12
LENGTHS = (7, 30)  # served lengths of the variable-length models
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}

# Found with control models of plain Keras layers (Embedding + Dense),
# Keras 3.15 and the runtimes of requirements-dev.txt.
TOOLCHAIN_LIMITS = {
    ("jax", "litert"): "Keras exports LiteRT from TensorFlow and PyTorch only "
    "('LiteRT export requires TensorFlow or PyTorch backend')",
    ("jax", "openvino"): "OpenVINO cannot convert the XlaCallModule op of a "
    "JAX export, even for a Dense layer alone",
    ("torch", "tf_saved_model"): "Keras cannot export a PyTorch model to a "
    "SavedModel, even Embedding + Dense (it needs torch_xla)",
    ("torch", "litert"): "Keras's PyTorch LiteRT export needs litert-torch, "
    "which pins typing-extensions below what JAX's chex needs, so it cannot "
    "share the test environment; its export also fixes the whole input "
    "shape, batch size included",
}
RUNTIMES = {
    "tf_saved_model": "tensorflow",
    "litert": "ai_edge_litert",
    "onnx": "onnxruntime",
    "openvino": "openvino",
}
FILES = {
    "tf_saved_model": "saved_model",
    "litert": "model.tflite",
    "onnx": "model.onnx",
    "openvino": "model.xml",
}


@pytest.fixture(autouse=True)
def _both_served_kernels(monkeypatch):
    """A dense budget between the served lengths, so that an exported model
    runs the dense kernel at `T = 7` and the per-unit sum at `T = 30` (the
    budget is a constant of the traced graph)."""
    monkeypatch.setattr(
        attention_plan,
        "DENSE_INFERENCE_ELEMENTS",
        {keras.backend.backend(): 3 * 10 * 10 * 32},
    )


class ZeroScores(keras.layers.Layer):
    """`(batch_size, T, T)` zeros: the first residual layer's scores."""

    def call(self, inputs, mask=None):
        return 0.0 * ops.matmul(inputs, ops.transpose(inputs, (0, 2, 1)))

    def compute_mask(self, inputs, mask=None):
        return None


def _residual(x):
    outputs, _ = ResidualScaledDotProductAttention(history_only=True)(
        [x, ZeroScores()(x)]
    )
    return outputs


# Each builds the layer's outputs on embedded, masked tokens `x`.
LAYERS = {
    # Global additive: the per-unit sum when served.
    "ssa": lambda x: SeqSelfAttention(attention_activation="sigmoid")(x),
    "ssa-weights": lambda x: SeqSelfAttention(return_attention=True)(x),
    # Global multiplicative: the dense product when served.
    "ssa-multiplicative": lambda x: SeqSelfAttention(
        attention_type="multiplicative", history_only=True
    )(x),
    # Local windows: the band.
    "ssa-band": lambda x: SeqSelfAttention(attention_width=5)(x),
    "ssa-band-multiplicative-weights": lambda x: SeqSelfAttention(
        attention_width=4,
        attention_type="multiplicative",
        history_only=True,
        return_attention=True,
    )(x),
    "swa": lambda x: SeqWeightedAttention(return_attention=True)(x),
    "sdpa": lambda x: ScaledDotProductAttention(history_only=True)(x),
    "residual-sdpa": _residual,
    "multi-head": lambda x: MultiHead(
        SeqSelfAttention(units=4, attention_width=3), layer_num=2, hidden_dim=4
    )(x),
}


def build_model(layer, length):
    tokens = keras.Input(shape=(length,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, DIM, mask_zero=True)(tokens)
    model = keras.Model(tokens, LAYERS[layer](x))
    rng = np.random.default_rng(0)
    model.set_weights(
        [
            0.5 * rng.standard_normal(w.shape).astype("float32")
            for w in model.get_weights()
        ]
    )
    return model


def padded_tokens(length, rng):
    """Three sequences: full, cut in half, all padding."""
    tokens = rng.integers(1, VOCABULARY, (3, length)).astype("int32")
    tokens[1, length // 2 :] = 0
    tokens[2] = 0
    return tokens


def _serve_saved_model(path):
    import tensorflow as tf

    served = tf.saved_model.load(path)
    return lambda tokens: [
        np.asarray(output)
        for output in keras.tree.flatten(served.serve(tf.constant(tokens)))
    ]


def _serve_litert(path):
    from ai_edge_litert.interpreter import Interpreter

    def run(tokens):
        # Built-in ops only: the plain interpreter has no Flex delegate.
        interpreter = Interpreter(model_path=path)
        (spec,) = interpreter.get_input_details()
        interpreter.resize_tensor_input(spec["index"], tokens.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(spec["index"], tokens.astype(spec["dtype"]))
        interpreter.invoke()
        return [
            interpreter.get_tensor(output["index"])
            for output in interpreter.get_output_details()
        ]

    return run


def _serve_onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(path)
    name = session.get_inputs()[0].name
    return lambda tokens: session.run(None, {name: tokens})


def _serve_openvino(path):
    import openvino

    # Full float32: OpenVINO's default CPU hint computes in lower precision.
    compiled = openvino.Core().compile_model(
        path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda tokens: [
        np.asarray(output) for output in compiled(tokens).values()
    ]


SERVE = {
    "tf_saved_model": _serve_saved_model,
    "litert": _serve_litert,
    "onnx": _serve_onnx,
    "openvino": _serve_openvino,
}


def _match(served, expected):
    """Each expected output's served counterpart, found by shape.

    LiteRT may reorder the outputs, and OpenVINO adds some of its own.
    """
    matched = []
    for want in expected:
        same = [out for out in served if tuple(out.shape) == want.shape]
        assert same, f"no served output of shape {want.shape}"
        matched.append(same[0])
        served = [out for out in served if out is not same[0]]
    return matched


def export_and_compare(model, export_format, lengths, tmp_path):
    rng = np.random.default_rng(1)
    batches = [padded_tokens(length, rng) for length in lengths]
    # Keras exports only a model that has been called.
    model(batches[0])
    path = str(tmp_path / FILES[export_format])
    with warnings.catch_warnings():
        # The exporters' own deprecation and future warnings.
        warnings.simplefilter("ignore")
        model.export(path, format=export_format, verbose=False)
    serve = SERVE[export_format](path)
    for tokens in batches:
        expected = [
            np.asarray(output)
            for output in keras.tree.flatten(model.predict(tokens, verbose=0))
        ]
        served = _match(serve(tokens), expected)
        for out, want in zip(served, expected, strict=True):
            np.testing.assert_allclose(
                out, want, err_msg=f"T={tokens.shape[1]}", **TOLERANCE
            )
            assert np.all(np.isfinite(out))


def _skip_unless_supported(export_format):
    reason = TOOLCHAIN_LIMITS.get((BACKEND, export_format))
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip(RUNTIMES[export_format])
    if export_format == "onnx" and BACKEND == "jax":
        pytest.importorskip("jax2onnx")
    if export_format == "onnx" and BACKEND == "tensorflow":
        pytest.importorskip("tf2onnx")


@pytest.mark.parametrize("export_format", list(FILES))
@pytest.mark.parametrize(
    "length", [None, FIXED_LENGTH], ids=["any-T", "fixed-T"]
)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_exported_layer_serves_padded_batches(
    layer, length, export_format, tmp_path
):
    _skip_unless_supported(export_format)
    model = build_model(layer, length)
    lengths = LENGTHS if length is None else (length, length)
    export_and_compare(model, export_format, lengths, tmp_path)


LIMITS_HERE = [key for key in TOOLCHAIN_LIMITS if key[0] == BACKEND]


@pytest.mark.skipif(not LIMITS_HERE, reason="no toolchain limit here")
@pytest.mark.parametrize("limit", LIMITS_HERE, ids=lambda key: key[1])
def test_toolchain_limit_holds_for_plain_keras_layers(limit, tmp_path):
    """The control: each skip above fails with plain Keras layers too.

    Once a new Keras or runtime lifts a limit, this fails, and the skip
    (and the README's table) must go.
    """
    export_format = limit[1]
    tokens = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, DIM, mask_zero=True)(tokens)
    model = keras.Model(tokens, keras.layers.Dense(3)(x))
    with pytest.raises(Exception):  # noqa: B017 - any failure will do
        export_and_compare(model, export_format, LENGTHS, tmp_path)
