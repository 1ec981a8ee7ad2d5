"""What the layers do with a call's tensors before any attention math.

- `float_inputs`: integer or boolean inputs are cast to the layer's compute
  dtype, as `keras.layers.Dense` does, so an attention layer never returns
  a silently truncated integer result.
- `check_mask`: a mask must be `(batch_size, T)` for the tensor it masks
  (a batch of 1 broadcasts); any other shape is a `ValueError` naming both
  shapes, on every backend, instead of a mask silently applied along the
  wrong axis.
- `zero_padding`: padded steps are replaced by zeros before they are read,
  so whatever they hold (NaN and inf included) reaches neither the real
  outputs nor their gradients (`0 * NaN` is NaN, so zero attention weights
  alone would not do).
"""

import keras
from keras import ops

from keras_self_attention import attention_ops


def float_inputs(tensor, dtype):
    """`tensor` cast to the float `dtype` unless it is floating already."""
    if "float" in keras.backend.standardize_dtype(tensor.dtype):
        return tensor
    return ops.cast(tensor, dtype)


def check_mask(layer_name, mask, tensor, name="mask"):
    """Raises a `ValueError` unless `mask` fits `(batch_size, T)` of `tensor`.

    Sizes unknown when the call is traced are not compared.

    Args:
        layer_name: the layer's class name, for the message.
        mask: the mask, or `None` (nothing to check).
        tensor: the `(batch_size, T, ...)` tensor the mask belongs to.
        name: how the message names the mask.
    """
    if mask is None:
        return
    mask_shape = attention_ops.static_shape(mask)
    shape = attention_ops.static_shape(tensor)
    batch_ok = None in (mask_shape[0], shape[0]) or mask_shape[0] in (
        1,
        shape[0],
    )
    if (
        len(mask_shape) != 2
        or not batch_ok
        or (None not in (mask_shape[1], shape[1]) and mask_shape[1] != shape[1])
    ):
        raise ValueError(
            f"`{layer_name}` expects `{name}` of shape (batch_size, T) = "
            f"{shape[:2]} for inputs of shape {shape}. "
            f"Received: {name}.shape={mask_shape}"
        )


def zero_padding(tensor, mask):
    """`tensor` `(batch_size, T, dim)` with its padded steps set to zero.

    `mask` is `(batch_size, T)`, `False` for padding, or `None`.
    """
    if mask is None:
        return tensor
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.cast(mask, "bool")
    # A scalar zero: no zeros tensor to build (this runs on every call).
    return ops.where(ops.expand_dims(mask, -1), tensor, 0.0)
