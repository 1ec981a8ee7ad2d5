"""A plain numpy reference for SeqSelfAttention, written from the formulas.

Deliberately naive (loops over queries and keys, float64) so that it is easy
to check by eye against the README; the layer is compared to it.
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

    `weights` is the list `get_weights()` returns, in 0.51's order.
    """
    x = np.asarray(x, dtype=np.float64)
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    batch_size, length, _ = x.shape
    if mask is None:
        mask = np.ones((batch_size, length), dtype=bool)
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
    gram = attention @ attention.transpose(0, 2, 1)
    regularization = np.sum((gram - np.eye(length)) ** 2) / batch_size
    return outputs, attention, regularization
