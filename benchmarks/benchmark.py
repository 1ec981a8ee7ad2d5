"""Step time and peak memory of SeqSelfAttention against 0.51 and built-ins.

Every measurement runs in a fresh process (peak RSS is per process): the
median of a few `train_on_batch` steps and of a few `predict_on_batch` calls
of one model, on random data. Two suites:

- `layer`: `Input(T, dim) -> attention layer`, MSE loss, float input of
  shape `(batch, T, dim)`;
- `model`: the README's tagger, `Embedding(20000, dim, mask_zero=True) ->
  Bidirectional(LSTM(dim // 2)) -> attention -> Dense(5)`, on token ids with
  padded tails, sparse cross-entropy; `none` is the same model without the
  attention layer, so a row's attention share is its time minus `none`'s.

Implementations:

- `ours`: this package's `SeqSelfAttention`, imported from the checkout this
  script sits in (the table says which path each call took);
- `0.51`: keras-self-attention 0.51 from PyPI, installed on first use into
  `benchmarks/.cache/` (never imported from this repository), run on Keras 3's
  TensorFlow backend;
- `mha` (layer suite): `keras.layers.MultiHeadAttention(num_heads=1,
  key_dim=dim)`, with `sliding_window=8` for the width-15 band (15 keys per
  query) and the causal mask for history-only attention;
- `builtin` (layer suite, additive global): `keras.layers.AdditiveAttention`
  on `Dense(units)`-projected queries and keys, the same
  `batch * T * T * units` tanh work;
- `none` (model suite): no attention layer.

Usage:

    python benchmarks/benchmark.py                      # small T, layer
    python benchmarks/benchmark.py --suite model        # the README model
    python benchmarks/benchmark.py --preset large       # T = 256 .. 65536
    python benchmarks/benchmark.py --lengths 2048 8192  # some lengths only
    python benchmarks/benchmark.py --backends tensorflow jax torch
    python benchmarks/benchmark.py --smoke              # tiny, for CI

It prints a markdown table with the median train and predict step times,
peak RSS and the ratios to 0.51 and to the built-ins, writes the results as
JSON and plots time and memory against T (log-log) to a PNG.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OLD_PACKAGE = os.path.join(HERE, ".cache", "keras_self_attention_051")

# name: (attention_type, attention_width, history_only)
CONFIGS = {
    "additive global": ("additive", None, False),
    "additive width 15": ("additive", 15, False),
    "additive width 15 history": ("additive", 15, True),
    "multiplicative global": ("multiplicative", None, False),
    "multiplicative width 15": ("multiplicative", 15, False),
    "multiplicative global history": ("multiplicative", None, True),
}
IMPLEMENTATIONS = ["ours", "0.51", "mha", "builtin", "none"]
SUITE_IMPLEMENTATIONS = {
    "layer": ["ours", "0.51", "mha", "builtin"],
    "model": ["ours", "0.51", "none"],
}
# preset: (lengths, batch, dim)
PRESETS = {
    "small": ([5, 10, 20, 50, 100, 200, 500], 32, 128),
    "large": ([256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536], 8, 64),
}


# ------------------------------------------------------------------ worker


def build_layer(
    implementation, attention_type, width, history_only, dim, units, **extra
):
    if implementation == "mha":
        import keras

        window = None
        if width is not None:
            window = width if history_only else width // 2 + 1
        return keras.layers.MultiHeadAttention(
            num_heads=1, key_dim=dim, sliding_window=window
        )
    # Never a copy installed elsewhere: 0.51 from the cache, ours from the
    # checkout this script sits in.
    package = OLD_PACKAGE if implementation == "0.51" else ROOT
    sys.path.insert(0, package)
    import keras_self_attention

    origin = os.path.dirname(os.path.abspath(keras_self_attention.__file__))
    if os.path.dirname(origin) != package:
        raise RuntimeError(f"imported the wrong package: {origin}")
    return keras_self_attention.SeqSelfAttention(
        units=units,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
        **extra,
    )


def applies(suite, implementation, config):
    """Whether `implementation` has a version of `config` in `suite`."""
    if implementation not in SUITE_IMPLEMENTATIONS[suite]:
        return False
    if implementation == "builtin":
        return config == "additive global"
    return True


def attention_output(spec, inputs):
    """The attention part of a model: `inputs` in, its output out."""
    import keras

    attention_type, width, history_only = CONFIGS[spec["config"]]
    implementation = spec["implementation"]
    dim = inputs.shape[-1]
    if implementation == "none":
        return inputs, None
    if implementation == "builtin":
        queries = keras.layers.Dense(spec["units"])(inputs)
        keys = keras.layers.Dense(spec["units"])(inputs)
        return keras.layers.AdditiveAttention()([queries, inputs, keys]), None
    # The README model's layer has a sigmoid on the scores.
    extra = (
        {"attention_activation": "sigmoid"} if spec["suite"] == "model" else {}
    )
    layer = build_layer(
        implementation,
        attention_type,
        width,
        history_only,
        dim,
        spec["units"],
        **({} if implementation == "mha" else extra),
    )
    if implementation == "mha":
        return layer(inputs, inputs, use_causal_mask=history_only), None
    return layer(inputs), layer


def build_model(spec):
    """The model of `spec`'s suite, its inputs and targets."""
    import keras
    import numpy as np

    batch, length, dim = spec["batch"], spec["length"], spec["dim"]
    rng = np.random.default_rng(0)
    if spec["suite"] == "layer":
        inputs = keras.Input(shape=(length, dim))
        outputs, layer = attention_output(spec, inputs)
        model = keras.Model(inputs, outputs)
        loss = "mse"
        x = rng.standard_normal((batch, length, dim)).astype("float32")
        y = rng.standard_normal((batch, length, dim)).astype("float32")
    else:
        inputs = keras.Input(shape=(length,), dtype="int32")
        hidden = keras.layers.Embedding(20000, dim, mask_zero=True)(inputs)
        hidden = keras.layers.Bidirectional(
            keras.layers.LSTM(dim // 2, return_sequences=True)
        )(hidden)
        hidden, layer = attention_output(spec, hidden)
        outputs = keras.layers.Dense(5, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs)
        loss = "sparse_categorical_crossentropy"
        lengths = rng.integers(max(1, length // 2), length + 1, size=batch)
        x = rng.integers(1, 20000, size=(batch, length)).astype("int32")
        x[np.arange(length)[None, :] >= lengths[:, None]] = 0
        y = rng.integers(0, 5, size=(batch, length)).astype("int32")
    return model, layer, loss, x, y


def median_time(step, warmup, repeats, budget):
    times = []
    deadline = time.perf_counter() + budget
    for index in range(warmup + repeats):
        start = time.perf_counter()
        result = step()
        elapsed = time.perf_counter() - start
        if index >= warmup:
            times.append(elapsed)
        if times and time.perf_counter() > deadline:
            break
    return statistics.median(times), len(times), result


def worker(spec):
    """Measures one configuration in this process; prints a JSON line."""
    import keras
    import numpy as np

    model, layer, loss, x, y = build_model(spec)
    jit_compile = {"auto": "auto", "true": True, "false": False}[spec["jit"]]
    model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
    train_s, steps, loss = median_time(
        lambda: model.train_on_batch(x, y),
        spec["warmup"],
        spec["repeats"],
        spec["time_budget"],
    )
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    predict_s, _, _ = median_time(
        lambda: model.predict_on_batch(x),
        spec["warmup"],
        spec["repeats"],
        spec["time_budget"],
    )
    path = None
    if spec["implementation"] == "ours":
        # The traced train and predict steps see the batch's own shape.
        shape = (x.shape[0], *layer.input.shape[1:])
        path = layer._attention_path(keras.KerasTensor(shape))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        "RESULT "
        + json.dumps(
            {
                **spec,
                "time_s": train_s,
                "predict_s": predict_s,
                "steps": steps,
                "path": path,
                "peak_rss_gb": peak_kb / 2**20,
                "keras": keras.__version__,
            }
        )
    )


# -------------------------------------------------------------- controller


def install_old_package():
    if os.path.isdir(os.path.join(OLD_PACKAGE, "keras_self_attention")):
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            OLD_PACKAGE,
            "keras-self-attention==0.51.0",
        ],
        check=True,
    )


