"""The `MultiHead` wrapper layer."""

import inspect
import numbers

import keras
from keras import ops

from keras_self_attention import call_inputs
from keras_self_attention.arguments import check_bool, check_positive_int


def _normalize_regularization(reg_index, reg_slice, reg_factor):
    """`reg_index`, `reg_slice` and `reg_factor` as lists of equal length."""
    if reg_index is None:
        if reg_slice is not None or reg_factor not in (0, 0.0, None):
            raise ValueError(
                "`reg_slice` and `reg_factor` need `reg_index`. Received: "
                f"reg_index=None, reg_slice={reg_slice!r}, "
                f"reg_factor={reg_factor!r}"
            )
        return None, None, 0.0
    indices = reg_index if isinstance(reg_index, (list, tuple)) else [reg_index]
    if not indices or any(
        isinstance(i, bool) or not isinstance(i, numbers.Integral)
        for i in indices
    ):
        raise ValueError(
            "`reg_index` must be an integer, a non-empty list of integers "
            f"or `None`. Received: reg_index={reg_index!r}"
        )
    # A list holds one entry per index; a tuple is one multi-axis slice.
    slices = (
        list(reg_slice)
        if isinstance(reg_slice, list)
        else [reg_slice] * len(indices)
    )
    if len(slices) != len(indices) or not all(
        _is_weight_slice(s) for s in slices
    ):
        raise ValueError(
            "`reg_slice` must be `None`, a slice, a tuple of slices, or a "
            "list of those with one entry per `reg_index`. "
            f"Received: reg_slice={reg_slice!r}"
        )
    factors = (
        list(reg_factor)
        if isinstance(reg_factor, (list, tuple))
        else [reg_factor] * len(indices)
    )
    if len(factors) != len(indices) or not all(
        not isinstance(f, bool) and isinstance(f, numbers.Real) and f >= 0
        for f in factors
    ):
        raise ValueError(
            "`reg_factor` must be a number >= 0 or a list of them with one "
            f"entry per `reg_index`. Received: reg_factor={reg_factor!r}"
        )
    return [int(i) for i in indices], slices, [float(f) for f in factors]


def _is_weight_slice(value):
    if value is None or isinstance(value, slice):
        return True
    return isinstance(value, tuple) and all(isinstance(s, slice) for s in value)


def _serialize_slice(value):
    """A weight slice as JSON: `None`, `[start, stop, step]` or a list."""
    if value is None:
        return None
    if isinstance(value, slice):
        return [value.start, value.stop, value.step]
    return [_serialize_slice(s) for s in value]


def _deserialize_slice(value):
    if value is None:
        return None
    if not value or isinstance(value[0], (list, tuple)):
        return tuple(slice(*s) for s in value)
    return slice(*value)


def _accepts(layer, argument):
    return argument in inspect.signature(layer.call).parameters


