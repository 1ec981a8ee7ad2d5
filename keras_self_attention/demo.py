"""Demo: a tagging task that needs context, with and without attention.

Each sequence holds pairs of tokens: a letter (the symbol) appears exactly
twice, each time with a colour digit, e.g. `C2 ... C4`. Every token is
tagged with the colour of its partner (the other token with the same
letter), so `C2` gets tag 4 and `C4` gets tag 2. Partners sit at random
distances, so a token's own neighbourhood says nothing about its tag.

Two models train on the same generated data: `Embedding -> BiLSTM -> Dense`
and the same with `SeqSelfAttention` before the `Dense`. The demo prints
both held-out accuracies and writes the attention heatmap of one held-out
sequence.

    python -m keras_self_attention.demo
    python -m keras_self_attention.demo --attention-width 7 --backend jax
"""

import argparse
import os
import string
import sys
import time

import numpy as np

SYMBOLS = 12  # letters A-L
COLOURS = 4  # digits 1-4; the tags
BACKENDS = ("tensorflow", "jax", "torch")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m keras_self_attention.demo",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--attention-type",
        choices=("additive", "multiplicative"),
        default="multiplicative",
        help="SeqSelfAttention's attention_type (default: %(default)s)",
    )
    parser.add_argument(
        "--attention-width",
        type=int,
        default=None,
        help="SeqSelfAttention's attention_width; partners outside the "
        "window cannot be found (default: whole sequence)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: KERAS_BACKEND or Keras' default)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="training epochs per model (default: %(default)s)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=3000,
        help="training sequences (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        default="attention.png",
        help="where the heatmap is written (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "samples", "attention_width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    # The heatmap is written after both models trained, minutes from now:
    # whatever would stop it fails here instead.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.exit(
            1,
            f"{parser.prog}: error: the demo draws its heatmap with "
            "matplotlib, which is not installed. Install it with "
            "`pip install matplotlib`.\n",
        )
    problem = output_problem(args.output)
    if problem is not None:
        parser.error(f"argument --output: {args.output!r} {problem}")
    return args


def output_problem(path):
    """Why the heatmap cannot be written to `path`, or `None` if it can.

    Needs matplotlib, which picks the image format from the extension.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    if os.path.isdir(path):
        return "is a directory"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"is in a folder that does not exist: {folder!r}"
    if not os.access(folder, os.W_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK)
    ):
        return "is not writable"
    extension = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if extension and extension not in formats:
        return (
            f"has an image format matplotlib cannot write: {extension!r} "
            f"(it writes {', '.join(sorted(formats))})"
        )
    return None


def token_label(token):
    """`"C2"` for the token of letter C and colour 2; `""` for padding."""
    if token == 0:
        return ""
    symbol, colour = divmod(int(token) - 1, COLOURS)
    return f"{string.ascii_uppercase[symbol]}{colour + 1}"


def make_data(rng, count, min_pairs=5, max_pairs=SYMBOLS):
    """Padded token sequences, their tags, and their lengths.

    Token `1 + symbol * COLOURS + colour`; tag = the partner's colour.
    """
    length = 2 * max_pairs
    tokens = np.zeros((count, length), dtype="int32")
    tags = np.zeros((count, length), dtype="int32")
    lengths = np.zeros(count, dtype="int32")
    for row in range(count):
        pairs = rng.integers(min_pairs, max_pairs + 1)
        symbols = np.repeat(rng.choice(SYMBOLS, pairs, replace=False), 2)
        colours = rng.integers(0, COLOURS, 2 * pairs)
        # Each token's tag is the other one of its pair's colour.
        partner_colours = colours.reshape(-1, 2)[:, ::-1].reshape(-1)
        order = rng.permutation(2 * pairs)
        tokens[row, : 2 * pairs] = (1 + symbols * COLOURS + colours)[order]
        tags[row, : 2 * pairs] = partner_colours[order]
        lengths[row] = 2 * pairs
    return tokens, tags, lengths


def build_model(attention, args):
    import keras

    from keras_self_attention import SeqSelfAttention

    layers = [
        keras.Input(shape=(None,), dtype="int32"),
        keras.layers.Embedding(1 + SYMBOLS * COLOURS, 32, mask_zero=True),
        keras.layers.Bidirectional(
            keras.layers.LSTM(32, return_sequences=True)
        ),
    ]
    if attention:
        layers.append(
            SeqSelfAttention(
                attention_type=args.attention_type,
                attention_width=args.attention_width,
                name="attention",
            )
        )
    layers.append(keras.layers.Dense(COLOURS, activation="softmax"))
    model = keras.Sequential(layers, name="with" if attention else "without")
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["accuracy"],
    )
    return model


def held_out_accuracy(model, tokens, tags):
    predicted = model.predict(tokens, batch_size=256, verbose=0).argmax(-1)
    real = tokens != 0
    return float(np.mean(predicted[real] == tags[real]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.backend and os.environ.get("KERAS_BACKEND") != args.backend:
        # The backend is fixed when Keras is first imported, which already
        # happened for `python -m keras_self_attention.demo`: start again.
        os.environ["KERAS_BACKEND"] = args.backend
        command = [sys.executable, "-m", "keras_self_attention.demo", *argv]
        os.execv(sys.executable, command)

    import keras

    from keras_self_attention import get_attention_weights, plot_attention

    start = time.perf_counter()
    width = args.attention_width or "whole sequence"
    print(
        f"Backend {keras.backend.backend()}; SeqSelfAttention "
        f"{args.attention_type}, window {width}."
    )
    rng = np.random.default_rng(args.seed)
    train_tokens, train_tags, _ = make_data(rng, args.samples)
    test_tokens, test_tags, test_lengths = make_data(rng, 1000)
    accuracies = {}
    models = {}
    for attention in (False, True):
        keras.utils.set_random_seed(args.seed)
        model = build_model(attention, args)
        name = "with SeqSelfAttention" if attention else "without attention"
        print(f"\nTraining {name}:")
        model.fit(
            train_tokens,
            train_tags,
            sample_weight=(train_tokens != 0).astype("float32"),
            batch_size=64,
            epochs=args.epochs,
            verbose=1 if sys.stdout.isatty() else 2,
        )
        accuracies[name] = held_out_accuracy(model, test_tokens, test_tags)
        models[name] = model

    print(f"\nHeld-out accuracy per token (chance {1 / COLOURS:.0%}):")
    for name, accuracy in accuracies.items():
        print(f"  {name:<22} {accuracy:.1%}")

    # The first held-out sequence with at least 8 pairs.
    example = int(np.argmax(test_lengths >= 16))
    length = test_lengths[example]
    weights = get_attention_weights(
        models["with SeqSelfAttention"], test_tokens[example : example + 1]
    )[0, :length, :length]
    labels = [token_label(token) for token in test_tokens[example, :length]]
    plot_attention(
        weights,
        labels,
        path=args.output,
        title="Each token should look at its partner (same letter)",
    )
    print(
        f"\nWrote the attention heatmap of a held-out sequence to {args.output}"
    )
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    return accuracies


if __name__ == "__main__":
    main()
