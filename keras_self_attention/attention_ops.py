"""Pure attention math shared by the layers: windows, bands, masks, softmax.

Local attention works on *bands*: for a window of width `w`, slot `j` of
query `t` holds key `window_start(t) + j`, so band tensors have shape
`(batch_size, T, w, ...)` instead of `(batch_size, T, T, ...)`.

Every function here takes and returns backend tensors, holds no state and
uses only `keras.ops`, so it runs unchanged on TensorFlow, JAX and PyTorch
and can be tested on its own.
"""

import numbers
import warnings

import keras
from keras import ops

from keras_self_attention import attention_plan

# What `masked_softmax` puts in place of a disallowed logit.
FILLER = -1e30


def static_size(size):
    """`size` if it is a Python int, else `None` (unknown or symbolic).

    Symbolic sizes (JAX's shape polymorphism when exporting) cannot be
    compared with a number, so they count as unknown too.
    """
    if isinstance(size, numbers.Integral):
        return int(size)
    return None


def static_shape(tensor):
    """`tensor`'s shape, each size through `static_size`."""
    return tuple(static_size(size) for size in tensor.shape)


def positions(length):
    """The steps `0 .. length - 1` as int32; `length` may be a tensor.

    The start is spelled out: JAX's ONNX exporter (jax2onnx) cannot read an
    `arange` with only a symbolic stop.
    """
    if static_size(length) is not None:
        return ops.arange(0, length, dtype="int32")
    return ops.cumsum(ops.ones((length,), "int32")) - 1


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
    return [take(padded, 1, j, length) for j in range(attention_width)]


def window_stack(keys, attention_width, history_only):
    """`window_slots` stacked on a new axis 1, in a few large ops.

    The padded keys are repeated once per slot into rows of `T + w - 1`
    steps; re-read as rows one step longer, row `j` starts `j` steps later,
    so its first `T` steps are slot `j`: a broadcast and a pad, where
    stacking `w` slices is `w` small ops each way. The rows keep their last
    `w` steps, which are no query's keys: cutting them from the much smaller
    tensors computed from the rows costs less than a pass over the rows.

    Args:
        keys: tensor of shape `(batch_size, T, units)`.
        attention_width: the window width `w`, a positive Python int.
        history_only: whether the window ends at the query.

    Returns:
        A tensor of shape `(batch_size, w, T + w, units)`; `[:, j, :T]` is
        slot `j` of `window_slots`.
    """
    before, after = window_padding(attention_width, history_only)
    batch_size, length, units = ops.shape(keys)
    padded = ops.pad(keys, [(0, 0), (before, after), (0, 0)])
    span = length + attention_width - 1
    repeated = ops.broadcast_to(
        ops.expand_dims(padded, 1), (batch_size, attention_width, span, units)
    )
    flat = ops.reshape(repeated, (batch_size, attention_width * span * units))
    flat = pad_end(flat, 1, attention_width * units)
    return ops.reshape(flat, (batch_size, attention_width, span + 1, units))


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
    steps = positions(length)
    keys = ops.expand_dims(
        window_start(steps, attention_width, history_only), 1
    ) + positions(attention_width)
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
    steps = positions(length)
    slot = ops.expand_dims(steps, 0) - ops.expand_dims(
        window_start(steps, attention_width, history_only), 1
    )
    inside = ops.logical_and(slot >= 0, slot < attention_width)
    slot = ops.clip(slot, 0, attention_width - 1)
    dense = ops.take_along_axis(
        band,
        ops.broadcast_to(slot, (*ops.shape(band)[:1], length, length)),
        axis=-1,
    )
    return ops.where(inside, dense, ops.zeros_like(dense))


