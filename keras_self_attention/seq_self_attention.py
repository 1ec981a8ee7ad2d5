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
    streaming,
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
        stateful: whether the layer streams: each call continues the
            sequence of the last one, a chunk of one step or many, as
            `LSTM(stateful=True)` does. Needs `history_only=True` and a
            fixed batch size (`keras.Input(batch_shape=...)`); the state
            (see `return_state`) lives in non-trainable variables that are
            not among `weights`, and `reset_state()` starts a new stream.
            Defaults to `False`.
        return_state: whether a call also returns the stream's new state,
            after the outputs (and weights): a list of four tensors, the
            `keys` `(batch_size, size, key_dim)` (`x Wx` for additive
            attention, `x` for multiplicative), the `values`
            `(batch_size, size, dim)`, the `key_mask` `(batch_size, size)`
            (1 for a real step) of the last `size` steps, oldest first, and
            the `position` `(batch_size,)`, the number of steps seen;
            `size` is `attention_width - 1`, or `max_length` without a
            window. Pass it back as `initial_state`. Needs
            `history_only=True`. Defaults to `False`.
        max_length: the longest stream a streaming layer without
            `attention_width` may see (its state keeps the whole history,
            so it needs a bound); a call that would go past it raises a
            `ValueError` (in a compiled function, where nothing can be
            raised, the steps past it output NaN). Optional with a window.
            Defaults to `None`.
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
        initial_state: the state to continue a stream from (a list as
            `return_state` gives it, or from `get_initial_state`); the call
            then streams, whatever `stateful` and `return_state` say. A
            stateful layer keeps the state such a call leaves, as Keras's
            RNNs do.

    Returns:
        A tensor of shape `(batch_size, T, dim)`; with `return_attention`,
        a tuple of it and the weights of shape `(batch_size, T, T)`, indexed
        `[batch, query, key]`; with `return_state`, the four state tensors
        follow. A streaming call's weights are over what its steps can see,
        the state's `size` steps then the chunk's own: `(batch_size, T,
        size + T)`. The output mask is the input mask.

    A streaming call gives the outputs (and mask) that one call on the
    whole stream gives, however the stream is cut into chunks; it computes
    the chunk's scores against the state and the chunk densely, so one step
    costs `O(size)` whatever the stream's length. The attention regularizer
    needs whole sequences: a streaming call adds none, and training one with
    the regularizer is a `ValueError` (train the non-streaming twin).

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
        stateful=False,
        return_state=False,
        max_length=None,
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
            ("stateful", stateful),
            ("return_state", return_state),
        ):
            check_bool(name, value)
        check_positive_int("max_length", max_length, True)
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
        self.stateful = stateful
        self.return_state = return_state
        self.max_length = max_length
        self.supports_masking = True
        self._stream_state = None
        if stateful:
            self._check_streaming("stateful")
        if return_state:
            self._check_streaming("return_state")

    def _check_streaming(self, argument):
        """Raises unless this layer can stream; `argument` asked it to."""
        if not self.history_only:
            raise ValueError(
                f"`{argument}` needs `history_only=True`: a layer that "
                "attends to later steps cannot run before they arrive. "
                "Received: history_only=False"
            )
        if self.attention_width is None and self.max_length is None:
            raise ValueError(
                "A stream without `attention_width` keeps its whole "
                "history, so it needs `max_length`, the longest stream it "
                "may see. Received: max_length=None"
            )

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
        if self.stateful:
            self._build_stream_state(input_shape)

    def _key_dim(self):
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            return self.units
        return self.input_spec.axes[-1]

    def _state_size(self):
        return streaming.state_size(self.attention_width, self.max_length)

    def _build_stream_state(self, input_shape):
        batch_size = input_shape[0]
        if batch_size is None:
            raise ValueError(
                "`stateful=True` needs a fixed batch size: build the model on "
                "`keras.Input(batch_shape=(batch_size, T, dim))`. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        shapes = streaming.state_shapes(
            batch_size, self._state_size(), self._key_dim(), input_shape[-1]
        )
        self._stream_state = [
            self.add_weight(
                name=f"stream_{name}",
                shape=shape,
                initializer="zeros",
                dtype="int32" if name == "position" else None,
                trainable=False,
            )
            for name, shape in zip(streaming.STATE_NAMES, shapes, strict=True)
        ]

    @property
    def weights(self):
        # A stream's state is not a weight: weights copy between a stateful
        # layer and its non-stateful twin, and load from 0.51's files.
        state = {id(variable) for variable in self._stream_state or ()}
        return [w for w in super().weights if id(w) not in state]

    def save_own_variables(self, store):
        for index, variable in enumerate(self.weights):
            store[f"{index}"] = variable

    def load_own_variables(self, store):
        weights = self.weights
        if len(store.keys()) != len(weights):
            raise ValueError(
                f"Layer {self.name!r} expected {len(weights)} variables, "
                f"but received {len(store.keys())} variables during loading. "
                f"Expected: {[w.name for w in weights]}"
            )
        for index, variable in enumerate(weights):
            variable.assign(store[f"{index}"])

    def get_initial_state(self, batch_size):
        """The state of a stream that has seen nothing yet.

        A list of four zero tensors (see `return_state`) to pass as
        `initial_state`; the layer must be built, and able to stream.
        """
        self._check_streaming("get_initial_state")
        if not self.built:
            raise ValueError(
                "`get_initial_state` needs a built layer (call it once, or "
                "`build((batch_size, T, dim))`), which knows `dim`."
            )
        return streaming.initial_state(
            batch_size,
            self._state_size(),
            self._key_dim(),
            self.input_spec.axes[-1],
            self.compute_dtype,
        )

    def reset_state(self):
        """Starts a new stream (a stateful layer; otherwise does nothing)."""
        for variable in self._stream_state or ():
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def reset_states(self):
        """The same as `reset_state` (the name Keras 2 used)."""
        self.reset_state()

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

    def _additive_band_scores(self, inputs, path, training):
        """`(batch_size, T, w)` additive scores, the whole band or by slots."""
        queries, keys = self._queries_and_keys(inputs)
        kernel = ops.squeeze(self.Wa, -1)
        width, history_only = self.attention_width, self.history_only

        def whole():
            return additive_scores.band_stack_additive_scores(
                queries,
                keys,
                kernel,
                width,
                history_only,
                attention_plan.hidden_reduction(training),
            )

        def slots():
            return additive_scores.band_additive_scores(
                queries, keys, kernel, width, history_only, training
            )

        if path == "band":
            return whole()
        if path == "band_slots":
            return slots()
        # "band_or_slots": decided as it runs.
        batch_size, length = ops.shape(inputs)[:2]
        return ops.cond(
            attention_plan.band_hidden_fits(
                batch_size, length, width, self.units, training
            ),
            whole,
            slots,
        )

    def _band_attention(self, inputs, mask, path, training):
        """Outputs and `(batch_size, T, w)` band weights of local attention."""
        width, history_only = self.attention_width, self.history_only
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            scores = self._additive_band_scores(inputs, path, training)
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

    def _check_stream_state(self, state, inputs):
        """`state` as a list of four tensors, or a `ValueError`."""
        expected = streaming.state_shapes(
            inputs.shape[0],
            self._state_size(),
            self._key_dim(),
            inputs.shape[-1],
        )
        if not isinstance(state, (list, tuple)) or len(state) != 4:
            raise ValueError(
                "`initial_state` must be a list of 4 tensors (keys, values, "
                "key_mask, position), as `return_state` and "
                "`get_initial_state` give it. "
                f"Received: initial_state={state!r}"
            )
        for tensor, shape in zip(state, expected, strict=True):
            actual = tuple(tensor.shape)
            if len(actual) != len(shape) or any(
                a is not None and e is not None and a != e
                for a, e in zip(actual, shape, strict=True)
            ):
                raise ValueError(
                    "`initial_state` must have the shapes "
                    f"{[tuple(e) for e in expected]} for inputs of shape "
                    f"{tuple(inputs.shape)}. Received: initial_state shapes "
                    f"{[tuple(t.shape) for t in state]}"
                )
        return list(state)

    def _check_stream_length(self, position, length):
        """Raises if this chunk takes an eager stream past `max_length`."""
        if self.max_length is None:
            return
        try:
            seen = int(ops.convert_to_numpy(ops.max(position)))
            length = int(length)
        except (NotImplementedError, TypeError):
            # A traced call (TensorFlow's graph tensors raise the first,
            # JAX's tracers the second): the steps past the bound output NaN.
            return
        if seen + length > self.max_length:
            raise ValueError(
                f"This stream has seen {seen} steps; {length} more would go "
                f"past `max_length`. Start a new stream (`reset_state()`, "
                "or `get_initial_state`) or raise `max_length`. "
                f"Received: max_length={self.max_length}"
            )

    def _stream(self, inputs, mask, training, initial_state):
        """One chunk of a stream: outputs, weights and the new state."""
        self._check_streaming("initial_state")
        if training is True and self.attention_regularizer_weight > 0:
            raise ValueError(
                "A streaming call cannot compute the attention regularizer, "
                "which needs whole sequences: train the layer without "
                "`stateful`, `return_state` or `initial_state`. Received: "
                f"attention_regularizer_weight="
                f"{self.attention_regularizer_weight}"
            )
        batch_size, length = ops.shape(inputs)[:2]
        if initial_state is not None:
            state = self._check_stream_state(initial_state, inputs)
        elif self.stateful:
            state = self._stream_state
            expected = state[0].shape[0]
            if inputs.shape[0] is not None and inputs.shape[0] != expected:
                raise ValueError(
                    "A stateful layer streams a fixed batch of "
                    f"{expected} sequences: the batch size cannot change "
                    f"mid-stream. Received: inputs.shape={inputs.shape}"
                )
        else:
            state = self.get_initial_state(batch_size)
        self._check_stream_length(state[3], length)
        inputs = call_inputs.zero_padding(inputs, mask)
        if mask is None:
            real = ops.ones((batch_size, length), inputs.dtype)
        else:
            real = ops.cast(mask, inputs.dtype)
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            queries, keys = self._queries_and_keys(inputs)
        else:
            dtype = attention_ops.softmax_dtype(inputs.dtype)
            keys = ops.cast(inputs, dtype)
            queries = ops.matmul(keys, ops.cast(self.Wa, dtype))
        all_keys, all_values, all_real = streaming.extend(
            state, keys, inputs, real
        )
        if self.attention_type == self.ATTENTION_TYPE_ADD:
            scores = additive_scores.dense_additive_scores(
                queries,
                all_keys,
                ops.squeeze(self.Wa, -1),
                attention_plan.hidden_reduction(training),
            )
        else:
            scores = ops.matmul(queries, ops.transpose(all_keys, (0, 2, 1)))
        size = self._state_size()
        allowed = streaming.allowed_keys(
            size,
            attention_ops.static_size(inputs.shape[1]) or length,
            self.attention_width or size + 1,
            all_real,
        )
        weights = streaming.cast(
            attention_ops.masked_softmax(self._finish_scores(scores), allowed),
            inputs.dtype,
        )
        outputs = ops.matmul(weights, all_values)
        if self.max_length is not None:
            steps = ops.expand_dims(state[3], 1) + ops.expand_dims(
                attention_ops.positions(length), 0
            )
            outputs = ops.where(
                ops.expand_dims(steps < self.max_length, -1),
                outputs,
                ops.full_like(outputs, float("nan")),
            )
        new_state = streaming.advance(
            [
                streaming.cast(tensor, self.compute_dtype)
                for tensor in (all_keys, all_values, all_real)
            ],
            state[3],
            length,
            size,
        )
        if self.stateful:  # as Keras RNNs: also after an `initial_state`
            for variable, value in zip(
                self._stream_state, new_state, strict=True
            ):
                variable.assign(streaming.cast(value, variable.dtype))
        results = [outputs]
        if self.return_attention:
            results.append(weights)
        if self.return_state:
            results.extend(new_state)
        return results[0] if len(results) == 1 else tuple(results)

    def call(self, inputs, mask=None, training=None, initial_state=None):
        inputs = call_inputs.float_inputs(inputs, self.compute_dtype)
        call_inputs.check_mask("SeqSelfAttention", mask, inputs)
        if self.stateful or self.return_state or initial_state is not None:
            return self._stream(inputs, mask, training, initial_state)
        if 0 in attention_ops.static_shape(inputs)[:2]:
            return self._empty_outputs(inputs)
        # Padded steps are read as zeros: what they hold cannot matter.
        inputs = call_inputs.zero_padding(inputs, mask)
        path = self._attention_path(inputs, training)
        if path == "fused":
            return self._fused_outputs(inputs, mask)
        band = path in attention_plan.BAND_PATHS
        if band:
            outputs, weights = self._band_attention(
                inputs, mask, path, training
            )
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

    def compute_output_shape(self, input_shape, initial_state_shape=None):
        batch_size, length = input_shape[0], input_shape[1]
        shapes = [tuple(input_shape)]
        streams = self.stateful or self.return_state
        streams = streams or initial_state_shape is not None
        keys = length
        if streams and length is not None:
            keys = self._state_size() + length
        if self.return_attention:
            shapes.append((batch_size, length, keys))
        if self.return_state:
            shapes.extend(
                streaming.state_shapes(
                    batch_size,
                    self._state_size(),
                    self._key_dim(),
                    input_shape[-1],
                )
            )
        return shapes[0] if len(shapes) == 1 else tuple(shapes)

    def compute_output_spec(
        self, inputs, mask=None, training=None, initial_state=None
    ):
        shapes = self.compute_output_shape(
            inputs.shape,
            None if initial_state is None else [s.shape for s in initial_state],
        )
        if not isinstance(shapes[0], tuple):
            return keras.KerasTensor(shapes, self.compute_dtype)
        specs = [
            keras.KerasTensor(shape, self.compute_dtype) for shape in shapes
        ]
        if self.return_state:
            # The position counts steps.
            specs[-1] = keras.KerasTensor(shapes[-1], "int32")
        return tuple(specs)

    def compute_mask(self, inputs, mask=None):
        extra = int(self.return_attention) + 4 * int(self.return_state)
        if extra:
            return (mask,) + (None,) * extra
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
                "stateful": self.stateful,
                "return_state": self.return_state,
                "max_length": self.max_length,
            }
        )
        return config

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {"SeqSelfAttention": SeqSelfAttention}
