"""Every layer of the package, by class name, for `custom_objects`."""

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


def get_custom_objects():
    """All the layers of the package, to pass as `custom_objects`.

    Returns:
        A dict from class name to class, e.g.
        `{"SeqSelfAttention": SeqSelfAttention, ...}`.
    """
    return {layer.__name__: layer for layer in LAYERS}
