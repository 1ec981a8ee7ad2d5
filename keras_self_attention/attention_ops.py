"""Pure attention math shared by the layers: windows, bands, masks, softmax.

Local attention works on *bands*: for a window of width `w`, slot `j` of
query `t` holds key `window_start(t) + j`, so band tensors have shape
`(batch_size, T, w, ...)` instead of `(batch_size, T, T, ...)`.

Every function here takes and returns backend tensors, holds no state and
uses only `keras.ops`, so it runs unchanged on TensorFlow, JAX and PyTorch
and can be tested on its own.
"""

import keras
from keras import ops

# Global additive scores are computed a block of rows at a time, so at most
# about this many elements of the (T, S, units) hidden tensor of one sequence
# exist at once.
ADDITIVE_BLOCK_ELEMENTS = 2**17

# Local attention's outputs (and multiplicative scores) are small dense
# matrix products over blocks of this many queries.
BAND_BLOCK = 64


def window_start(query_positions, attention_width, history_only):
    """First key position each query may attend to in a local window.

    Query `t` attends to keys `window_start(t) <= t' < window_start(t) + w`.
    With `history_only` the window ends at the query itself; otherwise the
    query sits at offset `w // 2`, so an even width leans to the left.

    Args:
        query_positions: integer tensor of query time steps, any shape.
        attention_width: the window width `w`, a positive Python int.
        history_only: whether the window ends at the query.

    Returns:
        Integer tensor shaped like `query_positions`.
    """
    if history_only:
        return query_positions - (attention_width - 1)
    return query_positions - attention_width // 2


def window_padding(attention_width, history_only):
    """Steps of padding `(before, after)` that give every query a full window.

    With the keys padded this way, the keys of window slot `j` for all
    queries are the padded keys `j : j + T`.
    """
    before = attention_width - 1 if history_only else attention_width // 2
    return before, attention_width - 1 - before


def window_slots(keys, attention_width, history_only):
    """The keys seen by each query through each slot of its window.

    Args:
        keys: tensor of shape `(batch_size, T, ...)`.
        attention_width: the window width `w`, a positive Python int.
        history_only: whether the window ends at the query.

    Returns:
        A list of `w` tensors shaped like `keys`; entry `j` at position `t` is
        key `window_start(t) + j`, or zeros (`False`) outside the sequence.
    """
    before, after = window_padding(attention_width, history_only)
    length = ops.shape(keys)[1]
    padding = [(0, 0), (before, after)] + [(0, 0)] * (len(keys.shape) - 2)
    padded = ops.pad(keys, padding)
    return [padded[:, j : j + length] for j in range(attention_width)]


def band_allowed_keys(length, attention_width, history_only, mask=None):
    """Which window slots hold a real key, as a boolean band.

    Args:
        length: the number of time steps `T`.
        attention_width: the window width `w`, a positive Python int.
        history_only: whether the window ends at the query.
        mask: optional key mask of shape `(batch_size, T)`.

    Returns:
        Boolean tensor of shape `(1, T, w)`, or `(batch_size, T, w)` when
        `mask` is given, indexed `[batch, query, slot]`.
    """
    positions = ops.arange(length, dtype="int32")
    keys = ops.expand_dims(
        window_start(positions, attention_width, history_only), 1
    ) + ops.arange(attention_width, dtype="int32")
    allowed = ops.expand_dims(ops.logical_and(keys >= 0, keys < length), 0)
    if mask is not None:
        slots = window_slots(
            ops.cast(mask, "bool"), attention_width, history_only
        )
        allowed = ops.logical_and(allowed, ops.stack(slots, axis=-1))
    return allowed


def band_to_dense(band, attention_width, history_only):
    """Spreads band weights `(batch_size, T, w)` over `(batch_size, T, T)`.

    Only for `return_attention`: the dense tensor is what the user asked for.
    """
    length = ops.shape(band)[1]
    positions = ops.arange(length, dtype="int32")
    slot = ops.expand_dims(positions, 0) - ops.expand_dims(
        window_start(positions, attention_width, history_only), 1
    )
    inside = ops.logical_and(slot >= 0, slot < attention_width)
    slot = ops.clip(slot, 0, attention_width - 1)
    dense = ops.take_along_axis(
        band,
        ops.broadcast_to(slot, (*ops.shape(band)[:1], length, length)),
        axis=-1,
    )
    return ops.where(inside, dense, ops.zeros_like(dense))


def _pad_end(tensor, axis, amount):
    """Appends `amount` zeros along `axis`; `amount` may be a tensor."""
    shape = list(ops.shape(tensor))
    shape[axis] = amount
    return ops.concatenate([tensor, ops.zeros(shape, tensor.dtype)], axis)


