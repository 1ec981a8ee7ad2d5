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
- `band_stack_additive_scores`: local attention from the band's whole
  hidden tensor, `(batch, w, T + w, units)`, the keys of every window slot
  stacked: a few large kernels, differentiated automatically. Memory: a
  few tensors the size of the band's hidden one.
- `band_additive_scores`: local attention, one window slot at a time, with
  a written gradient: nothing larger than the queries per slot, in `w`
  slots' worth of small ops.

Which one a call uses is decided in `attention_plan`, and so is the
activation that makes the `tanh` (`attention_plan.hidden_activation`):
`tanh(x) = 2 sigmoid(2x) - 1`, and where the sigmoid is the faster kernel
(PyTorch) every kernel here computes `sigmoid(2q + 2k)` instead, the
doubling and the `- 1` folded into the small tensors (`_in_form`), so the
hidden tensor still gets one pass.
"""

import keras
from keras import ops

from keras_self_attention import attention_plan
from keras_self_attention.attention_ops import (
    block_count,
    pad_end,
    pad_to_multiple,
    take,
    window_padding,
    window_slots,
    window_stack,
)


def _in_form(queries, keys, kernel):
    """The kernels' activation, their arguments for it, and a score shift.

    With the sigmoid, `sum_u w[u] * tanh(q + k)` is
    `sum_u 2 w[u] * sigmoid(2q + 2k) - sum_u w[u]`: queries, keys and
    kernel are doubled, and the scores shifted by `-sum(w)` (`None` for no
    shift). Returns `(activation, queries, keys, kernel, shift)`.
    """
    activation = attention_plan.hidden_activation()
    if activation == "tanh":
        return activation, queries, keys, kernel, None
    return (
        activation,
        2.0 * queries,
        2.0 * keys,
        2.0 * kernel,
        -ops.sum(kernel),
    )


def _shifted(scores, shift):
    return scores if shift is None else scores + shift


def _activate(pre_activation, activation):
    if activation == "tanh":
        return ops.tanh(pre_activation)
    return ops.sigmoid(pre_activation)


def _slope_parts(hidden, activation):
    """The activation's slope from its output, as `base - curvature`.

    `tanh' = 1 - h^2`, `sigmoid' = h - h^2`: `(1, h^2)` or `(0, h^2 - h)`,
    so that the sums of `upstream * base` need no pass over `h`.
    """
    squared = hidden * hidden
    if activation == "tanh":
        return 1.0, squared
    return 0.0, squared - hidden


def _slope(hidden, activation):
    """The activation's slope from its output `hidden`."""
    if activation == "tanh":
        return 1.0 - hidden * hidden
    return hidden * (1.0 - hidden)


def _hidden(queries, keys, activation):
    """`f(queries[..., t, :] + keys[..., s, :])`, `(..., T, S, units)`."""
    return _activate(
        ops.expand_dims(queries, -2) + ops.expand_dims(keys, -3), activation
    )


def _hidden_gradients(upstream, hidden, kernel_row, activation):
    """Gradients of `e = hidden . w` through `hidden = f(q + k)`.

    With `g` the upstream gradient of `e` and `f' = base - curvature`
    (`_slope_parts`): `dq = w (base sum_s g - sum_s g curvature)`, and
    `dk` the same over `t`. The sums over `s` are matrix products, the
    cheapest pass over `h`.

    Args:
        upstream: `(batch, T, S)`.
        hidden: `(batch, T, S, units)`.
        kernel_row: `(1, 1, units)`.
        activation: `"tanh"` or `"sigmoid"`.

    Returns:
        `(dq, dk)` of shapes `(batch, T, units)` and `(batch, S, units)`.
    """
    base, curvature = _slope_parts(hidden, activation)
    row_sums = ops.squeeze(
        ops.matmul(ops.expand_dims(upstream, 2), curvature), 2
    )
    column_sums = ops.sum(ops.expand_dims(upstream, -1) * curvature, axis=1)
    if base:
        row_sums = row_sums - base * ops.sum(upstream, axis=2, keepdims=True)
        column_sums = column_sums - base * ops.expand_dims(
            ops.sum(upstream, axis=1), -1
        )
    return -kernel_row * row_sums, -kernel_row * column_sums


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


