"""The `SeqWeightedAttention` layer."""

import keras
from keras import ops

from keras_self_attention import attention_ops, call_inputs
from keras_self_attention.arguments import check_bool


@keras.saving.register_keras_serializable(package="keras_self_attention")
class SeqWeightedAttention(keras.layers.Layer):
    """Attention pooling: a weighted average of a sequence's time steps.

    Each time step gets one score from a learned linear map, and the scores
    are normalised over the real (unmasked) steps
    (https://arxiv.org/abs/1708.00524):

    - `e_t = x_t W + b`;
    - `a = softmax(e)` over the unmasked steps, `a_t = 0` for padding;
    - `y = sum_t a_t x_t`.

    A sequence whose steps are all padding gets zero weights and a zero
    output. Padded steps are read as zeros, so whatever they hold (NaN and
    inf included) changes neither the output nor any gradient.

    Args:
        use_bias: whether the scores use the bias `b`. It shifts every score
            of a sequence equally, so the softmax ignores it; it is kept for
            keras-self-attention 0.51 weights. Defaults to `True`.
        return_attention: whether to also return the weights `a`.
            Defaults to `False`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of shape `(batch_size, T, dim)`; `T` may vary.
            Integer inputs are cast to the layer's compute dtype.
        mask: optional boolean tensor of shape `(batch_size, T)` (or
            `(1, T)`), `False` for padding; any other shape is a
            `ValueError`.

    Returns:
        A tensor of shape `(batch_size, dim)`; with `return_attention`, a
        tuple of it and the weights of shape `(batch_size, T)`. The outputs
        carry no mask: the time axis is gone.

    Example:

    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> SeqWeightedAttention()(x).shape
    (2, 8)
    """

    def __init__(self, use_bias=True, return_attention=False, **kwargs):
        check_bool("use_bias", use_bias)
        check_bool("return_attention", return_attention)
        super().__init__(**kwargs)
        self.use_bias = use_bias
        self.return_attention = return_attention
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`SeqWeightedAttention` expects inputs of shape "
                "(batch_size, T, dim) with a known `dim`. "
                f"Received: input_shape={input_shape}"
            )
        # Creation order and initializers are those of 0.51, so its weights
        # load with `set_weights`.
        self.W = self.add_weight(
            name="W", shape=(input_shape[-1], 1), initializer="uniform"
        )
        self.b = None
        if self.use_bias:
            self.b = self.add_weight(name="b", shape=(1,), initializer="zeros")
        self.input_spec = keras.layers.InputSpec(
            ndim=3, axes={-1: input_shape[-1]}
        )

    def call(self, inputs, mask=None):
        inputs = call_inputs.float_inputs(inputs, self.compute_dtype)
        call_inputs.check_mask("SeqWeightedAttention", mask, inputs)
        inputs = call_inputs.zero_padding(inputs, mask)
        # Scores in the softmax's dtype: a float16 dot product overflows.
        dtype = attention_ops.softmax_dtype(inputs.dtype)
        scores = ops.squeeze(
            ops.matmul(ops.cast(inputs, dtype), ops.cast(self.W, dtype)), -1
        )
        if self.b is not None:
            scores = scores + ops.cast(self.b, dtype)
        if mask is not None:
            mask = ops.cast(mask, "bool")
        weights = ops.cast(
            attention_ops.masked_softmax(scores, mask), inputs.dtype
        )
        outputs = ops.squeeze(
            ops.matmul(ops.expand_dims(weights, 1), inputs), 1
        )
        if self.return_attention:
            return outputs, weights
        return outputs

    def compute_output_shape(self, input_shape):
        batch_size, length, dim = (
            input_shape[0],
            input_shape[1],
            input_shape[-1],
        )
        if self.return_attention:
            return (batch_size, dim), (batch_size, length)
        return (batch_size, dim)

    def compute_mask(self, inputs, mask=None):
        if self.return_attention:
            return None, None
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "use_bias": self.use_bias,
                "return_attention": self.return_attention,
            }
        )
        return config

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {"SeqWeightedAttention": SeqWeightedAttention}
