"""The state of a causal attention stream, and what each new step may see.

A stream feeds a `history_only` layer its sequence a chunk at a time (one
step or many). Step `t` attends to at most the `w` steps `t - w + 1 .. t`
(all earlier steps without a window), so between chunks the layer keeps,
for the last `size` steps (`w - 1`, or `max_length` without a window), what
those later queries need: each step's key, its value and whether it is a
real step (a padded step is never a key), plus how many steps the stream
has seen. Rows run oldest first; slots before the stream's first step are
marked as not real, so they are never attended.

A chunk's queries attend over the state's rows followed by the chunk's own,
`(batch_size, size + n, ...)`, with the window rule written for that
concatenation; the new state is its last `size` rows. No result depends on
how the stream is cut into chunks.
"""

import keras
import numpy as np
from keras import ops

from keras_self_attention.attention_ops import positions

# The state's tensors, in the order `return_state` returns them.
STATE_NAMES = ("keys", "values", "key_mask", "position")


def state_size(attention_width, max_length):
    """Steps the state keeps: `w - 1` with a window, else `max_length`."""
    if attention_width is not None:
        return attention_width - 1
    return max_length


def state_shapes(batch_size, size, key_dim, value_dim):
    """The shapes of the state's tensors, in `STATE_NAMES` order."""
    return [
        (batch_size, size, key_dim),
        (batch_size, size, value_dim),
        (batch_size, size),
        (batch_size,),
    ]


def initial_state(batch_size, size, key_dim, value_dim, dtype):
    """The state of a stream that has seen no step yet."""
    shapes = state_shapes(batch_size, size, key_dim, value_dim)
    return [ops.zeros(shape, dtype) for shape in shapes[:3]] + [
        ops.zeros(shapes[3], "int32")
    ]


def cast(tensor, dtype):
    """`tensor` as `dtype`, with no op when it is one already.

    A one-step call is a few dozen small ops, each with a fixed dispatch
    cost (PyTorch), so the casts that change nothing are left out.
    """
    if keras.backend.standardize_dtype(tensor.dtype) == (
        keras.backend.standardize_dtype(dtype)
    ):
        return tensor
    return ops.cast(tensor, dtype)


def extend(state, keys, values, real):
    """The state's keys, values and key mask followed by the chunk's."""
    return tuple(
        ops.concatenate([cast(old, new.dtype), new], axis=1)
        for old, new in zip(state[:3], (keys, values, real), strict=True)
    )


def allowed_keys(size, length, window, real):
    """Which of the `size + length` rows each of the chunk's queries sees.

    Args:
        size: the state's number of rows (a Python int).
        length: the chunk's number of steps `n`.
        window: how many steps back a query sees, itself included: `w`, or
            `size + 1` for a stream without a window.
        real: `(batch_size, size + n)`, nonzero for real steps.

    Returns:
        Boolean tensor of shape `(batch_size, n, size + n)`: query `i` (row
        `size + i`) sees rows `size + i - window < j <= size + i` that are
        real.
    """
    real = ops.expand_dims(real > 0, 1)
    if isinstance(length, int):
        # Known when traced (one step, say): the window is a constant, and
        # for a single step it holds every row.
        rows = np.arange(length + size)
        queries = np.arange(length)[:, None] + size
        inside = (rows <= queries) & (rows > queries - window)
        if inside.all():
            return real
        return ops.logical_and(ops.convert_to_tensor(inside[None]), real)
    queries = ops.expand_dims(positions(length), 1) + size
    keys = ops.expand_dims(positions(length + size), 0)
    inside = ops.logical_and(keys <= queries, keys > queries - window)
    return ops.logical_and(ops.expand_dims(inside, 0), real)


def advance(extended, position, length, size):
    """The new state: the last `size` rows and the position moved on."""
    if size == 0:
        rows = [tensor[:, :0] for tensor in extended]
    else:
        rows = [tensor[:, -size:] for tensor in extended]
    return [*rows, position + length]
