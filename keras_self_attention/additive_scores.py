"""Additive attention scores `e[t, s] = sum_u w[u] * tanh(q[t, u] + k[s, u])`.

The hidden tensor `h = tanh(q_t + k_s)` has `units` times more entries than
the scores, so nearly all of additive attention's time goes into passes over
it, and each elementwise pass costs about as much as the `tanh`. The kernels
here differ in how many passes they make and how much of `h` is alive:

- `dense_additive_scores`: `h` built whole, a few large kernels and no
  loop; automatic differentiation keeps `h` for the gradient. Memory: a
  few tensors the size of `h`.
- `blocked_additive_scores`: a loop over blocks of query rows, the gradient
  recomputing `h` a block at a time. Memory: the scores plus one block; the
  loop costs a fixed few milliseconds a call on TensorFlow.
- `per_unit_additive_scores`: for inference, the sum over units taken one
  unit at a time in `units` unrolled steps over `(batch, T, S)`. Memory:
  a few score-sized tensors; no loop op, so an exported model runs in any
  runtime.
- `band_additive_scores`: local attention, one window slot at a time.

Which one a call uses is decided in `attention_plan`.
"""

import keras
from keras import ops

from keras_self_attention import attention_plan
from keras_self_attention.attention_ops import block_count, pad_to_multiple


def _hidden(queries, keys):
    """`tanh(queries[:, t] + keys[:, s])`, shape `(batch, T, S, units)`."""
    return ops.tanh(ops.expand_dims(queries, 2) + ops.expand_dims(keys, 1))


def _hidden_gradients(upstream, hidden, kernel_row):
    """Gradients of `e = hidden . w` through `hidden = tanh(q + k)`.

    With `g` the upstream gradient of `e`:
    `dq = w (sum_s g - sum_s g h^2)`, `dk = w (sum_t g - sum_t g h^2)`.
    The sums over `s` are matrix products, the cheapest pass over `h`.

    Args:
        upstream: `(batch, T, S)`.
        hidden: `(batch, T, S, units)`.
        kernel_row: `(1, 1, units)`.

    Returns:
        `(dq, dk)` of shapes `(batch, T, units)` and `(batch, S, units)`.
    """
    squared = hidden * hidden
    weighted_rows = ops.squeeze(
        ops.matmul(ops.expand_dims(upstream, 2), squared), 2
    )
    d_queries = kernel_row * (
        ops.sum(upstream, axis=2, keepdims=True) - weighted_rows
    )
    d_keys = kernel_row * (
        ops.expand_dims(ops.sum(upstream, axis=1), -1)
        - ops.sum(ops.expand_dims(upstream, -1) * squared, axis=1)
    )
    return d_queries, d_keys


def _kernel_gradient(upstream, hidden, units):
    """`dw = sum g h` over batch, queries and keys, as one matrix product."""
    flat_upstream = ops.reshape(upstream, (1, -1))
    return ops.transpose(
        ops.matmul(flat_upstream, ops.reshape(hidden, (-1, units)))
    )


def _scores_from_hidden(hidden, kernel):
    """`hidden . kernel` over the last axis: `(..., units)` to `(...)`.

    One 2-D matrix product reads `hidden` once; a batched one with a single
    output column is about twice as slow on TensorFlow.
    """
    shape = list(ops.shape(hidden))
    rows = shape[0]
    for size in shape[1:-1]:
        rows = rows * size
    flat = ops.matmul(ops.reshape(hidden, (rows, shape[-1])), kernel)
    return ops.reshape(flat, shape[:-1])


def dense_additive_scores(queries, keys, kernel, reduction="matmul"):
    """Global additive scores from the whole hidden tensor at once.

    Automatic differentiation of this formula is as fast as any gradient
    written out with `keras.ops` (measured on all three backends): its
    `tanh` gradient is one fused kernel and its sums are plain reductions.

    Args:
        queries: tensor of shape `(batch_size, T, units)`, the additive bias
            already added.
        keys: tensor of shape `(batch_size, S, units)`.
        kernel: tensor of shape `(units,)`.
        reduction: `"matmul"` sums over units with a matrix product,
            `"sum"` with an elementwise product and a sum, which XLA fuses
            into the `tanh` (see `attention_plan.hidden_reduction`).

    Returns:
        Scores of shape `(batch_size, T, S)`.
    """
    hidden = _hidden(queries, keys)
    if reduction == "sum":
        return ops.sum(hidden * kernel, axis=-1)
    return _scores_from_hidden(hidden, ops.expand_dims(kernel, -1))


