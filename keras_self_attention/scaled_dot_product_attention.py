"""The `ScaledDotProductAttention` layer."""

import math

import keras
from keras import ops

from keras_self_attention import attention_ops, call_inputs
from keras_self_attention.arguments import check_bool


def _is_shape_list(input_shape):
    """Whether `input_shape` holds the shapes of several inputs."""
    return isinstance(input_shape, (list, tuple)) and any(
        isinstance(shape, (list, tuple)) for shape in input_shape
    )


def _allowed_keys(query_length, key_length, history_only, key_mask):
    """Which keys each query may attend to, as a dense boolean tensor.

    Unlike `attention_ops.allowed_keys`, queries and keys may be different
    sequences of different lengths; causal attention aligns their first
    steps, so query `t` sees keys `t' <= t`.

    Returns:
        Boolean tensor of shape `(1, Tq, Tk)`, or `(batch_size, Tq, Tk)`
        when `key_mask` is given; `None` when every key is allowed.
    """
    allowed = None
    if history_only:
        allowed = ops.expand_dims(
            ops.expand_dims(attention_ops.positions(key_length), 0)
            <= ops.expand_dims(attention_ops.positions(query_length), 1),
            0,
        )
    if key_mask is not None:
        keys = ops.expand_dims(ops.cast(key_mask, "bool"), 1)
        allowed = keys if allowed is None else ops.logical_and(allowed, keys)
    return allowed


def _queries_with_keys(query_length, key_mask, history_only):
    """Whether each query has an allowed key, as `(batch_size, Tq or 1, 1)`."""
    real = ops.cast(key_mask, "int32")
    if not history_only:
        return ops.sum(real, axis=1)[:, None, None] > 0
    seen = ops.cumsum(real, axis=1) > 0
    # Query `t` sees keys `0 .. t`; later queries see every key.
    last_key = ops.minimum(
        attention_ops.positions(query_length), ops.shape(key_mask)[1] - 1
    )
    return ops.expand_dims(ops.take(seen, last_key, axis=1), -1)