@keras.saving.register_keras_serializable(package="keras_self_attention")
class MultiHead(keras.layers.Layer):
    """Runs several copies of a layer on the same input and stacks them.

    The heads are `layer_num` copies of `layer`, each with its own weights,
    or the layers of a list. With `hidden_dim`, head `i` sees its own
    linear projection of the input, `x W_i + b_i`, instead of the input:
    `W` of shape `(dim, layer_num * hidden_dim)` holds the `W_i` side by
    side, and `b` the `b_i`. The outputs of the heads, which must have one
    shape, are stacked on a new last axis
    (as in keras-multi-head, https://github.com/CyberZHG/keras-multi-head).

    The optional regularizer pushes the heads apart: for each index `k` of
    `reg_index`, the `k`-th weights of the heads (`layer.weights[k]`, sliced
    by `reg_slice`) are flattened into the rows of a matrix `R`, and
    `reg_factor * ||R R^T - I||^2` is added to the losses.

    Args:
        layer: a layer instance to copy (cloned through its config, the
            copies named `{name}_1`, `{name}_2`, ...; the instance itself is
            not used), or a list of distinct layers used as the heads.
        layer_num: the number of copies of `layer`. For a list, the list's
            length (or the default `1`). Defaults to `1`.
        hidden_dim: the dimension of each head's input projection, or `None`
            to give every head the input itself. Defaults to `None`.
        use_bias: whether the projections have the bias `b`.
            Defaults to `True`.
        reg_index: index (or list of indices) into each head's `weights` to
            regularize, or `None` for no regularization. Defaults to `None`.
        reg_slice: the part of the weight to regularize: `None` (all of it),
            a slice, a tuple of slices (one per axis), or a list of those,
            one per `reg_index`. Defaults to `None`.
        reg_factor: the weight of the regularizer, a number >= 0 or a list
            of them, one per `reg_index`. Defaults to `0.0`.
        **kwargs: base layer arguments, such as `name` and `dtype`.

    Stateful heads (`SeqSelfAttention(stateful=True)`, `LSTM(stateful=True)`)
    stream: each keeps its own state, and `reset_state()` resets them all.
    A head that returns its state (`return_state=True`) is refused.

    Call arguments:
        inputs: a tensor of shape `(batch_size, ..., dim)`.
        mask: optional mask, passed on to the heads that take one.
        training: passed on to the heads that take it.

    Returns:
        A tensor of shape `(*head_output_shape, layer_num)`. The output mask
        is the first head's (the input mask for sequence-to-sequence heads).

    Example:

    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> MultiHead(SeqSelfAttention(units=4), layer_num=3)(x).shape
    (2, 5, 8, 3)
    """

    def __init__(
        self,
        layer,
        layer_num=1,
        hidden_dim=None,
        use_bias=True,
        reg_index=None,
        reg_slice=None,
        reg_factor=0.0,
        **kwargs,
    ):
        check_positive_int("layer_num", layer_num)
        if isinstance(layer, (list, tuple)):
            heads = list(layer)
            if (
                not heads
                or not all(isinstance(h, keras.layers.Layer) for h in heads)
                or len({id(h) for h in heads}) != len(heads)
            ):
                raise ValueError(
                    "`layer` must be a layer or a non-empty list of distinct "
                    f"layers. Received: layer={layer!r}"
                )
            if layer_num not in (1, len(heads)):
                raise ValueError(
                    "`layer_num` must be the length of the `layer` list. "
                    f"Received: layer_num={layer_num!r}"
                )
        elif isinstance(layer, keras.layers.Layer):
            config = layer.get_config()
            heads = [
                layer.__class__.from_config(
                    {**config, "name": f"{config['name']}_{i + 1}"}
                )
                for i in range(layer_num)
            ]
        else:
            raise ValueError(
                "`layer` must be a layer or a non-empty list of distinct "
                f"layers. Received: layer={layer!r}"
            )
        for head in heads:
            if getattr(head, "return_state", False):
                raise ValueError(
                    "`MultiHead` stacks one output per head, so a head "
                    "cannot return its state; stream with stateful heads "
                    "(`stateful=True`), each of which keeps its own. "
                    f"Received: head {head.name!r} with return_state=True"
                )
        check_positive_int("hidden_dim", hidden_dim, allow_none=True)
        check_bool("use_bias", use_bias)
        reg_index, reg_slice, reg_factor = _normalize_regularization(
            reg_index, reg_slice, reg_factor
        )
        super().__init__(**kwargs)
        self.layers = heads
        self.layer_num = len(heads)
        self.hidden_dim = hidden_dim
        self.use_bias = use_bias
        self.reg_index = reg_index
        self.reg_slice = reg_slice
        self.reg_factor = reg_factor
        self.supports_masking = True

    def _head_input_shape(self, input_shape):
        if self.hidden_dim is None:
            return tuple(input_shape)
        return (*tuple(input_shape[:-1]), self.hidden_dim)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "`MultiHead` expects inputs of shape (batch_size, ..., dim) "
                f"with a known `dim`. Received: input_shape={input_shape}"
            )
        self.W = self.b = None
        if self.hidden_dim is not None:
            width = self.layer_num * self.hidden_dim
            self.W = self.add_weight(
                name="W",
                shape=(input_shape[-1], width),
                initializer="glorot_uniform",
            )
            if self.use_bias:
                self.b = self.add_weight(
                    name="b", shape=(width,), initializer="zeros"
                )
        # The heads are called with `call`, which skips their input specs.
        self.input_spec = keras.layers.InputSpec(
            ndim=len(input_shape), axes={-1: input_shape[-1]}
        )
        head_shape = self._head_input_shape(input_shape)
        for head in self.layers:
            if not head.built:
                head.build(head_shape)
        # Heads whose outputs cannot be stacked fail here, not in `call`.
        self.compute_output_shape(input_shape)
        for index in self.reg_index or ():
            for head in self.layers:
                if not -len(head.weights) <= index < len(head.weights):
                    raise ValueError(
                        f"`reg_index` must index the weights of each head; "
                        f"head {head.name!r} has {len(head.weights)}. "
                        f"Received: reg_index={self.reg_index!r}"
                    )

    def _head_inputs(self, inputs):
        if self.hidden_dim is None:
            return [inputs] * self.layer_num
        projected = ops.matmul(inputs, self.W)
        if self.b is not None:
            projected = projected + self.b
        # One split: its gradient is one concatenation, where each head's
        # strided slice would add a scatter of its own.
        return ops.split(projected, self.layer_num, axis=-1)

    def _regularization(self):
        """`sum_k reg_factor_k * ||R_k R_k^T - I||^2`, a float32 scalar."""
        total = ops.zeros((), "float32")
        for index, interval, factor in zip(
            self.reg_index, self.reg_slice, self.reg_factor, strict=True
        ):
            rows = []
            for head in self.layers:
                weight = ops.cast(head.weights[index], "float32")
                if interval is not None:
                    weight = weight[interval]
                rows.append(ops.reshape(weight, (-1,)))
            rows = ops.stack(rows)
            gram = ops.matmul(rows, ops.transpose(rows))
            identity = ops.eye(self.layer_num, dtype="float32")
            total = total + factor * ops.sum(ops.square(gram - identity))
        return total

    def call(self, inputs, mask=None, training=None):
        inputs = call_inputs.float_inputs(inputs, self.compute_dtype)
        if (
            mask is not None
            and len(inputs.shape) == 3
            and all(_accepts(head, "mask") for head in self.layers)
        ):
            # Heads that take the mask never read padded steps; zeros there
            # keep NaN or inf out of the projection's gradient too. (A head
            # that ignores masks, such as Conv1D, reads them as they are.)
            call_inputs.check_mask("MultiHead", mask, inputs)
            inputs = call_inputs.zero_padding(inputs, mask)
        outputs = []
        for head, head_inputs in zip(
            self.layers, self._head_inputs(inputs), strict=True
        ):
            kwargs = {}
            if mask is not None and _accepts(head, "mask"):
                kwargs["mask"] = mask
            if _accepts(head, "training"):
                kwargs["training"] = training
            # `call`, not `__call__`, as keras.layers.TimeDistributed does: a
            # head that ignores masks would warn about the input's mask.
            output = head.call(head_inputs, **kwargs)
            if isinstance(output, (list, tuple)):
                raise ValueError(
                    "`MultiHead` expects each head to return one tensor. "
                    f"Received: {len(output)} outputs from {head.name!r}"
                )
            outputs.append(output)
        if self.reg_index is not None and any(self.reg_factor):
            self.add_loss(self._regularization())
        return ops.stack(outputs, axis=-1)

    def reset_state(self):
        """Starts a new stream in every stateful head."""
        for head in self.layers:
            if hasattr(head, "reset_state"):
                head.reset_state()

    def reset_states(self):
        """The same as `reset_state` (the name Keras 2 used)."""
        self.reset_state()

    def compute_output_shape(self, input_shape):
        # `compute_output_spec` also serves heads that only define `call`.
        head_inputs = keras.KerasTensor(
            self._head_input_shape(input_shape), dtype=self.compute_dtype
        )
        shapes = []
        for head in self.layers:
            spec = head.compute_output_spec(head_inputs)
            if not isinstance(spec, keras.KerasTensor):
                raise ValueError(
                    "`MultiHead` expects each head to return one tensor. "
                    f"Received: {spec} from {head.name!r}"
                )
            shapes.append(tuple(spec.shape))
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(
                "`MultiHead` expects heads with outputs of one shape. "
                f"Received: {shapes}"
            )
        return shapes[0] + (self.layer_num,)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        head = self.layers[0]
        if head.supports_masking:
            return head.compute_mask(inputs, mask)
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": [
                    keras.saving.serialize_keras_object(head)
                    for head in self.layers
                ],
                "layer_num": self.layer_num,
                "hidden_dim": self.hidden_dim,
                "use_bias": self.use_bias,
                "reg_index": self.reg_index,
                "reg_slice": None
                if self.reg_slice is None
                else [_serialize_slice(s) for s in self.reg_slice],
                "reg_factor": self.reg_factor,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = [
            keras.saving.deserialize_keras_object(head)
            for head in config["layer"]
        ]
        if config.get("reg_slice") is not None:
            config["reg_slice"] = [
                _deserialize_slice(s) for s in config["reg_slice"]
            ]
        return cls(**config)

    @staticmethod
    def get_custom_objects():
        """The objects to pass as `custom_objects` when loading a model."""
        return {"MultiHead": MultiHead}
