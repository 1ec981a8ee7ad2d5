"""Gradients of a layer's call on any backend, for comparing code paths."""

import keras
import numpy as np
from keras import ops


def layer_gradients(layer, x, mask, cotangent, training=None):
    """Output, loss and grads of `sum(cotangent * layer(x)) + layer losses`.

    `training` is passed to the call (`True` takes the training paths).

    Returns `(output, [d/dx, d/dweight for each of layer.trainable_weights])`
    as numpy arrays.
    """
    backend = keras.backend.backend()
    mask = None if mask is None else ops.convert_to_tensor(mask)
    # Only layers whose `call` takes `training` are given it.
    extra = {} if training is None else {"training": training}
    cotangent = ops.convert_to_tensor(cotangent)

    def loss_of(output, losses):
        total = ops.sum(ops.cast(output, "float32") * cotangent)
        for extra in losses:
            total = total + extra
        return total

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = layer(x, mask=mask, **extra)
            loss = loss_of(output, layer.losses)
        grads = tape.gradient(
            loss, [x] + [w.value for w in layer.trainable_weights]
        )
    elif backend == "jax":
        import jax

        trainable = [w.value for w in layer.trainable_weights]
        fixed = [w.value for w in layer.non_trainable_weights]

        def compute(x, trainable):
            output, _ = layer.stateless_call(
                trainable,
                fixed,
                x,
                mask=mask,
                return_losses=False,
                **extra,
            )
            return output

        def total(x, trainable):
            output, _, losses = layer.stateless_call(
                trainable,
                fixed,
                x,
                mask=mask,
                return_losses=True,
                **extra,
            )
            return loss_of(output, losses)

        output = compute(x, trainable)
        grad_x, grad_w = jax.grad(total, argnums=(0, 1))(
            ops.convert_to_tensor(x), trainable
        )
        grads = [grad_x, *list(grad_w)]
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        for w in layer.trainable_weights:
            w.value.grad = None
        output = layer(x, mask=mask, **extra)
        loss_of(output, layer.losses).backward()
        grads = [x.grad] + [w.value.grad for w in layer.trainable_weights]
    return ops.convert_to_numpy(output), [
        np.zeros(w.shape) if g is None else ops.convert_to_numpy(g)
        for g, w in zip(grads, [x, *list(layer.trainable_weights)], strict=True)
    ]