@keras.saving.register_keras_serializable(package="keras_self_attention")
class ScaledDotProductAttention(keras.layers.Layer):
    """Scaled dot-product attention without weights of its own.

    `Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`
    (https://arxiv.org/abs/1706.03762), where `d_k` is the last dimension of
    the queries and keys. With one input it is self-attention
    (`Q = K = V = inputs`).

    A key is allowed when it is not padding (if the keys carry a Keras mask)
    and, with `history_only`, not after the query. A query with no allowed
    key gets zero weights and a zero output. Padded steps (of the queries,
    and of the keys and values by the key mask) are read as zeros, so
    whatever they hold (NaN and inf included) changes neither the real
    outputs nor any gradient.

    Args:
        return_attention: whether to also return the attention weights.
            Defaults to `False`.
        history_only: whether query `t` only attends to keys `t' <= t`
            (causal attention). Defaults to `False`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of shape `(batch_size, T, dim)`, or a list
            `[query, key, value]` of shapes `(batch_size, Tq, dk)`,
            `(batch_size, Tk, dk)` and `(batch_size, Tk, dv)`. Integer
            inputs are cast to the layer's compute dtype.
        mask: optional boolean mask of shape `(batch_size, T)`, or a list of
            masks, one per input, each `(batch_size, T)` of its input (or
            `(1, T)`); the key mask removes padded keys. Any other shape is
            a `ValueError`.

    Returns:
        A tensor of shape `(batch_size, Tq, dv)`; with `return_attention`,
        a tuple of it and the weights of shape `(batch_size, Tq, Tk)`,
        indexed `[batch, query, key]`. The output mask is the query mask.

    Example:

    >>> query = np.random.rand(2, 3, 4).astype("float32")
    >>> values = np.random.rand(2, 5, 4).astype("float32")
    >>> ScaledDotProductAttention()([query, values, values]).shape
    (2, 3, 4)
    """

    def __init__(self, return_attention=False, history_only=False, **kwargs):
        check_bool("return_attention", return_attention)
        check_bool("history_only", history_only)
        super().__init__(**kwargs)
        self.return_attention = return_attention
        self.history_only = history_only
        self.supports_masking = True

    def _unpack(self, items, single):
        """`[query, key, value, previous_scores]` of the inputs.

        `items` are the call's inputs, their shapes or their masks; `single`
        says whether the layer was called on one tensor.
        """
        if single:
            return [items, items, items, None]
        if len(items) != 3:
            raise ValueError(
                f"`{type(self).__name__}` expects one tensor or a list "
                "[query, key, value]. "
                f"Received: a list of {len(items)} inputs"
            )
        return [*items, None]

    def _masks(self, mask, single):
        """The query and key masks, from the call's mask (or masks)."""
        if mask is None:
            return None, None
        if not single and not isinstance(mask, (list, tuple)):
            raise ValueError(
                f"`{type(self).__name__}` called on a list of inputs expects "
                f"a list of masks, one per input. Received: mask={mask!r}"
            )
        query_mask, key_mask, _, _ = self._unpack(mask, single)
        return query_mask, key_mask

    def _prepare(self, inputs, mask, single):
        """`(query, key, value, previous_scores, key_mask)` of a call.

        Integer inputs are cast to floats, the masks checked against their
        inputs, and padded steps set to zero.
        """
        query, key, value, previous = (
            None
            if tensor is None
            else call_inputs.float_inputs(tensor, self.compute_dtype)
            for tensor in self._unpack(inputs, single)
        )
        query_mask, key_mask = self._masks(mask, single)
        name = type(self).__name__
        if single:
            call_inputs.check_mask(name, key_mask, key)
        else:
            call_inputs.check_mask(name, query_mask, query, "query mask")
            call_inputs.check_mask(name, key_mask, key, "key mask")
            call_inputs.check_mask(name, key_mask, value, "key mask")
        # Self-attention passes one tensor as all three: zeroed once.
        padded_query = call_inputs.zero_padding(query, query_mask)
        padded_key = (
            padded_query
            if key is query and key_mask is query_mask
            else call_inputs.zero_padding(key, key_mask)
        )
        padded_value = (
            padded_key
            if value is key
            else call_inputs.zero_padding(value, key_mask)
        )
        return padded_query, padded_key, padded_value, previous, key_mask

    def build(self, input_shape):
        shapes = self._unpack(input_shape, not _is_shape_list(input_shape))
        names = ("query", "key", "value", "previous_scores")
        for name, shape in zip(names, shapes, strict=True):
            if shape is not None and len(shape) != 3:
                raise ValueError(
                    f"`{type(self).__name__}` expects `{name}` of rank 3, "
                    "(batch_size, T, dim). "
                    f"Received: input_shape={input_shape}"
                )
        query, key, value, previous = shapes
        if previous is not None and any(
            None not in pair and pair[0] != pair[1]
            for pair in zip(previous[1:], (query[1], key[1]), strict=True)
        ):
            raise ValueError(
                f"`{type(self).__name__}` expects `previous_scores` of shape "
                "(batch_size, Tq, Tk). "
                f"Received: input_shape={input_shape}"
            )
        if query[-1] is None:
            raise ValueError(
                f"`{type(self).__name__}` expects queries with a known last "
                f"dimension `d_k`. Received: input_shape={input_shape}"
            )
        if key[-1] is not None and key[-1] != query[-1]:
            raise ValueError(
                f"`{type(self).__name__}` expects queries and keys with the "
                f"same last dimension. Received: input_shape={input_shape}"
            )
        if None not in (key[1], value[1]) and key[1] != value[1]:
            raise ValueError(
                f"`{type(self).__name__}` expects as many values as keys. "
                f"Received: input_shape={input_shape}"
            )

    def _scores(self, query, key):
        """`Q K^T / sqrt(d_k)`, `(batch_size, Tq, Tk)`, in float32 or wider.

        A float16 dot product overflows easily, so the scores are computed
        in the softmax's dtype.
        """
        dtype = attention_ops.softmax_dtype(query.dtype)
        query = ops.cast(query, dtype) * (1.0 / math.sqrt(query.shape[-1]))
        return ops.matmul(query, ops.transpose(ops.cast(key, dtype), (0, 2, 1)))

    def _attend(self, scores, value, key_mask):
        """The outputs and weights for `scores` of shape `(batch, Tq, Tk)`."""
        allowed = _allowed_keys(
            ops.shape(scores)[1],
            ops.shape(scores)[2],
            self.history_only,
            key_mask,
        )
        weights = ops.cast(
            attention_ops.masked_softmax(scores, allowed), value.dtype
        )
        return ops.matmul(weights, value), weights

    def _fused_outputs(self, query, key, value, key_mask):
        dtype = attention_ops.softmax_dtype(query.dtype)
        heads = [
            ops.expand_dims(ops.cast(t, dtype), 2) for t in (query, key, value)
        ]
        outputs = ops.dot_product_attention(
            *heads,
            mask=None
            if key_mask is None
            else ops.cast(key_mask, "bool")[:, None, None, :],
            scale=1.0 / math.sqrt(query.shape[-1]),
            is_causal=self.history_only,
        )
        outputs = ops.squeeze(outputs, 2)
        if key_mask is not None:
            # The op spreads a query with no allowed key evenly over all
            # keys; such a query must output zeros instead.
            has_key = _queries_with_keys(
                ops.shape(query)[1], key_mask, self.history_only
            )
            outputs = ops.where(has_key, outputs, ops.zeros_like(outputs))
        return ops.cast(outputs, query.dtype)

    def call(self, inputs, mask=None):
        single = not isinstance(inputs, (list, tuple))
        query, key, value, _, key_mask = self._prepare(inputs, mask, single)
        # The fused op needs values as wide as the queries on JAX, and
        # lengths known when traced for causal attention there; an exported
        # model (lengths unknown) gets the plain product, which every
        # runtime runs.
        if (
            not self.return_attention
            and query.shape[-1] == value.shape[-1]
            and None not in attention_ops.static_shape(query)[1:]
            and None not in attention_ops.static_shape(key)[1:]
        ):
            return self._fused_outputs(query, key, value, key_mask)
        outputs, weights = self._attend(
            self._scores(query, key), value, key_mask
        )
        if self.return_attention:
            return outputs, weights
        return outputs

    def _output_shapes(self, input_shape):
        """The shapes of the outputs and of the `(batch, Tq, Tk)` weights."""
        query, key, value, _ = self._unpack(
            input_shape, not _is_shape_list(input_shape)
        )
        return (
            (*tuple(query[:-1]), value[-1]),
            (query[0], query[1], key[1]),
        )

    def compute_output_shape(self, input_shape):
        output_shape, weights_shape = self._output_shapes(input_shape)
        if self.return_attention:
            return output_shape, weights_shape
        return output_shape

    def compute_mask(self, inputs, mask=None):
        query_mask, _ = self._masks(mask, not isinstance(inputs, (list, tuple)))
        if self.return_attention:
            return query_mask, None
        return query_mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "return_attention": self.return_attention,
                "history_only": self.history_only,
            }
        )
        return config

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {"ScaledDotProductAttention": ScaledDotProductAttention}
