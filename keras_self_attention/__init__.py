"""Self-attention layers for Keras 3, on every Keras backend."""

import keras

from keras_self_attention.attention_weights import get_attention_weights
from keras_self_attention.custom_objects import get_custom_objects
from keras_self_attention.multi_head import MultiHead
from keras_self_attention.plot import plot_attention
from keras_self_attention.residual_scaled_dot_product_attention import (
    ResidualScaledDotProductAttention,
)
from keras_self_attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)
from keras_self_attention.seq_self_attention import SeqSelfAttention
from keras_self_attention.seq_weighted_attention import SeqWeightedAttention

__all__ = [
    "MultiHead",
    "ResidualScaledDotProductAttention",
    "ScaledDotProductAttention",
    "SeqSelfAttention",
    "SeqWeightedAttention",
    "get_attention_weights",
    "get_custom_objects",
    "plot_attention",
]
__version__ = "1.0.0"

# Models saved by keras-self-attention 0.51 name the classes without a
# package.
keras.saving.get_custom_objects().update(get_custom_objects())
