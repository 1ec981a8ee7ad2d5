import keras
import pytest

import keras_self_attention
from keras_self_attention import (
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
    get_custom_objects,
)

LAYERS = [
    MultiHead,
    ResidualScaledDotProductAttention,
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
]


def test_package_custom_objects_hold_every_layer():
    assert get_custom_objects() == {layer.__name__: layer for layer in LAYERS}
    assert sorted(keras_self_attention.__all__) == sorted(
        [layer.__name__ for layer in LAYERS]
        + ["get_attention_weights", "get_custom_objects", "plot_attention"]
    )


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_class_custom_objects_are_part_of_the_package_ones(layer):
    assert layer.get_custom_objects() == {layer.__name__: layer}
    assert get_custom_objects()[layer.__name__] is layer


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "SeqWeightedAttention", "config": {"use_bias": False}},
        {
            "class_name": "ScaledDotProductAttention",
            "config": {"history_only": True},
        },
        {
            "class_name": "ResidualScaledDotProductAttention",
            "config": {"return_attention": True},
        },
        {"class_name": "SeqSelfAttention", "config": {"units": 3}},
    ],
    ids=lambda config: config["class_name"],
)
def test_plain_class_names_deserialize(config):
    """0.51 saved configs name the class without a package."""
    layer = keras.layers.deserialize(config)
    assert type(layer).__name__ == config["class_name"]
    ((name, value),) = config["config"].items()
    assert getattr(layer, name) == value
