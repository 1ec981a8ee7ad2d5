"""Every layer of the package, by class name, for `custom_objects`.

Also the Keras operations that Keras 3's legacy `.h5` loader cannot find
by itself, so that masked models saved to `.h5` load as they did with 0.51.
"""

import keras
from keras import ops

from keras_self_attention.multi_head import MultiHead
from keras_self_attention.residual_scaled_dot_product_attention import (
    ResidualScaledDotProductAttention,
)
from keras_self_attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_self_attention.seq_self_attention import SeqSelfAttention
from keras_self_attention.seq_weighted_attention import SeqWeightedAttention

LAYERS = (
    SeqSelfAttention,
    SeqWeightedAttention,
    ScaledDotProductAttention,
    ResidualScaledDotProductAttention,
    MultiHead,
)


# The mask of `Embedding(mask_zero=True)` (`not_equal`) and of `Masking`
# (`not_equal`, then `any`) is a node of a functional model, saved under the
# operation's class name; the `.h5` loader looks such names up among the
# layers only and fails with "Unknown layer: 'NotEqual'". Keras exports
# these operations only as functions, so the loader gets these stand-ins,
# which compute the same with `keras.ops`.


class NotEqual(keras.Operation):
    """`keras.ops.not_equal` as a node of a loaded functional model."""

    def call(self, x1, x2):
        return ops.not_equal(x1, x2)

    def compute_output_spec(self, x1, x2):
        return ops.not_equal(x1, x2)


class Any(keras.Operation):
    """`keras.ops.any` as a node of a loaded functional model."""

    def __init__(self, axis=None, keepdims=False, name=None):
        super().__init__(name=name)
        self.axis = axis
        self.keepdims = keepdims

    def call(self, x):
        return ops.any(x, axis=self.axis, keepdims=self.keepdims)

    def compute_output_spec(self, x):
        return ops.any(x, axis=self.axis, keepdims=self.keepdims)

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "keepdims": self.keepdims}


MASK_OPERATIONS = (NotEqual, Any)


def get_custom_objects():
    """All the layers of the package, to pass as `custom_objects`.

    With them come the two Keras operations that compute the masks of
    `Embedding(mask_zero=True)` and `Masking`, which Keras 3's legacy
    `.h5` loader does not find by itself (stand-ins computing the same
    with `keras.ops`), so that such files load at all.

    Returns:
        A dict from class name to class, e.g.
        `{"SeqSelfAttention": SeqSelfAttention, ..., "NotEqual": ...}`.
    """
    return {item.__name__: item for item in LAYERS + MASK_OPERATIONS}