def take(tensor, axis, start, size):
    """`size` steps of `axis` of `tensor` from `start` on.

    An `ops.slice`: TensorFlow's gradient of it is one pad, where a strided
    slice's (`tensor[:, a:b]`) is a scatter several times slower (the
    band's training step, TensorFlow, batch 32, width 15, `T = 100`: 16.1
    ms against 22.5 ms with strided slices, 0.4 ms of it the softmax).
    `start` is a Python int; `size` may be a tensor.
    """
    shape = list(ops.shape(tensor))
    axis = axis % len(shape)
    begin = [0] * len(shape)
    begin[axis] = start
    shape[axis] = size
    return ops.slice(tensor, begin, shape)


def pad_end(tensor, axis, amount):
    """Appends `amount` zeros along `axis`; `amount` a Python int."""
    widths = [(0, 0)] * len(tensor.shape)
    widths[axis] = (0, amount)
    return ops.pad(tensor, widths)


def _pad_end_to(tensor, axis, size, most):
    """Zero-pads `axis` to `size` steps, `size` at most `most` more.

    `size` may be a tensor (or a symbolic size): the padding is `most`
    steps, a Python int, and the result is cut back to `size`, so that no
    shape is computed from a size unknown when traced (which JAX's ONNX
    exporter cannot follow).
    """
    return take(pad_end(tensor, axis, most), axis, 0, size)


def block_count(length, block):
    """How many blocks of `block` steps cover `length` steps."""
    return (length + block - 1) // block


def pad_to_multiple(tensor, axis, block):
    """Zero-pads `axis` of `tensor` up to a multiple of `block`."""
    size = ops.shape(tensor)[axis]
    if static_size(size) is not None:
        return pad_end(tensor, axis, block_count(size, block) * block - size)
    return _pad_end_to(
        tensor, axis, block_count(size, block) * block, block - 1
    )


def _query_blocks(tensor, block):
    """`(batch_size, T, ...)` to `(batch_size, ceil(T / block), block, ...)`.

    Sizes are spelled out rather than `-1`, so that JAX can export the layer
    with a symbolic `T`.
    """
    shape = list(ops.shape(tensor))
    blocks = block_count(shape[1], block)
    tensor = pad_to_multiple(tensor, 1, block)
    return ops.reshape(tensor, [shape[0], blocks, block, *shape[2:]])


def _join_query_blocks(tensor, length):
    """Inverse of `_query_blocks`, cut back to `length` steps."""
    shape = list(ops.shape(tensor))
    joined = ops.reshape(tensor, [shape[0], shape[1] * shape[2], *shape[3:]])
    return take(joined, 1, 0, length)


def window_blocks(values, attention_width, history_only):
    """The keys each block of `band_block(w)` queries can see.

    Query `t = c * block + i` sees keys `i : i + w` of block `c`, so a band
    turns into a small dense product per block (see `_band_to_blocks`).

    Args:
        values: tensor of shape `(batch_size, T, dim)`.
        attention_width: the window width `w`.
        history_only: whether the window ends at the query.

    Returns:
        A tensor of shape `(batch_size, ceil(T / block), block + w - 1, dim)`.
    """
    block = attention_plan.band_block(attention_width)
    before, after = window_padding(attention_width, history_only)
    shape = list(ops.shape(values))
    length = shape[1]
    blocks = block_count(length, block)
    # Whole blocks, then one more for the `w - 1` keys after the last of
    # them: `T + w - 1 <= (blocks + 1) * block` steps, at most `2 * block`
    # more than `T` (`blocks * block < T + block`). One pad when `T` is
    # known when traced; a few small ops each way count at short lengths.
    if static_size(length) is not None:
        end = (blocks + 1) * block - length - before
        padded = ops.pad(values, [(0, 0), (before, end), (0, 0)])
    else:
        padded = ops.pad(values, [(0, 0), (before, after), (0, 0)])
        padded = _pad_end_to(padded, 1, (blocks + 1) * block, 2 * block)
    grouped = ops.reshape(padded, [shape[0], blocks + 1, block, *shape[2:]])
    current = take(grouped, 1, 0, blocks)
    if attention_width == 1:
        return current
    following = take(grouped, 1, 1, blocks)
    if attention_width - 1 < block:
        following = take(following, 2, 0, attention_width - 1)
    return ops.concatenate([current, following], axis=2)