def _block_count(length, block):
    return (length + block - 1) // block


def _pad_to_multiple(tensor, axis, block):
    """Zero-pads `axis` of `tensor` up to a multiple of `block`."""
    size = ops.shape(tensor)[axis]
    return _pad_end(tensor, axis, _block_count(size, block) * block - size)


def _query_blocks(tensor, block):
    """`(batch_size, T, ...)` to `(batch_size, ceil(T / block), block, ...)`.

    Sizes are spelled out rather than `-1`, so that JAX can export the layer
    with a symbolic `T`.
    """
    shape = list(ops.shape(tensor))
    blocks = _block_count(shape[1], block)
    tensor = _pad_to_multiple(tensor, 1, block)
    return ops.reshape(tensor, [shape[0], blocks, block, *shape[2:]])


def _join_query_blocks(tensor, length):
    """Inverse of `_query_blocks`, cut back to `length` steps."""
    shape = list(ops.shape(tensor))
    joined = ops.reshape(tensor, [shape[0], shape[1] * shape[2], *shape[3:]])
    return joined[:, :length]


def _band_block(attention_width):
    return max(BAND_BLOCK, attention_width - 1)


def window_blocks(values, attention_width, history_only):
    """The keys each block of `_band_block(w)` queries can see.

    Query `t = c * block + i` sees keys `i : i + w` of block `c`, so a band
    turns into a small dense product per block (see `_band_to_blocks`).

    Args:
        values: tensor of shape `(batch_size, T, dim)`.

    Returns:
        A tensor of shape `(batch_size, ceil(T / block), block + w - 1, dim)`.
    """
    block = _band_block(attention_width)
    before, after = window_padding(attention_width, history_only)
    length = ops.shape(values)[1]
    blocks = _block_count(length, block)
    padded = ops.pad(values, [(0, 0), (before, after), (0, 0)])
    # `T + w - 1 <= (blocks + 1) * block` long: whole blocks, then one more
    # for the `w - 1` keys after the last of them.
    padded = _pad_end(
        padded, 1, (blocks + 1) * block - (length + before + after)
    )
    current = _query_blocks(padded[:, : blocks * block], block)
    if attention_width == 1:
        return current
    following = _query_blocks(padded[:, block:], block)
    return ops.concatenate(
        [current, following[:, :, : attention_width - 1]], axis=2
    )


def _band_to_blocks(band, attention_width):
    """`(..., block, w)` band to `(..., block, block + w - 1)` dense blocks.

    Row `i` moves right by `i`: padding each row to `block + w` and
    re-reading the flat buffer with rows one shorter does exactly that.
    """
    shape = list(ops.shape(band))
    block = shape[-2]
    band = _pad_end(band, len(shape) - 1, block)
    flat = ops.reshape(band, [*shape[:-2], block * (block + attention_width)])
    flat = flat[..., : block * (block + attention_width - 1)]
    return ops.reshape(flat, [*shape[:-2], block, block + attention_width - 1])


def _blocks_to_band(dense, attention_width):
    """Inverse of `_band_to_blocks`."""
    shape = list(ops.shape(dense))
    block = shape[-2]
    flat = ops.reshape(dense, [*shape[:-2], shape[-2] * shape[-1]])
    flat = _pad_end(flat, len(shape) - 2, block)
    rows = ops.reshape(flat, [*shape[:-2], block, block + attention_width])
    return rows[..., :attention_width]


def band_dot_scores(queries, keys, attention_width, history_only):
    """`scores[t, j] = queries[t] . key at slot j`, as blocked matmuls.

    Args:
        queries: tensor of shape `(batch_size, T, dim)`.
        keys: tensor of shape `(batch_size, T, dim)`.

    Returns:
        Scores of shape `(batch_size, T, w)`.
    """
    block = _band_block(attention_width)
    key_blocks = window_blocks(keys, attention_width, history_only)
    dense = ops.matmul(
        _query_blocks(queries, block), ops.swapaxes(key_blocks, -1, -2)
    )
    band = _blocks_to_band(dense, attention_width)
    return _join_query_blocks(band, ops.shape(queries)[1])


def band_weighted_sum(weights, values, attention_width, history_only):
    """`v_t = sum_j weights[t, j] * value at slot j`, as blocked matmuls.

    Args:
        weights: band weights of shape `(batch_size, T, w)`.
        values: tensor of shape `(batch_size, T, dim)`.

    Returns:
        A tensor of shape `(batch_size, T, dim)`.
    """
    block = _band_block(attention_width)
    dense = _band_to_blocks(_query_blocks(weights, block), attention_width)
    outputs = ops.matmul(
        dense, window_blocks(values, attention_width, history_only)
    )
    return _join_query_blocks(outputs, ops.shape(values)[1])


