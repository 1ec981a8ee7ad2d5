"""`plot_attention` draws one sequence's weights as a labelled heatmap."""

import sys

import numpy as np
import pytest
from keras import ops

from keras_self_attention import plot_attention

pytest.importorskip("matplotlib")

TOKENS = ["the", "cat", "sat", "on", "it"]


def weights(rng, rows=5, columns=5):
    scores = rng.random((rows, columns))
    return scores / scores.sum(-1, keepdims=True)


def tick_labels(axis):
    return [label.get_text() for label in axis.get_ticklabels()]


def test_heatmap_with_labels_and_colour_bar(rng):
    attention = weights(rng)
    figure = plot_attention(attention, TOKENS, title="five tokens")
    heatmap, colour_bar = figure.axes
    np.testing.assert_allclose(heatmap.images[0].get_array(), attention)
    assert tick_labels(heatmap.yaxis) == TOKENS
    assert tick_labels(heatmap.xaxis) == TOKENS
    assert heatmap.get_title() == "five tokens"
    assert heatmap.get_ylabel() == "query"
    assert colour_bar.get_ylabel() == "attention weight"


def test_saves_png_and_accepts_tensors(rng, tmp_path):
    path = tmp_path / "attention.png"
    attention = weights(rng)
    figure = plot_attention(ops.convert_to_tensor(attention), path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_allclose(
        figure.axes[0].images[0].get_array(), attention, rtol=1e-6
    )


def test_rectangular_weights_and_own_axes(rng):
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    figure = plot_attention(
        weights(rng, 2, 3), ["q1", "q2"], key_tokens=["k1", "k2", "k3"], ax=ax
    )
    assert figure is ax.figure
    assert tick_labels(ax.yaxis) == ["q1", "q2"]
    assert tick_labels(ax.xaxis) == ["k1", "k2", "k3"]


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match=r"2-D .*weights\[i\]"):
        plot_attention(rng.random((2, 5, 5)))
    with pytest.raises(ValueError, match=r"one label per row .*\(5\)"):
        plot_attention(weights(rng), TOKENS[:4])
    with pytest.raises(ValueError, match=r"`key_tokens` must have .*\(3\)"):
        plot_attention(weights(rng, 2, 3), ["a", "b"], key_tokens=["a", "b"])


def test_clear_message_without_matplotlib(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="`pip install matplotlib`"):
        plot_attention(weights(rng))
