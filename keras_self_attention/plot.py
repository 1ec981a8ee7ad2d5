"""Draws attention weights as a heatmap (needs matplotlib)."""

import numpy as np
from keras import ops


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "`plot_attention` needs matplotlib. Install it with "
            "`pip install matplotlib`."
        ) from error
    return Figure


def _labels(name, tokens, length):
    if tokens is None:
        return None
    labels = [str(token) for token in tokens]
    if len(labels) != length:
        raise ValueError(
            f"`{name}` must have one label per "
            f"{'row' if name == 'tokens' else 'column'} of `weights` "
            f"({length}). Received: {len(labels)} labels"
        )
    return labels


def plot_attention(
    weights,
    tokens=None,
    key_tokens=None,
    path=None,
    title=None,
    ax=None,
    cmap="viridis",
):
    """Draws one sequence's attention weights as a heatmap.

    Rows are queries, columns are keys, so row `t` shows where time step `t`
    looks. To plot a padded sequence, cut the weights to its real length
    first, e.g. `weights[:n, :n]`.

    Args:
        weights: array of shape `(T, T)` (or `(T_query, T_key)`), e.g.
            `get_attention_weights(model, inputs)[i]`; numpy or a backend
            tensor.
        tokens: labels for the rows, and for the columns too unless
            `key_tokens` is given; `T` strings (or objects shown with
            `str`). Defaults to `None` (step numbers).
        key_tokens: labels for the columns. Defaults to `None` (`tokens`).
        path: if given, the figure is also saved there (the format comes
            from the extension, e.g. `.png`, `.svg`, `.pdf`).
            Defaults to `None`.
        title: title of the plot. Defaults to `None`.
        ax: a matplotlib `Axes` to draw into. Defaults to `None` (a new
            figure).
        cmap: matplotlib colour map. Defaults to `"viridis"`.

    Returns:
        The matplotlib `Figure`.

    Example:

    >>> weights = get_attention_weights(model, tokens)
    >>> plot_attention(weights[0, :5, :5], ["the", "cat", "sat", "on", "it"],
    ...                path="attention.png")
    """
    figure_class = _figure_class()
    if not isinstance(weights, np.ndarray):
        weights = ops.convert_to_numpy(weights)
    weights = np.asarray(weights, dtype="float32")
    if weights.ndim != 2:
        raise ValueError(
            "`weights` must be one sequence's 2-D attention weights of shape "
            "(T_query, T_key); for a batch pass `weights[i]`. "
            f"Received: weights.shape={weights.shape}"
        )
    rows, columns = weights.shape
    row_labels = _labels("tokens", tokens, rows)
    if key_tokens is None:
        key_tokens = tokens if rows == columns else None
    column_labels = _labels("key_tokens", key_tokens, columns)

    if ax is None:
        size = 2.0 + 0.32 * max(rows, columns)
        figure = figure_class(figsize=(min(size + 1.2, 20), min(size, 19)))
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    image = ax.imshow(weights, cmap=cmap, vmin=0.0, aspect="equal")
    colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("attention weight")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if row_labels is not None:
        ax.set_yticks(range(rows), row_labels)
    if column_labels is not None:
        ax.set_xticks(range(columns), column_labels, rotation=90)
    if title is not None:
        ax.set_title(title)
    if path is not None:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    return figure