def allowed_keys(length, attention_width=None, history_only=False, mask=None):
    """Which keys each query may attend to, as a dense boolean tensor.

    Args:
        length: the number of time steps `T` (a Python int or a scalar
            tensor, e.g. `ops.shape(x)[1]`).
        attention_width: width of the local window, or `None` for no window.
        history_only: whether a query only sees itself and earlier steps.
        mask: optional key mask of shape `(batch_size, T)`; `False` marks
            padding, which no query may attend to.

    Returns:
        Boolean tensor of shape `(1, T, T)`, or `(batch_size, T, T)` when
        `mask` is given, indexed `[batch, query, key]`. `None` when every key
        is allowed.
    """
    allowed = None
    if attention_width is not None or history_only:
        positions = ops.arange(length, dtype="int32")
        queries = ops.expand_dims(positions, 1)
        keys = ops.expand_dims(positions, 0)
        if attention_width is None:
            allowed = keys <= queries
        else:
            start = window_start(queries, attention_width, history_only)
            allowed = ops.logical_and(
                keys >= start, keys < start + attention_width
            )
        allowed = ops.expand_dims(allowed, 0)
    if mask is not None:
        key_mask = ops.expand_dims(ops.cast(mask, "bool"), 1)
        allowed = (
            key_mask if allowed is None else ops.logical_and(allowed, key_mask)
        )
    return allowed