def _reduced(hidden, kernel, reduction):
    """`hidden . kernel` over the units, `kernel` of shape `(units,)`.

    `reduction` as for `dense_additive_scores`.
    """
    if reduction == "sum":
        return ops.sum(hidden * kernel, axis=-1)
    return _scores_from_hidden(hidden, ops.expand_dims(kernel, -1))


def dense_additive_scores(queries, keys, kernel, reduction="matmul"):
    """Global additive scores from the whole hidden tensor at once.

    Automatic differentiation of this formula is as fast as any gradient
    written out with `keras.ops` (measured on all three backends): its
    `tanh` gradient is one fused kernel and its sums are plain reductions.

    Args:
        queries: tensor of shape `(batch_size, T, units)`, the additive bias
            already added (or `(batch_size, blocks, T, units)`, blocks of
            their own).
        keys: tensor of shape `(batch_size, S, units)` (or
            `(batch_size, blocks, S, units)`).
        kernel: tensor of shape `(units,)`.
        reduction: `"matmul"` sums over units with a matrix product,
            `"sum"` with an elementwise product and a sum, which XLA fuses
            into the activation (see `attention_plan.hidden_reduction`).

    Returns:
        Scores of shape `(batch_size, T, S)` (or `(batch_size, blocks, T, S)`).
    """
    activation, queries, keys, kernel, shift = _in_form(queries, keys, kernel)
    hidden = _hidden(queries, keys, activation)
    return _shifted(_reduced(hidden, kernel, reduction), shift)


def per_unit_additive_scores(queries, keys, kernel):
    """Global additive scores summed over the hidden units one at a time.

    Each of the `units` steps (unrolled in Python, so no loop op) adds
    `w[u] * tanh(q[:, :, u] + k[:, :, u])` over `(batch, T, S)`, so no
    tensor is larger than the scores. Without a gradient it takes about
    the dense kernel's time (TensorFlow, batch 32, `T = 1024`: 0.70 s,
    against 0.66 s for 0.51's whole hidden tensor and 0.76 s for the
    blocked loop); its gradient would keep every step's
    `tanh`, so it is for inference only. Arguments and result as for
    `dense_additive_scores`.
    """
    activation, queries, keys, kernel, shift = _in_form(queries, keys, kernel)
    query_units = ops.unstack(ops.transpose(queries, (2, 0, 1)), axis=0)
    key_units = ops.unstack(ops.transpose(keys, (2, 0, 1)), axis=0)
    # Two running sums, each unit added in after the last one of its own:
    # a graph would otherwise run all the units side by side, each with
    # its `(batch, T, S)` temporaries (TensorFlow, batch 8, `T = 2048`:
    # 4.8 GB at peak against 1.2 GB, in 0.82 s against 0.88 s; one running
    # sum, 1.0 GB, takes 0.99 s).
    sums = [None, None]
    for unit, (query, key) in enumerate(
        zip(query_units, key_units, strict=True)
    ):
        query = ops.expand_dims(query, 2)
        partial = sums[unit % 2]
        if partial is not None:
            query = query + 0.0 * partial[:, :, :1]
        term = kernel[unit] * _activate(
            query + ops.expand_dims(key, 1), activation
        )
        sums[unit % 2] = term if partial is None else partial + term
    scores = sums[0] if sums[1] is None else sums[0] + sums[1]
    return _shifted(scores, shift)