def run_one(spec, backend, timeout):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    return {**spec, "error": f"exit {done.returncode}: {tail[0][:200]}"}


def quadratic(implementation, config):
    """Whether memory and time grow with T^2 (used to skip what won't fit)."""
    width = CONFIGS[config][1]
    if implementation == "none":
        return False
    return implementation != "ours" or width is None


def sweep(args):
    results = []
    for backend in args.backends:
        for config in args.configs:
            for implementation in args.implementations:
                if implementation == "0.51" and backend != "tensorflow":
                    continue  # 0.51 only runs on TensorFlow
                if not applies(args.suite, implementation, config):
                    continue
                if implementation == "none" and config != args.configs[0]:
                    continue  # one model without attention is enough
                last = None
                for length in args.lengths:
                    spec = {
                        "suite": args.suite,
                        "backend": backend,
                        "implementation": implementation,
                        "config": config,
                        "length": length,
                        "batch": args.batch,
                        "dim": args.dim,
                        "units": args.units,
                        "warmup": args.warmup,
                        "repeats": args.repeats,
                        "time_budget": args.time_budget,
                        "jit": args.jit_compile,
                    }
                    if last is not None and "error" in last:
                        # Too big or broken at a shorter length: longer
                        # ones are no better.
                        spec["error"] = last["error"]
                    elif last is not None:
                        growth = length / last["length"]
                        if quadratic(implementation, config):
                            growth *= growth
                        # The framework's own footprint does not grow.
                        floor = min(
                            r["peak_rss_gb"]
                            for r in results
                            if "error" not in r and r["backend"] == backend
                        )
                        memory = floor + (last["peak_rss_gb"] - floor) * growth
                        seconds = last["time_s"] * growth
                        if memory > args.memory_limit_gb:
                            spec["error"] = f"skipped: ~{memory:.0f} GB"
                        elif seconds > args.step_limit_s:
                            spec["error"] = f"skipped: ~{seconds:.0f} s/step"
                    if "error" not in spec:
                        spec = run_one(spec, backend, args.timeout)
                    results.append(spec)
                    last = spec
                    print(describe(spec), flush=True)
    return results


