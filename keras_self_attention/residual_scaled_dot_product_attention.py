"""The `ResidualScaledDotProductAttention` layer."""

import keras
from keras import ops

from keras_self_attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)


@keras.saving.register_keras_serializable(package="keras_self_attention")
class ResidualScaledDotProductAttention(ScaledDotProductAttention):
    """Scaled dot-product attention with residual scores (RealFormer).

    The scores of the previous attention layer are added to this layer's
    scores before the softmax, and the sum is passed on to the next layer
    (https://arxiv.org/abs/2012.11747):

    - `S = Q K^T / sqrt(d_k) + S_prev`;
    - `Attention = softmax(S) V`, over the allowed keys.

    A key is allowed when it is not padding (if the keys carry a Keras mask)
    and, with `history_only`, not after the query. A query with no allowed
    key gets zero weights and a zero output. `S` is passed on before
    masking, so the next layer masks it again.

    Args:
        return_attention: whether to also return the attention weights.
            Defaults to `False`.
        history_only: whether query `t` only attends to keys `t' <= t`
            (causal attention). Defaults to `False`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a list `[x, previous_scores]` (self-attention,
            `Q = K = V = x`) or `[query, key, value, previous_scores]`, with
            `query` of shape `(batch_size, Tq, dk)`, `key` `(batch_size, Tk,
            dk)`, `value` `(batch_size, Tk, dv)` and `previous_scores`
            `(batch_size, Tq, Tk)` (zeros for the first layer).
        mask: optional list of masks, one per input; the key mask (that of
            `x` or of `key`) removes padded keys.

    Returns:
        A tuple `(outputs, scores)`, with `outputs` of shape
        `(batch_size, Tq, dv)` and the new scores `S` of shape
        `(batch_size, Tq, Tk)`; with `return_attention`, the weights of shape
        `(batch_size, Tq, Tk)` come third. The output mask is the query
        mask.

    Example:

    >>> x = np.random.rand(2, 5, 4).astype("float32")
    >>> scores = np.zeros((2, 5, 5), "float32")
    >>> layer = ResidualScaledDotProductAttention()
    >>> outputs, scores = layer([x, scores])
    >>> outputs, scores = layer([outputs, scores])
    >>> outputs.shape, scores.shape
    ((2, 5, 4), (2, 5, 5))
    """

    def _unpack(self, items, single):
        if single or len(items) not in (2, 4):
            received = "one tensor" if single else f"{len(items)} inputs"
            raise ValueError(
                "`ResidualScaledDotProductAttention` expects a list "
                "[x, previous_scores] or "
                "[query, key, value, previous_scores]. "
                f"Received: {received}"
            )
        if len(items) == 2:
            return [items[0], items[0], items[0], items[1]]
        return list(items)

    def call(self, inputs, mask=None):
        query, key, value, previous, key_mask = self._prepare(
            inputs, mask, False
        )
        scores = self._scores(query, key)
        scores = scores + ops.cast(previous, scores.dtype)
        outputs, weights = self._attend(scores, value, key_mask)
        scores = ops.cast(scores, query.dtype)
        if self.return_attention:
            return outputs, scores, weights
        return outputs, scores

    def compute_output_shape(self, input_shape):
        output_shape, scores_shape = self._output_shapes(input_shape)
        if self.return_attention:
            return output_shape, scores_shape, scores_shape
        return output_shape, scores_shape

    def compute_mask(self, inputs, mask=None):
        query_mask, _ = self._masks(mask, False)
        if self.return_attention:
            return query_mask, None, None
        return query_mask, None

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {
            "ResidualScaledDotProductAttention": (
                ResidualScaledDotProductAttention
            )
        }