def rows_per_block(units, size, length=None, batch_size=None):
    """Rows of the hidden tensor per loop step.

    About `attention_plan.block_elements()` elements a step, over the whole
    batch. `size` is the number of keys, if known; `None` or a symbolic size
    (JAX export) counts as 2048, and a batch size not known when traced as
    32. With the number of queries `length` known, the rows are spread
    evenly over the steps, so that the last block is not mostly padding
    (`T = 100` in blocks of 40 rows would compute 120).
    """
    if not isinstance(size, int):
        size = 2048
    if not isinstance(batch_size, int):
        batch_size = 32
    elements = attention_plan.block_elements()
    rows = max(1, elements // (batch_size * units * max(1, size)))
    if isinstance(length, int) and length > 0:
        rows = -(-length // block_count(length, rows))
    return rows


def _after(tensor, previous):
    """`tensor`, made to wait for `previous`: a zero that reads it.

    TensorFlow runs up to ten steps of a loop side by side when nothing
    orders them, each with its block of the hidden tensor (batch 8,
    `T = 2048`, steps of 2**23 elements: 2.03 GB at peak against 1.51 GB,
    2.11 s a training step against 2.24 s), so each step of the blocked loop
    reads the previous step's result, which bounds its memory by one block.
    A non-finite value there still adds zero.
    """
    return tensor + 0.0 * ops.nan_to_num(
        previous, nan=0.0, posinf=0.0, neginf=0.0
    )


def _blocked_scores(activation):
    """Additive scores with a hand-written gradient that recomputes `h`.

    The function returned takes `queries` of shape `(batch_size, T, units)`,
    `keys` `(batch_size, S, units)` and `kernel` `(units, 1)`. Both passes
    loop over blocks of a few query rows, so only a
    `(batch_size, rows, S, units)` block of the hidden tensor is alive at
    any time; the gradient being written out, nothing is stored per step
    for the backward pass either.
    """

    @ops.custom_gradient
    def scores(queries, keys, kernel):
        return _blocked_scores_and_gradient(queries, keys, kernel, activation)

    return scores


def _blocked_scores_and_gradient(queries, keys, kernel, activation):
    batch_size, length, units = ops.shape(queries)
    size = ops.shape(keys)[1]
    row_block = rows_per_block(
        units, keys.shape[1], queries.shape[1], queries.shape[0]
    )
    padded = pad_to_multiple(queries, 1, row_block)
    steps = block_count(length, row_block)
    # (steps, batch_size, rows, units): one loop step per leading entry.
    query_rows = ops.transpose(
        ops.reshape(padded, (batch_size, steps, row_block, units)),
        (1, 0, 2, 3),
    )

    def score_rows(carry, rows):
        rows = _after(rows, carry[:, :, :1])
        rows = _scores_from_hidden(_hidden(rows, keys, activation), kernel)
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
            rows = _after(rows, ops.reshape(d_kernel, (1, 1, units)))
            hidden = _hidden(rows, keys, activation)
            row_grads, key_grads = _hidden_gradients(
                row_upstream, hidden, kernel_row, activation
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
    activation, queries, keys, kernel, shift = _in_form(queries, keys, kernel)
    scores = _blocked_scores(activation)(
        queries, keys, ops.expand_dims(kernel, -1)
    )
    return _shifted(scores, shift)


def band_stack_additive_scores(
    queries, keys, kernel, attention_width, history_only, reduction="matmul"
):
    """Additive scores of a band from its whole hidden tensor at once.

    The keys of every window slot, stacked (`window_stack`), make a hidden
    tensor of the band's size, `(batch_size, w, T + w, units)`, in a few
    large kernels, differentiated automatically like the dense kernel's.
    Arguments as for `band_additive_scores`; `reduction` as for
    `dense_additive_scores`. Returns the same scores.
    """
    activation, queries, keys, kernel, shift = _in_form(queries, keys, kernel)
    slots = window_stack(keys, attention_width, history_only)
    # The stacked slots run `w` steps past the queries (no query's keys).
    length = ops.shape(queries)[1]
    queries = pad_end(queries, 1, attention_width)
    hidden = _activate(ops.expand_dims(queries, 1) + slots, activation)
    scores = take(_reduced(hidden, kernel, reduction), 2, 0, length)
    return _shifted(ops.transpose(scores, (0, 2, 1)), shift)


def _band_scores(attention_width, activation):
    """Band scores over keys padded to a full window, with a written gradient.

    Slot `j` of every query's window is the padded keys `j : j + T`. The
    gradient recomputes each slot's activation and adds its key gradient into
    one padded accumulator, a slot after another: automatic differentiation
    kept a key gradient per slot alive for one sum at the end, `w` tensors
    the size of the keys.
    """

    @ops.custom_gradient
    def scores(queries, padded_keys, kernel):
        length = ops.shape(queries)[1]

        def hidden(slot):
            return _activate(
                queries + padded_keys[:, slot : slot + length], activation
            )

        band = ops.stack(
            [
                ops.sum(hidden(slot) * kernel, axis=-1)
                for slot in range(attention_width)
            ],
            axis=-1,
        )

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream = ops.cast(upstream, queries.dtype)
            d_queries = d_kernel = None
            d_keys = ops.zeros_like(padded_keys)
            for slot in range(attention_width):
                slot_queries = queries
                if d_queries is not None:
                    # Not before the last slot's gradient is in: a graph
                    # would otherwise run the slots side by side and keep
                    # their temporaries alive together.
                    slot_queries = queries + 0.0 * d_queries[:, :1, :1]
                slot_hidden = _activate(
                    slot_queries + padded_keys[:, slot : slot + length],
                    activation,
                )
                slot_upstream = upstream[:, :, slot : slot + 1]
                d_hidden = (
                    slot_upstream * kernel * _slope(slot_hidden, activation)
                )
                d_keys = d_keys + ops.pad(
                    d_hidden,
                    [(0, 0), (slot, attention_width - 1 - slot), (0, 0)],
                )
                d_slot_kernel = ops.sum(slot_upstream * slot_hidden, (0, 1))
                if d_queries is None:
                    d_queries, d_kernel = d_hidden, d_slot_kernel
                else:
                    d_queries = d_queries + d_hidden
                    d_kernel = d_kernel + d_slot_kernel
            return d_queries, d_keys, d_kernel

        return band, grad

    return scores


def _slot_scores(activation):
    def scores(queries, keys, kernel):
        return ops.sum(_activate(queries + keys, activation) * kernel, -1)

    return scores


# Each slot's scores, rematerialized for the gradient, per activation.
_REMAT_SLOT_SCORES = {
    activation: keras.remat(_slot_scores(activation))
    for activation in ("tanh", "sigmoid")
}


def band_additive_scores(
    queries, keys, kernel, attention_width, history_only, training=None
):
    """Additive scores of a band, one window slot at a time.

    Nothing larger than the queries is built per slot: memory linear in `T`
    at any length, for `w` slots' worth of small ops.

    In training (`training=True`, a gradient to take) the gradient is
    written out (`_band_scores`); otherwise each slot is rematerialized, the
    form every exporter follows.

    Args:
        queries: tensor of shape `(batch_size, T, units)`, the additive bias
            already added.
        keys: tensor of shape `(batch_size, T, units)`.
        kernel: tensor of shape `(units,)`.
        attention_width: the window's width `w`.
        history_only: whether the window ends at the query.
        training: Keras's training flag.

    Returns:
        Scores of shape `(batch_size, T, w)`; slot `j` of query `t` scores
        key `window_start(t) + j` (a zero key outside the sequence).
    """
    activation, queries, keys, kernel, shift = _in_form(queries, keys, kernel)
    if training is not True:
        slots = window_slots(keys, attention_width, history_only)
        slot_scores = _REMAT_SLOT_SCORES[activation]
        band = ops.stack(
            [slot_scores(queries, slot, kernel) for slot in slots], axis=-1
        )
    else:
        before, after = window_padding(attention_width, history_only)
        padded = ops.pad(keys, [(0, 0), (before, after), (0, 0)])
        band = _band_scores(attention_width, activation)(
            queries, padded, kernel
        )
    return _shifted(band, shift)