def softmax_dtype(dtype):
    """The dtype a softmax over `dtype` logits runs in: at least float32."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype in ("float16", "bfloat16"):
        return "float32"
    return dtype


def masked_softmax(logits, allowed=None, axis=-1):
    """Softmax over the allowed entries of `logits`; zeros elsewhere.

    Runs in at least float32 and casts back, so float16 logits neither
    overflow nor lose the small weights. A row with no allowed entry gets
    all-zero weights rather than NaN, and its gradient is zero too.

    Args:
        logits: float tensor.
        allowed: boolean tensor broadcastable to `logits`, or `None`.
        axis: the axis to normalise over.

    Returns:
        A tensor shaped and typed like `logits`.
    """
    dtype = logits.dtype
    logits = ops.cast(logits, softmax_dtype(dtype))
    if allowed is None:
        return ops.cast(ops.softmax(logits, axis=axis), dtype)
    # The filler only has to lose to every real logit and stay finite, so
    # that disallowed entries never produce inf - inf in the gradient.
    filler = ops.cast(-1e30, logits.dtype)
    logits = ops.where(allowed, logits, filler)
    logits = logits - ops.stop_gradient(
        ops.max(logits, axis=axis, keepdims=True)
    )
    exps = ops.where(allowed, ops.exp(logits), ops.zeros_like(logits))
    total = ops.sum(exps, axis=axis, keepdims=True)
    weights = exps / ops.where(total > 0, total, ops.ones_like(total))
    return ops.cast(weights, dtype)


def attention_regularization(weights):
    """The attention regularizer `sum_b ||A_b A_b^T - I||^2 / batch_size`.

    Args:
        weights: attention weights of shape `(batch_size, T, T)`.

    Returns:
        A float32 scalar.
    """
    weights = ops.cast(weights, "float32")
    gram = ops.matmul(weights, ops.transpose(weights, (0, 2, 1)))
    identity = ops.eye(ops.shape(weights)[-1], dtype="float32")
    batch_size = ops.cast(ops.shape(weights)[0], "float32")
    return ops.sum(ops.square(gram - identity)) / batch_size


def band_attention_regularization(band, attention_width, history_only):
    """`attention_regularization` of band weights, without a `T x T` tensor.

    `A A^T` is zero more than `w - 1` steps off its diagonal, so only the
    diagonals `d = 0 .. w - 1` are computed:
    `(A A^T)[t, t + d] = sum_j band[t, j] * band[t + d, j - d]`.

    Args:
        band: band weights of shape `(batch_size, T, w)`.

    Returns:
        A float32 scalar equal to `attention_regularization` of the dense
        weights.
    """
    band = ops.cast(band, "float32")
    length = ops.shape(band)[1]
    squares = ops.zeros((), "float32")
    trace = ops.sum(ops.square(band))
    for offset in range(attention_width):
        later = ops.pad(band, [(0, 0), (0, offset), (0, 0)])[
            :, offset : offset + length, : attention_width - offset
        ]
        diagonal = ops.sum(band[:, :, offset:] * later, axis=-1)
        # Off-diagonal entries appear twice in the symmetric A A^T.
        squares += (1.0 if offset == 0 else 2.0) * ops.sum(ops.square(diagonal))
    batch_size = ops.cast(ops.shape(band)[0], "float32")
    return (squares - 2.0 * trace) / batch_size + ops.cast(length, "float32")


def _rows_per_block(units, size):
    """Rows of the hidden tensor per loop step: about a megabyte a sequence.

    `size` is the number of keys, if known; `None` or a symbolic size (JAX
    export) counts as 2048.
    """
    if not isinstance(size, int):
        size = 2048
    return max(1, ADDITIVE_BLOCK_ELEMENTS // (units * size))


@ops.custom_gradient
def _additive_scores(queries, keys, kernel):
    """Additive scores with a hand-written gradient that recomputes `tanh`.

    `queries` is `(batch_size, T, units)`, `keys` `(batch_size, S, units)`
    and `kernel` `(units, 1)`. Both passes loop over blocks of a few query
    rows, so only a `(batch_size, rows, S, units)` block of the hidden
    tensor is alive at any time; the gradient being written out, nothing is
    stored per step for the backward pass either. Sums over units are
    matrix products, the cheapest pass over a block.
    """
    batch_size, length, units = ops.shape(queries)
    size = ops.shape(keys)[1]
    row_block = _rows_per_block(units, keys.shape[1])
    padded = _pad_to_multiple(queries, 1, row_block)
    steps = _block_count(length, row_block)
    # (steps, batch_size, rows, 1, units): one loop step per leading entry.
    query_rows = ops.transpose(
        ops.reshape(padded, (batch_size, steps, row_block, 1, units)),
        (1, 0, 2, 3, 4),
    )
    keys = ops.expand_dims(keys, 1)

    def score_rows(carry, rows):
        hidden = ops.tanh(rows + keys)
        rows = ops.squeeze(ops.matmul(hidden, kernel), -1)
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
        upstream = _pad_to_multiple(
            ops.cast(upstream, queries.dtype), 1, row_block
        )
        kernel_row = ops.reshape(kernel, (1, 1, units))

        # With h = tanh(q + k) and g the upstream gradient of e = h . w:
        #   dw = sum g h,  dq = w (sum_s g - sum_s g h^2),
        #   dk = w (sum_t g - sum_t g h^2).
        def backward_rows(step, carry):
            d_queries, d_keys, d_kernel = carry
            start = step * row_block
            rows = ops.slice(
                padded, (0, start, 0), (batch_size, row_block, units)
            )
            row_upstream = ops.slice(
                upstream, (0, start, 0), (batch_size, row_block, size)
            )
            hidden = ops.tanh(ops.expand_dims(rows, 2) + keys)
            flat_upstream = ops.reshape(row_upstream, (1, -1))
            d_kernel = d_kernel + ops.transpose(
                ops.matmul(flat_upstream, ops.reshape(hidden, (-1, units)))
            )
            squared = hidden * hidden
            weighted = ops.matmul(
                ops.expand_dims(row_upstream, 2), squared
            )  # (batch_size, rows, 1, units)
            row_grads = kernel_row * (
                ops.sum(row_upstream, axis=2, keepdims=True)
                - ops.squeeze(weighted, 2)
            )
            d_queries = ops.slice_update(d_queries, (0, start, 0), row_grads)
            d_keys = d_keys + kernel_row * (
                ops.expand_dims(ops.sum(row_upstream, axis=1), -1)
                - ops.sum(ops.expand_dims(row_upstream, -1) * squared, axis=1)
            )
            return d_queries, d_keys, d_kernel

        d_queries, d_keys, d_kernel = ops.fori_loop(
            0,
            steps,
            backward_rows,
            (
                ops.zeros_like(padded),
                ops.zeros_like(ops.squeeze(keys, 1)),
                ops.zeros_like(kernel),
            ),
        )
        return d_queries[:, :length], d_keys, d_kernel

    return scores, grad


def additive_scores(queries, keys, kernel):
    """Global additive scores `e[b, t, s] = sum_u kernel[u] * tanh(q + k)`.

    The hidden tensor `tanh(queries[:, t] + keys[:, s])` has `T x S x units`
    entries per sequence, so it is never built whole, in the forward pass or
    in the gradient: a loop computes it a few query rows at a time, and the
    gradient recomputes it a few key columns at a time. Peak memory is the
    scores plus one block.

    Args:
        queries: tensor of shape `(batch_size, T, units)`, the additive bias
            already added.
        keys: tensor of shape `(batch_size, S, units)`.
        kernel: tensor of shape `(units,)`.

    Returns:
        Scores of shape `(batch_size, T, S)`.
    """
    return _additive_scores(queries, keys, ops.expand_dims(kernel, -1))


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
