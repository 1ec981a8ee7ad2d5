"""Pure attention math shared by the layers: key windows, masks, softmax.

Every function here takes and returns backend tensors, holds no state and
uses only `keras.ops`, so it runs unchanged on TensorFlow, JAX and PyTorch
and can be tested on its own.
"""

import keras
from keras import ops


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
