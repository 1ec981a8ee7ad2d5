"""The `SeqSelfAttention` layer."""

import math
import numbers

import keras
from keras import ops

from keras_self_attention import (
    additive_scores,
    attention_ops,
    attention_plan,
    call_inputs,
)
from keras_self_attention.arguments import (
    check_bool,
    check_choice,
    check_positive_int,
    get_object,
)


@keras.saving.register_keras_serializable(package="keras_self_attention")
class SeqSelfAttention(keras.layers.Layer):
    """Self-attention over the time steps of a sequence.

    Each time step `t` (the query) scores every time step `t'` (the key)
    and returns the average of the inputs weighted by those scores:

    - additive: `h[t, t'] = tanh(x_t Wt + x_t' Wx + bh)`,
      `e[t, t'] = h[t, t'] Wa + ba` (https://arxiv.org/abs/1806.01264);
    - multiplicative: `e[t, t'] = x_t Wa x_t'^T + ba`;
    - `e = attention_activation(e)` if an activation is given;
    - `a[t] = softmax(e[t])` over the allowed keys only, and
      `v_t = sum_t' a[t, t'] x_t'`.

    A key is allowed when it is inside the query's local window (if
    `attention_width` is set), not after the query (if `history_only`), and
    not padding (if the input carries a Keras mask). A query with no allowed
    key gets zero weights and a zero output. Padded steps are read as zeros,
    so whatever they hold (NaN and inf included) changes neither the real
    steps' outputs nor any gradient, and padded inputs get zero gradient.

    Args:
        units: dimension of the hidden vectors `h` of additive attention.
            Defaults to `32`.
        attention_width: width `w` of the local window, or `None` to attend
            to the whole sequence. Without `history_only`, query `t` sees
            `t - w // 2 <= t' < t - w // 2 + w`; with it, `t - w < t' <= t`.
            Defaults to `None`.
        attention_type: `"additive"` (`ATTENTION_TYPE_ADD`) or
            `"multiplicative"` (`ATTENTION_TYPE_MUL`).
            Defaults to `"additive"`.
        return_attention: whether to also return the attention weights.
            Defaults to `False`.
        history_only: whether a query only attends to itself and earlier
            steps (causal attention). Defaults to `False`.
        kernel_initializer: initializer for `Wt`, `Wx` and `Wa`.
            Defaults to `"glorot_normal"`.
        bias_initializer: initializer for `bh` and `ba`.
            Defaults to `"zeros"`.
        kernel_regularizer: regularizer for the kernels. Defaults to `None`.
        bias_regularizer: regularizer for the biases. Defaults to `None`.
        kernel_constraint: constraint for the kernels. Defaults to `None`.
        bias_constraint: constraint for the biases. Defaults to `None`.
        use_additive_bias: whether additive attention uses `bh`.
            Defaults to `True`.
        use_attention_bias: whether the scores use `ba`. Defaults to `True`.
        attention_activation: activation applied to the scores `e`.
            Defaults to `None`.
        attention_regularizer_weight: if positive, adds
            `weight * sum_b ||A_b A_b^T - I||^2 / batch_size` to the layer's
            losses, over the real steps only: the rows and columns of padded
            steps are left out of `A` and `I` (0.51 counted them). A finite
            number. Defaults to `0.0`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of shape `(batch_size, T, dim)`; `T` may vary.
            Integer inputs are cast to the layer's compute dtype.
        mask: optional boolean tensor of shape `(batch_size, T)` (or
            `(1, T)`), `False` for padding; any other shape is a
            `ValueError`. Keras passes it on from
            `Embedding(mask_zero=True)` or `Masking`.
        training: Keras's training flag. It changes no result, only how
            long global attention is computed: `True` (as in `fit`) keeps
            the memory of a training step bounded at any length with a
            loop; otherwise (`predict`, a direct call, an exported model)
            no loop is used, so every runtime can run the model. A custom
            training loop on long sequences should pass `training=True`.

    Returns:
        A tensor of shape `(batch_size, T, dim)`; with `return_attention`,
        a tuple of it and the weights of shape `(batch_size, T, T)`, indexed
        `[batch, query, key]`. The output mask is the input mask.

    Example:

    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> SeqSelfAttention(attention_width=3)(x).shape
    (2, 5, 8)
    """

    ATTENTION_TYPE_ADD = "additive"
    ATTENTION_TYPE_MUL = "multiplicative"

    def __init__(
        self,
        units=32,
        attention_width=None,
        attention_type=ATTENTION_TYPE_ADD,
        return_attention=False,
        history_only=False,
        kernel_initializer="glorot_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_additive_bias=True,
        use_attention_bias=True,
        attention_activation=None,
        attention_regularizer_weight=0.0,
        **kwargs,
    ):
        check_positive_int("units", units)
        check_positive_int("attention_width", attention_width, True)
        check_choice(
            "attention_type",
            attention_type,
            (self.ATTENTION_TYPE_ADD, self.ATTENTION_TYPE_MUL),
        )
        for name, value in (
            ("return_attention", return_attention),
            ("history_only", history_only),
            ("use_additive_bias", use_additive_bias),
            ("use_attention_bias", use_attention_bias),
        ):
            check_bool(name, value)
        if (
            isinstance(attention_regularizer_weight, bool)
            or not isinstance(attention_regularizer_weight, numbers.Real)
            or not attention_regularizer_weight >= 0
            or not math.isfinite(attention_regularizer_weight)
        ):
            raise ValueError(
                "`attention_regularizer_weight` must be a finite number "
                ">= 0. "
                "Received: attention_regularizer_weight="
                f"{attention_regularizer_weight!r}"
            )
        super().__init__(**kwargs)
        self.units = units
        self.attention_width = attention_width
        self.attention_type = attention_type
        self.return_attention = return_attention
        self.history_only = history_only
        self.kernel_initializer = get_object(
            keras.initializers, "kernel_initializer", kernel_initializer
        )
        self.bias_initializer = get_object(
            keras.initializers, "bias_initializer", bias_initializer
        )
        self.kernel_regularizer = get_object(
            keras.regularizers, "kernel_regularizer", kernel_regularizer
        )
        self.bias_regularizer = get_object(
            keras.regularizers, "bias_regularizer", bias_regularizer
        )
        self.kernel_constraint = get_object(
            keras.constraints, "kernel_constraint", kernel_constraint
        )
        self.bias_constraint = get_object(
            keras.constraints, "bias_constraint", bias_constraint
        )
        self.use_additive_bias = use_additive_bias
        self.use_attention_bias = use_attention_bias
        self.attention_activation = (
            None
            if attention_activation is None
            else get_object(
                keras.activations,
                "attention_activation",
                attention_activation,
            )
        )
        self.attention_regularizer_weight = float(attention_regularizer_weight)
        self.supports_masking = True

    def _kernel(self, name, shape):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )

    def _bias(self, name, shape):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "`SeqSelfAttention` expects inputs of shape "
                f"(batch_size, T, dim). Received: input_shape={input_shape}"
            )
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "`SeqSelfAttention` expects inputs of shape "
                "(batch_size, T, dim) with a known `dim`. "
                f"Received: input_shape={input_shape}"
            )
        # The creation order fixes the order of `get_weights()`, which must
        # match keras-self-attention 0.51 so that its weights load.
        self.bh = self.ba = None
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            self.Wt = self._kernel("Wt", (dim, self.units))
            self.Wx = self._kernel("Wx", (dim, self.units))
            if self.use_additive_bias:
                self.bh = self._bias("bh", (self.units,))
            self.Wa = self._kernel("Wa", (self.units, 1))
        else:
            self.Wa = self._kernel("Wa", (dim, dim))
        if self.use_attention_bias:
            self.ba = self._bias("ba", (1,))
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: dim})

    def _attention_path(self, inputs, training=True):
        """How to compute this call: one of `attention_plan.PATHS`.

        `training` is Keras's flag (`True`, `False` or `None`), see
        `attention_plan.choose_path`.
        """
        batch_size, length = inputs.shape[0], inputs.shape[1]
        return attention_plan.choose_path(
            self.attention_type,
            self.attention_width,
            needs_weights=bool(
                self.attention_activation is not None
                or self.return_attention
                or self.attention_regularizer_weight
            ),
            batch_size=attention_ops.static_size(batch_size),
            length=attention_ops.static_size(length),
            units=self.units,
            # JAX's shape polymorphism: sizes that are neither ints nor
            # unknown, and cannot be compared with a number.
            symbolic=any(
                size is not None and attention_ops.static_size(size) is None
                for size in (batch_size, length)
            ),
            training=training,
        )

    def _queries_and_keys(self, inputs):
        """Additive attention's `x Wt + bh` and `x Wx`."""
        queries = ops.matmul(inputs, self.Wt)
        if self.bh is not None:
            queries = queries + self.bh
        return queries, ops.matmul(inputs, self.Wx)

    def _finish_scores(self, scores):
        if self.ba is not None:
            scores = scores + ops.cast(self.ba, scores.dtype)
        if self.attention_activation is not None:
            scores = self.attention_activation(scores)
        return scores

    def _additive_scores(self, inputs, path, training):
        """`(batch_size, T, T)` additive scores on the dense kernel or loop."""
        queries, keys = self._queries_and_keys(inputs)
        kernel = ops.squeeze(self.Wa, -1)

        def dense():
            return additive_scores.dense_additive_scores(
                queries,
                keys,
                kernel,
                attention_plan.hidden_reduction(training),
            )

        def blocked():
            return additive_scores.blocked_additive_scores(
                queries, keys, kernel
            )

        def per_unit():
            return additive_scores.per_unit_additive_scores(
                queries, keys, kernel
            )

        kernels = {"dense": dense, "blocked": blocked, "per_unit": per_unit}
        if path in kernels:
            return kernels[path]()
        # "dense_or_blocked" or "dense_or_per_unit": decided as it runs.
        batch_size, length = ops.shape(inputs)[:2]
        return ops.cond(
            attention_plan.dense_hidden_fits(
                batch_size, length, self.units, training
            ),
            dense,
            kernels[path.split("_or_")[1]],
        )

    def _dense_attention(self, inputs, mask, path, training):
        """Outputs and `(batch_size, T, T)` weights."""
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            scores = self._additive_scores(inputs, path, training)
        else:
            # A product of two inputs overflows float16 easily, so the
            # scores are computed in the softmax's dtype.
            dtype = attention_ops.softmax_dtype(inputs.dtype)
            keys = ops.cast(inputs, dtype)
            queries = ops.matmul(keys, ops.cast(self.Wa, dtype))
            scores = ops.matmul(queries, ops.transpose(keys, (0, 2, 1)))
        allowed = attention_ops.allowed_keys(
            ops.shape(inputs)[1], self.attention_width, self.history_only, mask
        )
        weights = ops.cast(
            attention_ops.masked_softmax(self._finish_scores(scores), allowed),
            inputs.dtype,
        )
        return ops.matmul(weights, inputs), weights

    def _band_attention(self, inputs, mask):
        """Outputs and `(batch_size, T, w)` band weights of local attention."""
        width, history_only = self.attention_width, self.history_only
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            queries, keys = self._queries_and_keys(inputs)
            scores = additive_scores.band_additive_scores(
                queries,
                attention_ops.window_slots(keys, width, history_only),
                ops.squeeze(self.Wa, -1),
            )
        else:
            dtype = attention_ops.softmax_dtype(inputs.dtype)
            queries = ops.matmul(
                ops.cast(inputs, dtype), ops.cast(self.Wa, dtype)
            )
            scores = attention_ops.band_dot_scores(
                queries, ops.cast(inputs, dtype), width, history_only
            )
        allowed = attention_ops.band_allowed_keys(
            ops.shape(inputs)[1], width, history_only, mask
        )
        weights = ops.cast(
            attention_ops.masked_softmax(self._finish_scores(scores), allowed),
            inputs.dtype,
        )
        outputs = attention_ops.band_weighted_sum(
            weights, inputs, width, history_only
        )
        return outputs, weights

    def _fused_outputs(self, inputs, mask):
        dtype = attention_ops.softmax_dtype(inputs.dtype)
        values = ops.cast(inputs, dtype)
        queries = ops.matmul(values, ops.cast(self.Wa, dtype))
        key_mask = None
        if mask is not None:
            key_mask = ops.cast(mask, "bool")[:, None, None, :]
        outputs = ops.dot_product_attention(
            ops.expand_dims(queries, 2),
            ops.expand_dims(values, 2),
            ops.expand_dims(values, 2),
            mask=key_mask,
            scale=1.0,
            is_causal=self.history_only,
        )
        outputs = ops.squeeze(outputs, 2)
        if mask is not None:
            # The op spreads a query with no allowed key evenly over all
            # keys; such a query must output zeros instead.
            real = ops.cast(mask, "int32")
            if self.history_only:
                has_key = ops.cumsum(real, axis=1) > 0
            else:
                has_key = ops.sum(real, axis=1, keepdims=True) > 0
            outputs = ops.where(
                ops.expand_dims(has_key, -1), outputs, ops.zeros_like(outputs)
            )
        if self.ba is not None:
            # `ba` shifts every score equally, so its gradient is zero; it is
            # kept in the graph so that Keras does not warn that it has none
            # (the op's `bias` argument cannot go with a mask on torch).
            outputs = outputs + 0.0 * ops.cast(self.ba, outputs.dtype)
        return ops.cast(outputs, inputs.dtype)

    def _empty_outputs(self, inputs):
        """The outputs of a call with no sequence or no step."""
        outputs = ops.zeros_like(inputs)
        if not self.return_attention:
            return outputs
        batch_size, length = ops.shape(inputs)[:2]
        return outputs, ops.zeros((batch_size, length, length), inputs.dtype)

    def call(self, inputs, mask=None, training=None):
        inputs = call_inputs.float_inputs(inputs, self.compute_dtype)
        call_inputs.check_mask("SeqSelfAttention", mask, inputs)
        if 0 in attention_ops.static_shape(inputs)[:2]:
            return self._empty_outputs(inputs)
        # Padded steps are read as zeros: what they hold cannot matter.
        inputs = call_inputs.zero_padding(inputs, mask)
        path = self._attention_path(inputs, training)
        if path == "fused":
            return self._fused_outputs(inputs, mask)
        band = path == "band"
        if band:
            outputs, weights = self._band_attention(inputs, mask)
        else:
            outputs, weights = self._dense_attention(
                inputs, mask, path, training
            )
        if self.attention_regularizer_weight > 0:
            if band:
                regularization = attention_ops.band_attention_regularization(
                    weights, self.attention_width, self.history_only, mask
                )
            else:
                regularization = attention_ops.attention_regularization(
                    weights, mask
                )
            self.add_loss(self.attention_regularizer_weight * regularization)
        if not self.return_attention:
            return outputs
        if band:
            weights = attention_ops.band_to_dense(
                weights, self.attention_width, self.history_only
            )
        return outputs, weights

    def compute_output_shape(self, input_shape):
        if self.return_attention:
            batch_size, length = input_shape[0], input_shape[1]
            return tuple(input_shape), (batch_size, length, length)
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        if self.return_attention:
            return mask, None
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "attention_width": self.attention_width,
                "attention_type": self.attention_type,
                "return_attention": self.return_attention,
                "history_only": self.history_only,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self.bias_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(
                    self.bias_constraint
                ),
                "use_additive_bias": self.use_additive_bias,
                "use_attention_bias": self.use_attention_bias,
                "attention_activation": (
                    None
                    if self.attention_activation is None
                    else keras.activations.serialize(self.attention_activation)
                ),
                "attention_regularizer_weight": (
                    self.attention_regularizer_weight
                ),
            }
        )
        return config

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {"SeqSelfAttention": SeqSelfAttention}
