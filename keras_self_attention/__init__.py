"""Self-attention layers for Keras 3, on every Keras backend."""

import keras

from keras_self_attention.seq_self_attention import SeqSelfAttention

__all__ = ["SeqSelfAttention"]
__version__ = "1.0.0"

# Models saved by keras-self-attention 0.51 name the class without a package.
keras.saving.get_custom_objects().update(SeqSelfAttention.get_custom_objects())
