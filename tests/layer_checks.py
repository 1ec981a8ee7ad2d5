"""Checks shared by the layer tests: config round trip, saving, gradients."""

import os

import keras
import numpy as np
from keras import ops

from tests.gradients import layer_gradients


def to_numpy(result):
    """A layer's result as a list of numpy arrays."""
    if isinstance(result, (list, tuple)):
        return [ops.convert_to_numpy(r) for r in result]
    return [ops.convert_to_numpy(result)]


def tensor_mask(mask):
    return None if mask is None else ops.convert_to_tensor(mask)


def randomize(layer, rng):
    """Random weights, biases included, so that a bias dropped shows."""
    layer.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in layer.weights]
    )


def assert_config_round_trip(layer):
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == (
        f"keras_self_attention>{type(layer).__name__}"
    )
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(layer)
    assert again.get_config() == config
    return rebuilt


def assert_save_and_load(model, inputs, directory, extension=".keras"):
    """Saves `model`, loads it back and checks it predicts the same."""
    path = os.path.join(directory, "model" + extension)
    model.save(path)
    loaded = keras.models.load_model(path)
    expected = to_numpy(model.predict(inputs, verbose=0))
    actual = to_numpy(loaded.predict(inputs, verbose=0))
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    return loaded


def numeric_gradient(function, x, epsilon=1e-5):
    """Central differences of the scalar `function` at float64 `x`."""
    x = np.array(x, dtype=np.float64)
    gradient = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = epsilon
        gradient[index] = (function(x + step) - function(x - step)) / (
            2 * epsilon
        )
    return gradient


def assert_input_gradient_matches(layer, reference, x, mask, rng):
    """`d/dx sum(c * layer(x))` equals central differences of `reference`.

    `reference(x)` is the float64 numpy output of the layer for inputs `x`.
    """
    if not layer.built:
        layer.build(x.shape)
    output = reference(x)
    cotangent = rng.standard_normal(output.shape).astype("float32")
    _, grads = layer_gradients(layer, x, mask, cotangent)
    expected = numeric_gradient(
        lambda value: np.sum(cotangent * reference(value)), x
    )
    assert np.all(np.isfinite(grads[0]))
    np.testing.assert_allclose(grads[0], expected, rtol=1e-3, atol=1e-4)


def assert_fit_improves(
    model, x, y, loss="sparse_categorical_crossentropy", epochs=10
):
    """Training under `jit_compile` runs and lowers the loss.

    torch.compile is slow to warm up and optional in Keras; the other two
    backends compile the whole step with XLA.
    """
    model.compile(
        optimizer="adam",
        loss=loss,
        jit_compile=keras.backend.backend() != "torch",
    )
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=epochs, batch_size=4, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before
