"""Keras's own layer test protocol (`run_layer_test`) for every layer.

It builds each layer, calls it symbolically and eagerly, checks the output
shapes against `compute_output_shape`, serializes it, trains it in a model
(through `tf.data` on TensorFlow, which only accepts tuples of outputs) and
runs it under mixed precision: what Keras expects of any layer.
"""

import pytest
from keras.src.testing import test_case

from keras_self_attention import (
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
)

B, T, DIM = 2, 5, 4

# The protocol's training check feeds a generator, with Keras's own default
# `shuffle=True`, on TensorFlow, and also trains layers without weights.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:The model does not have any trainable weights:UserWarning"
    ),
]


class _Protocol(test_case.TestCase):
    """Keras's test case, only as the holder of `run_layer_test`."""

    __test__ = False  # not a test of its own for pytest to collect

    def runTest(self):  # unittest needs a test method to make an instance
        pass


def _ssa(weights=5, **kwargs):
    output = (B, T, DIM)
    shape = (output, (B, T, T)) if kwargs.get("return_attention") else output
    losses = 1 if kwargs.get("attention_regularizer_weight") else 0
    return (SeqSelfAttention, kwargs, (B, T, DIM), shape, weights, losses)


CASES = {
    "ssa": _ssa(),
    "ssa-width": _ssa(attention_width=3),
    "ssa-history": _ssa(history_only=True),
    "ssa-return-attention": _ssa(return_attention=True),
    "ssa-width-return-attention": _ssa(
        attention_width=3, return_attention=True
    ),
    "ssa-multiplicative": _ssa(2, attention_type="multiplicative"),
    "ssa-multiplicative-width": _ssa(
        2, attention_type="multiplicative", attention_width=2
    ),
    "ssa-regularizer": _ssa(attention_regularizer_weight=0.1),
    "swa": (SeqWeightedAttention, {}, (B, T, DIM), (B, DIM), 2, 0),
    "swa-return-attention": (
        SeqWeightedAttention,
        {"return_attention": True},
        (B, T, DIM),
        ((B, DIM), (B, T)),
        2,
        0,
    ),
    "sdpa": (ScaledDotProductAttention, {}, (B, T, DIM), (B, T, DIM), 0, 0),
    "sdpa-qkv-return-attention": (
        ScaledDotProductAttention,
        {"return_attention": True, "history_only": True},
        ((B, 3, DIM), (B, T, DIM), (B, T, 6)),
        ((B, 3, 6), (B, 3, T)),
        0,
        0,
    ),
    "residual-sdpa": (
        ResidualScaledDotProductAttention,
        {},
        ((B, T, DIM), (B, T, T)),
        ((B, T, DIM), (B, T, T)),
        0,
        0,
    ),
    "residual-sdpa-return-attention": (
        ResidualScaledDotProductAttention,
        {"return_attention": True},
        ((B, 3, DIM), (B, T, DIM), (B, T, DIM), (B, 3, T)),
        ((B, 3, DIM), (B, 3, T), (B, 3, T)),
        0,
        0,
    ),
    "multi-head": (
        MultiHead,
        {"layer": SeqSelfAttention(units=3), "layer_num": 2},
        (B, T, DIM),
        (B, T, DIM, 2),
        10,
        0,
    ),
    "multi-head-hidden-dim": (
        MultiHead,
        {
            "layer": SeqSelfAttention(attention_width=3, units=3),
            "layer_num": 2,
            "hidden_dim": 3,
        },
        (B, T, DIM),
        (B, T, 3, 2),
        12,
        0,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_keras_layer_protocol(name):
    layer_class, kwargs, input_shape, output_shape, weights, losses = CASES[
        name
    ]
    _Protocol().run_layer_test(
        layer_class,
        init_kwargs=kwargs,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        expected_num_trainable_weights=weights,
        expected_num_non_trainable_weights=0,
        expected_num_losses=losses,
        supports_masking=True,
    )