def seconds(value):
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def describe(result):
    head = (
        f"{result['backend']:10s} {result['implementation']:7s} "
        f"{result['config']:30s} T={result['length']:6d}"
    )
    if "error" in result:
        return f"{head}  {result['error']}"
    path = f"  [{result['path']}]" if result.get("path") else ""
    return (
        f"{head}  train {seconds(result['time_s']):>9s}  predict "
        f"{seconds(result['predict_s']):>9s}  {result['peak_rss_gb']:5.2f} GB"
        f"{path}"
    )


def table(results):
    """Markdown table: one row per (backend, config, T) with our numbers.

    Ratios are other / ours, so above 1 means this package is faster. In
    the model suite they compare the attention's share of a step: the step
    minus the same model's step without attention.
    """
    index = {
        (r["backend"], r["implementation"], r["config"], r["length"]): r
        for r in results
        if "error" not in r
    }
    suite = results[0].get("suite", "layer")

    def lookup(backend, implementation, config, length):
        found = index.get((backend, implementation, config, length))
        if found is None and implementation in ("mha", "none"):
            # MHA has no additive/multiplicative variants, and the model
            # without attention none at all.
            for name, value in CONFIGS.items():
                if implementation == "none" or value[1:] == CONFIGS[config][1:]:
                    found = found or index.get(
                        (backend, implementation, name, length)
                    )
        return found

    def cell(result):
        if result is None:
            return "—"
        return f"{seconds(result['time_s'])} / {seconds(result['predict_s'])}"

    def ratio(ours, other, key, base=None):
        if ours is None or other is None:
            return "—"
        offset = 0.0 if base is None else base[key]
        if ours[key] - offset <= 0:
            return "—"
        return f"{(other[key] - offset) / (ours[key] - offset):.2f}×"

    others = ["0.51", "mha", "builtin"] if suite == "layer" else ["0.51"]
    header = ["backend", "config", "T", "path", "ours train / predict"]
    if suite == "model":
        header.append("no attention")
    for other in others:
        header += [f"{other} train / predict", f"{other}/ours train"]
        header.append(f"{other}/ours predict")
    header += ["ours peak RSS"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = sorted(
        {(r["backend"], r["config"], r["length"]) for r in results},
        key=lambda k: (k[0], list(CONFIGS).index(k[1]), k[2]),
    )
    for backend, config, length in keys:
        ours = lookup(backend, "ours", config, length)
        if ours is None:
            continue
        base = lookup(backend, "none", config, length)
        row = [backend, config, str(length), ours.get("path") or "—"]
        row.append(cell(ours))
        if suite == "model":
            row.append(cell(base))
        for other in others:
            found = lookup(
                "tensorflow" if other == "0.51" else backend,
                other,
                config,
                length,
            )
            if other == "0.51" and backend != "tensorflow":
                found = None  # 0.51 only runs on TensorFlow
            row += [
                cell(found),
                ratio(ours, found, "time_s", base),
                ratio(ours, found, "predict_s", base),
            ]
        row.append(f"{ours['peak_rss_gb']:.2f} GB")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    series = {}
    for r in results:
        if "error" not in r:
            key = (r["backend"], r["implementation"], r["config"])
            series.setdefault(key, []).append(r)
    styles = {
        "ours": "-",
        "0.51": "--",
        "mha": ":",
        "builtin": "-.",
        "none": ":",
    }
    series = dict(
        sorted(
            series.items(),
            key=lambda item: (
                IMPLEMENTATIONS.index(item[0][1]),
                list(CONFIGS).index(item[0][2]),
            ),
        )
    )
    for (backend, implementation, config), points in series.items():
        points.sort(key=lambda r: r["length"])
        lengths = [r["length"] for r in points]
        label = f"{implementation} {config}"
        if len({r["backend"] for r in results}) > 1:
            label += f" ({backend})"
        # Colour tells the configuration, line style the implementation.
        look = dict(
            linestyle=styles[implementation],
            color=f"C{list(CONFIGS).index(config)}",
            marker="o",
            label=label,
        )
        if implementation == "none":
            look["color"] = "grey"
            look["label"] = "no attention"
        left.plot(lengths, [r["time_s"] for r in points], **look)
        right.plot(lengths, [r["peak_rss_gb"] for r in points], **look)
    for axis, name in ((left, "train step time (s)"), (right, "peak RSS (GB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length T")
        axis.set_ylabel(name)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    first = results[0]
    figure.suptitle(
        f"{first.get('suite', 'layer')} suite: one train step, batch "
        f"{first['batch']}, dim {first['dim']}, units {first['units']}, "
        f"jit_compile={first['jit']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=["layer", "model"], default="layer")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="small",
        help="lengths, batch and dim: small is T=5..500, batch 32, dim 128; "
        "large is T=256..65536, batch 8, dim 64",
    )
    parser.add_argument("--backends", nargs="+", default=["tensorflow"])
    parser.add_argument(
        "--implementations",
        nargs="+",
        default=IMPLEMENTATIONS,
        choices=IMPLEMENTATIONS,
    )
    parser.add_argument(
        "--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS)
    )
    parser.add_argument("--lengths", nargs="+", type=int)
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="passed to model.compile; Keras's 'auto' skips XLA on CPU",
    )
    parser.add_argument("--batch", type=int)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        help="stop repeating a step after this many seconds",
    )
    parser.add_argument("--memory-limit-gb", type=float, default=20.0)
    parser.add_argument("--step-limit-s", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    parser.add_argument(
        "--replot",
        nargs="+",
        metavar="JSON",
        help="only merge saved results into a table and plot",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, no 0.51: checks the script runs",
    )
    args = parser.parse_args(argv)
    lengths, batch, dim = PRESETS[args.preset]
    args.lengths = args.lengths or lengths
    args.batch = args.batch or batch
    args.dim = args.dim or dim
    if args.smoke:
        args.implementations = [i for i in args.implementations if i != "0.51"]
        args.configs = ["additive width 15", "multiplicative global"]
        args.lengths, args.batch, args.dim, args.units = [16], 2, 8, 4
        args.warmup, args.repeats = 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    os.makedirs(args.output, exist_ok=True)
    if args.replot:
        results = []
        for path in args.replot:
            with open(path) as f:
                results.extend(json.load(f))
        print(table(results))
        plot(results, os.path.join(args.output, "benchmark.png"))
        return 0
    if "0.51" in args.implementations:
        install_old_package()
    results = sweep(args)
    name = "-".join([args.suite, args.preset, *args.backends])
    if args.smoke:
        name = "-".join(args.backends)
    if args.jit_compile != "auto":
        name += f"-jit-{args.jit_compile}"
    with open(os.path.join(args.output, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(table(results))
    if any("error" not in r for r in results):
        plot(results, os.path.join(args.output, f"{name}.png"))
    failed = [r for r in results if r.get("error", "").startswith("exit")]
    return 1 if args.smoke and failed else 0


if __name__ == "__main__":
    sys.exit(main())