def per_unit_additive_scores(queries, keys, kernel):
    """Global additive scores summed over the hidden units one at a time.

    Each of the `units` steps (unrolled in Python, so no loop op) adds
    `w[u] * tanh(q[:, :, u] + k[:, :, u])` over `(batch, T, S)`, so no
    tensor is larger than the scores. Without a gradient it takes about
    the dense kernel's time (TensorFlow, batch 8, `T = 2048`: 1.33 s against
    1.83 s for the row-block loop); its gradient would keep every step's
    `tanh`, so it is for inference only. Arguments and result as for
    `dense_additive_scores`.
    """
    query_units = ops.unstack(ops.transpose(queries, (2, 0, 1)), axis=0)
    key_units = ops.unstack(ops.transpose(keys, (2, 0, 1)), axis=0)
    scores = None
    for unit, (query, key) in enumerate(
        zip(query_units, key_units, strict=True)
    ):
        term = kernel[unit] * ops.tanh(
            ops.expand_dims(query, 2) + ops.expand_dims(key, 1)
        )
        scores = term if scores is None else scores + term
    return scores


def rows_per_block(units, size):
    """Rows of the hidden tensor per loop step.

    About `attention_plan.block_elements()` elements a sequence (half a
    megabyte on a CPU). `size` is the number of keys, if known; `None` or a
    symbolic size (JAX export) counts as 2048.
    """
    if not isinstance(size, int):
        size = 2048
    elements = attention_plan.block_elements()
    return max(1, elements // (units * max(1, size)))


@ops.custom_gradient
def _blocked_scores(queries, keys, kernel):
    """Additive scores with a hand-written gradient that recomputes `tanh`.

    `queries` is `(batch_size, T, units)`, `keys` `(batch_size, S, units)`
    and `kernel` `(units, 1)`. Both passes loop over blocks of a few query
    rows, so only a `(batch_size, rows, S, units)` block of the hidden
    tensor is alive at any time; the gradient being written out, nothing is
    stored per step for the backward pass either.
    """
    batch_size, length, units = ops.shape(queries)
    size = ops.shape(keys)[1]
    row_block = rows_per_block(units, keys.shape[1])
    padded = pad_to_multiple(queries, 1, row_block)
    steps = block_count(length, row_block)
    # (steps, batch_size, rows, units): one loop step per leading entry.
    query_rows = ops.transpose(
        ops.reshape(padded, (batch_size, steps, row_block, units)),
        (1, 0, 2, 3),
    )

    def score_rows(carry, rows):
        rows = _scores_from_hidden(_hidden(rows, keys), kernel)
        return rows, rows  # `scan` wants the carry shaped like the output

    _, scores = ops.scan(
        score_rows,
        ops.zeros((batch_size, row_block, size), queries.dtype),
        query_rows,
    )
    scores = ops.reshape(
        ops.transpose(scores, (1, 0, 2, 3)),
        (batch_size, steps * row_block, size),
    )[:, :length]

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        upstream = pad_to_multiple(
            ops.cast(upstream, queries.dtype), 1, row_block
        )
        kernel_row = ops.reshape(kernel, (1, 1, units))

        def backward_rows(step, carry):
            d_queries, d_keys, d_kernel = carry
            start = step * row_block
            rows = ops.slice(
                padded, (0, start, 0), (batch_size, row_block, units)
            )
            row_upstream = ops.slice(
                upstream, (0, start, 0), (batch_size, row_block, size)
            )
            hidden = _hidden(rows, keys)
            row_grads, key_grads = _hidden_gradients(
                row_upstream, hidden, kernel_row
            )
            d_queries = ops.slice_update(d_queries, (0, start, 0), row_grads)
            d_kernel = d_kernel + _kernel_gradient(row_upstream, hidden, units)
            return d_queries, d_keys + key_grads, d_kernel

        d_queries, d_keys, d_kernel = ops.fori_loop(
            0,
            steps,
            backward_rows,
            (
                ops.zeros_like(padded),
                ops.zeros_like(keys),
                ops.zeros_like(kernel),
            ),
        )
        return d_queries[:, :length], d_keys, d_kernel

    return scores, grad


def blocked_additive_scores(queries, keys, kernel):
    """Global additive scores, a block of query rows at a time.

    The hidden tensor is never built whole, in the forward pass or in the
    gradient: a loop computes it a few query rows at a time, and the
    gradient recomputes it the same way. Peak memory is the scores plus one
    block. Arguments and result as for `dense_additive_scores`.
    """
    return _blocked_scores(queries, keys, ops.expand_dims(kernel, -1))


def _slot_scores(queries, keys, kernel):
    return ops.sum(ops.tanh(queries + keys) * kernel, axis=-1)


_slot_scores_remat = keras.remat(_slot_scores)


def band_additive_scores(queries, key_slots, kernel):
    """Additive scores of a band, one window slot at a time.

    Args:
        queries: tensor of shape `(batch_size, T, units)`, the additive bias
            already added.
        key_slots: list of `w` tensors of shape `(batch_size, T, units)`,
            as `window_slots` returns them.
        kernel: tensor of shape `(units,)`.

    Returns:
        Scores of shape `(batch_size, T, w)`.
    """
    return ops.stack(
        [_slot_scores_remat(queries, keys, kernel) for keys in key_slots],
        axis=-1,
    )
