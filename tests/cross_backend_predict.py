"""Loads a `.keras` file and saves its predictions, on this process's backend.

Run by `test_export.py` with another `KERAS_BACKEND` than the one that
saved the file, from the repository root:

    KERAS_BACKEND=jax python -m tests.cross_backend_predict model.keras \
        tokens.npz predictions.npz

`tokens.npz` holds named input batches; `predictions.npz` gets
`{batch}_{output}` for each of them and output name in `OUTPUTS`, and
the backend's name under `backend`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_self_attention  # noqa: F401  (registers the layers)

# The outputs of `test_export.attention_model`, in order.
OUTPUTS = ("attended", "pooled", "weights", "heads")


def main(model_path, inputs_path, output_path):
    model = keras.models.load_model(model_path)
    inputs = np.load(inputs_path)
    predictions = {}
    for name in inputs.files:
        outputs = model.predict(inputs[name], verbose=0)
        for output_name, output in zip(OUTPUTS, outputs, strict=True):
            predictions[f"{name}_{output_name}"] = output
    np.savez(output_path, backend=keras.backend.backend(), **predictions)


if __name__ == "__main__":
    main(*sys.argv[1:])
