"""Reads the attention weights out of a trained model."""

import keras
import numpy as np

from keras_self_attention.arguments import check_positive_int


def _attention_layers(model):
    return [
        layer
        for layer in model.layers
        if "return_attention" in layer.get_config()
    ]


def _find_layer(model, layer):
    if isinstance(layer, str):
        return model.get_layer(layer)
    if isinstance(layer, keras.layers.Layer):
        if layer not in model.layers:
            raise ValueError(
                "`layer` must be one of the model's layers. "
                f"Received: layer={layer.name!r}"
            )
        return layer
    if layer is not None:
        raise ValueError(
            "`layer` must be a layer, a layer name or `None`. "
            f"Received: layer={layer!r}"
        )
    candidates = _attention_layers(model)
    if len(candidates) != 1:
        names = [candidate.name for candidate in candidates]
        raise ValueError(
            "The model has "
            f"{len(candidates)} attention layers {names}; pass `layer=` "
            "to choose one."
        )
    return candidates[0]


def _call_arguments(layer):
    """The tensors `layer` was called on in the model, and its mask.

    `layer.input` lists every tensor of the call, the (boolean) masks Keras
    passed on included.
    """
    tensors = keras.tree.flatten(layer.input)
    masks = [tensor for tensor in tensors if tensor.dtype == "bool"]
    inputs = [tensor for tensor in tensors if tensor.dtype != "bool"]
    if len(inputs) == 1:
        return inputs[0], (masks[0] if len(masks) == 1 else None)
    # Several inputs: each carries its own Keras mask to the new call.
    return inputs, None


def get_attention_weights(model, inputs, layer=None, batch_size=32):
    """Returns the attention weights one layer of `model` gives `inputs`.

    The model is not changed, and nothing needs rebuilding by hand: a copy
    of the attention layer with `return_attention=True` shares the trained
    weights and is called on the same intermediate tensor (and mask) as the
    original.

    Args:
        model: a built functional or `Sequential` Keras model.
        inputs: the model's inputs for a few sequences, as numpy arrays or
            tensors (a list or dict of them for several inputs).
        layer: the attention layer, its name, or `None` for the model's
            only layer that has a `return_attention` argument
            (`SeqSelfAttention`, `SeqWeightedAttention`,
            `ScaledDotProductAttention`, ...). Defaults to `None`.
        batch_size: how many sequences go through the model at once.
            Defaults to `32`.

    Returns:
        A numpy array of the weights, of shape `(batch_size, T, T)` and
        indexed `[batch, query, key]` for `SeqSelfAttention`. Padded keys
        have zero weight.

    Example:

    >>> weights = get_attention_weights(model, tokens)
    >>> plot_attention(weights[0])
    """
    check_positive_int("batch_size", batch_size)
    layer = _find_layer(model, layer)
    if "return_attention" not in layer.get_config():
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no "
            "`return_attention` argument, so it has no attention weights "
            "to return."
        )
    if layer.return_attention:
        outputs = layer.output
    else:
        config = layer.get_config()
        config.update(return_attention=True, name=f"{layer.name}_weights")
        if "attention_regularizer_weight" in config:
            config["attention_regularizer_weight"] = 0.0
        reader = type(layer).from_config(config)
        layer_inputs, mask = _call_arguments(layer)
        if mask is None:
            outputs = reader(layer_inputs)
        else:
            outputs = reader(layer_inputs, mask=mask)
        reader.set_weights(layer.get_weights())
    # The inputs' structure (one tensor, a list or a dict) as the model's.
    if len(model.inputs) == 1:
        model_inputs = model.inputs[0]
    else:
        model_inputs = model.input
    reader_model = keras.Model(model_inputs, outputs[-1])
    # Called directly rather than through `predict`, which would compile a
    # new function for every model and input length.
    count = len(keras.tree.flatten(inputs)[0])
    weights = [
        keras.ops.convert_to_numpy(
            reader_model(
                keras.tree.map_structure(
                    lambda x, start=start: x[start : start + batch_size],
                    inputs,
                ),
                training=False,
            )
        )
        for start in range(0, count, batch_size)
    ]
    return np.concatenate(weights)