def _band_to_blocks(band, attention_width):
    """`(..., block, w)` band to `(..., block, block + w - 1)` dense blocks.

    Row `i` moves right by `i`: padding each row to `block + w` and
    re-reading the flat buffer with rows one shorter does exactly that.
    """
    shape = list(ops.shape(band))
    block = shape[-2]
    band = pad_end(band, len(shape) - 1, block)
    flat = ops.reshape(band, [*shape[:-2], block * (block + attention_width)])
    flat = take(flat, -1, 0, block * (block + attention_width - 1))
    return ops.reshape(flat, [*shape[:-2], block, block + attention_width - 1])


def _blocks_to_band(dense, attention_width):
    """Inverse of `_band_to_blocks`."""
    shape = list(ops.shape(dense))
    block = shape[-2]
    flat = ops.reshape(dense, [*shape[:-2], shape[-2] * shape[-1]])
    flat = pad_end(flat, len(shape) - 2, block)
    rows = ops.reshape(flat, [*shape[:-2], block, block + attention_width])
    return take(rows, -1, 0, attention_width)


def band_dot_scores(queries, keys, attention_width, history_only):
    """`scores[t, j] = queries[t] . key at slot j`, as blocked matmuls.

    Each block of `band_block(w)` queries gets its dense scores against the
    keys its windows cover (`window_blocks`), and each row of those is moved
    back to its window's slots.

    Args:
        queries: tensor of shape `(batch_size, T, dim)`.
        keys: tensor of shape `(batch_size, T, dim)`.
        attention_width: the window width `w`.
        history_only: whether the window ends at the query.

    Returns:
        Scores of shape `(batch_size, T, w)`: slot `j` of query `t` scores
        key `window_start(t) + j` (a zero key outside the sequence).
    """
    key_blocks = window_blocks(keys, attention_width, history_only)
    query_blocks = _query_blocks(
        queries, attention_plan.band_block(attention_width)
    )
    dense = ops.matmul(query_blocks, ops.swapaxes(key_blocks, -1, -2))
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
    block = attention_plan.band_block(attention_width)
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
        steps = positions(length)
        queries = ops.expand_dims(steps, 1)
        keys = ops.expand_dims(steps, 0)
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

    Disallowed entries are replaced by `FILLER` before the softmax reads
    them, so NaN or inf there cannot leak, and a row with no allowed entry
    is zeroed by a has-a-key factor taken from `allowed` alone. The softmax
    is the backend's op (TensorFlow, batch 32, forward and gradient of
    `(T, T)` weights at `T = 50`: 1.2 ms against 2.1 ms for a written-out
    form with the masking inside), except for small tensors, where the op's
    fixed cost makes the written-out form faster
    (`attention_plan.written_softmax`).

    Args:
        logits: float tensor.
        allowed: boolean tensor broadcastable to `logits`, or `None`.
        axis: the axis to normalise over.

    Returns:
        A tensor shaped and typed like `logits`.
    """
    dtype = logits.dtype
    if 0 in static_shape(logits):
        # Nothing to normalise (and no maximum to take).
        return ops.zeros_like(logits)
    logits = ops.cast(logits, softmax_dtype(dtype))
    if allowed is None:
        return ops.cast(_softmax(logits, axis), dtype)
    # The filler only has to lose to every real logit and stay finite, so
    # that no inf - inf appears in the gradient.
    filled = ops.where(allowed, logits, ops.cast(FILLER, logits.dtype))
    has_key = ops.cast(ops.any(allowed, axis=axis, keepdims=True), filled.dtype)
    return ops.cast(_softmax(filled, axis) * has_key, dtype)


def _written_softmax(logits, axis):
    """The softmax as its maximum, exponentials, sum and quotient.

    The maximum only keeps the exponentials finite: the softmax does not
    depend on it, so it takes no gradient.
    """
    peak = ops.stop_gradient(ops.max(logits, axis=axis, keepdims=True))
    exps = ops.exp(logits - peak)
    return exps / ops.sum(exps, axis=axis, keepdims=True)


def _softmax(logits, axis):
    """`ops.softmax`, or written out where that is faster (small tensors).

    `ops.softmax` is called without Keras's warning about an axis of one
    entry: a window of width 1, or a sequence of one step, has one key,
    whose weight is 1, right, not the mistake Keras warns about. The softmax
    itself still runs, so that a graph traced on one step (PyTorch's ONNX
    export traces a sample) holds for any length.
    """
    if attention_plan.written_softmax(static_shape(logits)):
        return _written_softmax(logits, axis)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="You are using a softmax over axis"
        )
        return ops.softmax(logits, axis=axis)


def _real_steps(weights, mask):
    """`weights` with padded query rows zeroed, and the real steps as floats.

    Padded key columns are zero already (no query attends to padding), so
    this leaves the padded steps out of `A`. Returns `(weights, real)`,
    `real` of shape `(batch_size, T)` (`None` without a mask).
    """
    weights = ops.cast(weights, "float32")
    if mask is None:
        return weights, None
    real = ops.broadcast_to(ops.cast(mask, "float32"), ops.shape(weights)[:2])
    return weights * ops.expand_dims(real, -1), real


def attention_regularization(weights, mask=None):
    """The attention regularizer `sum_b ||A_b A_b^T - I||^2 / batch_size`.

    Only real steps count: with a mask, the rows and columns of padded steps
    are left out of `A` and `I`, so the term does not depend on how much
    padding a sequence has.

    Args:
        weights: attention weights of shape `(batch_size, T, T)`.
        mask: optional `(batch_size, T)` mask, `False` for padding.

    Returns:
        A float32 scalar.
    """
    weights, real = _real_steps(weights, mask)
    gram = ops.matmul(weights, ops.transpose(weights, (0, 2, 1)))
    identity = ops.eye(ops.shape(weights)[-1], dtype="float32")
    if real is not None:
        identity = identity * ops.expand_dims(real, -1)
    batch_size = ops.cast(ops.shape(weights)[0], "float32")
    return ops.sum(ops.square(gram - identity)) / batch_size


def band_attention_regularization(
    band, attention_width, history_only, mask=None
):
    """`attention_regularization` of band weights, without a `T x T` tensor.

    `A A^T` is zero more than `w - 1` steps off its diagonal, so only the
    diagonals `d = 0 .. w - 1` are computed:
    `(A A^T)[t, t + d] = sum_j band[t, j] * band[t + d, j - d]`, and
    `||G - I||^2 = sum G^2 - 2 trace(G) + (the number of real steps)`.

    Args:
        band: band weights of shape `(batch_size, T, w)`.
        mask: optional `(batch_size, T)` mask, `False` for padding.

    Returns:
        A float32 scalar equal to `attention_regularization` of the dense
        weights.
    """
    band, real = _real_steps(band, mask)
    length = ops.shape(band)[1]
    squares = ops.zeros((), "float32")
    trace = ops.sum(ops.square(band))
    for offset in range(attention_width):
        # Slices whose gradient is a pad (see `take`).
        slots = attention_width - offset
        later = take(pad_end(band, 1, offset), 1, offset, length)
        later = take(later, 2, 0, slots)
        diagonal = ops.sum(take(band, 2, offset, slots) * later, axis=-1)
        # Off-diagonal entries appear twice in the symmetric A A^T.
        squares += (1.0 if offset == 0 else 2.0) * ops.sum(ops.square(diagonal))
    batch_size = ops.cast(ops.shape(band)[0], "float32")
    if real is None:
        steps = batch_size * ops.cast(length, "float32")
    else:
        steps = ops.sum(real)
    return (squares - 2.0 * trace + steps) / batch_size
