"""Plain numpy references for the layers, written from the formulas.

Deliberately naive (loops over queries and keys, float64) so that they are
easy to check by eye against the README; the layers are compared to them.
"""

import numpy as np

ACTIVATIONS = {
    None: lambda e: e,
    "sigmoid": lambda e: 1.0 / (1.0 + np.exp(-e)),
    "tanh": np.tanh,
    "relu": lambda e: np.maximum(e, 0.0),
}


def is_allowed(query, key, attention_width, history_only):
    if history_only and key > query:
        return False
    if attention_width is None:
        return True
    if history_only:
        start = query - attention_width + 1
    else:
        start = query - attention_width // 2
    return start <= key < start + attention_width


def seq_self_attention(
    x,
    weights,
    attention_type="additive",
    attention_width=None,
    history_only=False,
    attention_activation=None,
    mask=None,
    use_additive_bias=True,
    use_attention_bias=True,
):
    """Returns `(outputs, attention, regularization)` for inputs `x`.

    `weights` is the list `get_weights()` returns, in 0.51's order. Padded
    steps are read as zeros, and left out of the regularization.
    """
    x = np.asarray(x, dtype=np.float64)
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    batch_size, length, _ = x.shape
    if mask is None:
        mask = np.ones((batch_size, length), dtype=bool)
    x = np.where(mask[..., None], x, 0.0)
    if attention_type == "additive":
        w_t, w_x = weights[0], weights[1]
        b_h = weights[2] if use_additive_bias else 0.0
        w_a = weights[3 if use_additive_bias else 2]
    else:
        w_a = weights[0]
    b_a = weights[-1][0] if use_attention_bias else 0.0
    activation = ACTIVATIONS[attention_activation]

    attention = np.zeros((batch_size, length, length))
    for b in range(batch_size):
        for t in range(length):
            scores = {}
            for s in range(length):
                if not mask[b, s] or not is_allowed(
                    t, s, attention_width, history_only
                ):
                    continue
                if attention_type == "additive":
                    h = np.tanh(x[b, t] @ w_t + x[b, s] @ w_x + b_h)
                    e = h @ w_a[:, 0] + b_a
                else:
                    e = x[b, t] @ w_a @ x[b, s] + b_a
                scores[s] = activation(e)
            if not scores:
                continue
            top = max(scores.values())
            total = sum(np.exp(e - top) for e in scores.values())
            for s, e in scores.items():
                attention[b, t, s] = np.exp(e - top) / total
    outputs = attention @ x
    real = [np.flatnonzero(mask[b]) for b in range(batch_size)]
    regularization = 0.0
    for b, steps in enumerate(real):
        a = attention[b][np.ix_(steps, steps)]
        regularization += np.sum((a @ a.T - np.eye(len(steps))) ** 2)
    return outputs, attention, regularization / batch_size


def _softmax_over(scores):
    """Softmax of a dict `{position: score}`; empty for no positions."""
    if not scores:
        return {}
    top = max(scores.values())
    total = sum(np.exp(e - top) for e in scores.values())
    return {s: np.exp(e - top) / total for s, e in scores.items()}


def seq_weighted_attention(x, kernel, bias=None, mask=None):
    """Returns `(outputs, weights)` of weighted pooling over the steps of `x`.

    `e_t = x_t W + b`, `a = softmax(e)` over the unmasked steps,
    `y = sum_t a_t x_t`.
    """
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    bias = 0.0 if bias is None else float(np.asarray(bias).reshape(()))
    batch_size, length, dim = x.shape
    if mask is None:
        mask = np.ones((batch_size, length), dtype=bool)
    x = np.where(mask[..., None], x, 0.0)
    weights = np.zeros((batch_size, length))
    outputs = np.zeros((batch_size, dim))
    for b in range(batch_size):
        scores = {
            t: x[b, t] @ kernel[:, 0] + bias
            for t in range(length)
            if mask[b, t]
        }
        for t, a in _softmax_over(scores).items():
            weights[b, t] = a
            outputs[b] += a * x[b, t]
    return outputs, weights


def scaled_dot_product_attention(
    query,
    key,
    value,
    key_mask=None,
    history_only=False,
    previous=None,
    query_mask=None,
):
    """Returns `(outputs, scores, weights)` of scaled dot-product attention.

    `scores[t, s] = q_t . k_s / sqrt(d_k) (+ previous[t, s])`; query `t`
    attends to the unmasked keys `s` (with `history_only`, `s <= t`).
    Padded steps (queries by `query_mask`, keys and values by `key_mask`)
    are read as zeros.
    """
    query, key, value = (
        np.asarray(t, dtype=np.float64) for t in (query, key, value)
    )
    batch_size, query_length, dim = query.shape
    key_length = key.shape[1]
    if key_mask is None:
        key_mask = np.ones((batch_size, key_length), dtype=bool)
    key = np.where(key_mask[..., None], key, 0.0)
    value = np.where(key_mask[..., None], value, 0.0)
    if query_mask is not None:
        query = np.where(query_mask[..., None], query, 0.0)
    scores = np.zeros((batch_size, query_length, key_length))
    weights = np.zeros_like(scores)
    outputs = np.zeros((batch_size, query_length, value.shape[-1]))
    for b in range(batch_size):
        for t in range(query_length):
            for s in range(key_length):
                scores[b, t, s] = query[b, t] @ key[b, s] / np.sqrt(dim)
                if previous is not None:
                    scores[b, t, s] += previous[b, t, s]
            allowed = {
                s: scores[b, t, s]
                for s in range(key_length)
                if key_mask[b, s] and not (history_only and s > t)
            }
            for s, a in _softmax_over(allowed).items():
                weights[b, t, s] = a
                outputs[b, t] += a * value[b, s]
    return outputs, scores, weights
