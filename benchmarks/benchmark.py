"""Step time and peak memory of SeqSelfAttention against 0.51 and built-ins.

Each measurement is the median of a few `train_on_batch` steps and of a few
`predict_on_batch` calls of one model, on random data, in a fresh process.
By default the implementations of one size share that process and take
turns step by step, so that their ratios hold on a noisy machine; with
`--separate` (the default for `--preset large`) each gets a process of its
own, so that the peak RSS is its own. Two suites:

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
import importlib.util
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


def import_package(implementation):
    """This checkout's `keras_self_attention`, or 0.51's under another name.

    Never a copy installed elsewhere: ours from the checkout this script sits
    in, 0.51 from the cache, imported as `keras_self_attention_051` so that
    both can run side by side in one process.
    """
    if implementation == "0.51":
        name = "keras_self_attention_051"
        if name not in sys.modules:
            where = os.path.join(OLD_PACKAGE, "keras_self_attention")
            spec = importlib.util.spec_from_file_location(
                name,
                os.path.join(where, "__init__.py"),
                submodule_search_locations=[where],
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import keras_self_attention

    origin = os.path.dirname(os.path.abspath(keras_self_attention.__file__))
    if os.path.dirname(origin) != ROOT:
        raise RuntimeError(f"imported the wrong package: {origin}")
    return keras_self_attention


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
    package = import_package(implementation)
    return package.SeqSelfAttention(
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


def attention_output(spec, implementation, inputs):
    """The attention part of a model: `inputs` in, its output out."""
    import keras

    attention_type, width, history_only = CONFIGS[spec["config"]]
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


def build_model(spec, implementation):
    """The model of `spec`'s suite, its attention layer, loss and data."""
    import keras
    import numpy as np

    batch, length, dim = spec["batch"], spec["length"], spec["dim"]
    rng = np.random.default_rng(0)
    if spec["suite"] == "layer":
        inputs = keras.Input(shape=(length, dim))
        outputs, layer = attention_output(spec, implementation, inputs)
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
        hidden, layer = attention_output(spec, implementation, hidden)
        outputs = keras.layers.Dense(5, activation="softmax")(hidden)
        model = keras.Model(inputs, outputs)
        loss = "sparse_categorical_crossentropy"
        lengths = rng.integers(max(1, length // 2), length + 1, size=batch)
        x = rng.integers(1, 20000, size=(batch, length)).astype("int32")
        x[np.arange(length)[None, :] >= lengths[:, None]] = 0
        y = rng.integers(0, 5, size=(batch, length)).astype("int32")
    return model, layer, loss, x, y


def measure(steps, warmup, repeats, budget):
    """Median seconds of each step, the steps taking turns.

    Taking turns spreads the machine's slow moments over all of them alike,
    so that their ratios hold even when the absolute times drift.
    """
    times = [[] for _ in steps]
    deadline = time.perf_counter() + budget
    results = [None] * len(steps)
    for index in range(warmup + repeats):
        for number, step in enumerate(steps):
            start = time.perf_counter()
            results[number] = step()
            elapsed = time.perf_counter() - start
            if index >= warmup:
                times[number].append(elapsed)
        if times[0] and time.perf_counter() > deadline:
            break
    return [statistics.median(t) for t in times], len(times[0]), results


def worker(spec):
    """Measures one configuration in this process; prints JSON lines.

    `spec["implementations"]` (or the one `spec["implementation"]`) are
    measured side by side, taking turns step by step.
    """
    import keras
    import numpy as np

    implementations = spec.get("implementations") or [spec["implementation"]]
    jit_compile = {"auto": "auto", "true": True, "false": False}[spec["jit"]]
    built = []
    for implementation in implementations:
        model, layer, loss, x, y = build_model(spec, implementation)
        model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
        built.append((model, layer, x, y))
    train, steps, losses = measure(
        [
            lambda model=model, x=x, y=y: model.train_on_batch(x, y)
            for model, _, x, y in built
        ],
        spec["warmup"],
        spec["repeats"],
        spec["time_budget"],
    )
    for loss in losses:
        if not np.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss}")
    predict, _, _ = measure(
        [
            lambda model=model, x=x: model.predict_on_batch(x)
            for model, _, x, _ in built
        ],
        spec["warmup"],
        spec["repeats"],
        spec["time_budget"],
    )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for number, implementation in enumerate(implementations):
        model, layer, x, _ = built[number]
        # The attention layer's input: the LSTM's two directions in the
        # model suite.
        layer_dim = spec["dim"]
        if spec["suite"] == "model":
            layer_dim = 2 * (spec["dim"] // 2)
        path = None
        if implementation == "ours":
            # The traced train and predict steps see the batch's own shape;
            # predict passes `training=False`.
            shape = keras.KerasTensor((x.shape[0], spec["length"], layer_dim))
            path = layer._attention_path(shape, True)
            predict_path = layer._attention_path(shape, False)
            if predict_path != path:
                path = f"{path} / {predict_path}"
        result = {
            key: value
            for key, value in spec.items()
            if key != "implementations"
        }
        print(
            "RESULT "
            + json.dumps(
                {
                    **result,
                    "implementation": implementation,
                    "time_s": train[number],
                    "predict_s": predict[number],
                    "steps": steps,
                    "path": path,
                    "peak_rss_gb": peak_kb / 2**20,
                    "shared_process": len(implementations) > 1,
                    "keras": keras.__version__,
                }
            )
        )


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
    """Runs `spec` in a fresh process; one result per implementation."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    implementations = spec.get("implementations") or [spec["implementation"]]

    def failed(error):
        return [
            {
                **{k: v for k, v in spec.items() if k != "implementations"},
                "implementation": implementation,
                "error": error,
            }
            for implementation in implementations
        ]

    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return failed(f"timeout after {timeout} s")
    results = [
        json.loads(line[len("RESULT ") :])
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    if results:
        return results
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    return failed(f"exit {done.returncode}: {tail[0][:200]}")


def quadratic(implementation, config):
    """Whether memory and time grow with T^2 (used to skip what won't fit)."""
    width = CONFIGS[config][1]
    if implementation == "none":
        return False
    return implementation != "ours" or width is None


def base_spec(args, backend, config, length):
    return {
        "suite": args.suite,
        "backend": backend,
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


def implementations_for(args, backend, config):
    return [
        implementation
        for implementation in args.implementations
        # 0.51 only runs on TensorFlow.
        if (implementation != "0.51" or backend == "tensorflow")
        and applies(args.suite, implementation, config)
    ]


def sweep_side_by_side(args):
    """All implementations of a size in one process, taking turns."""
    results = []
    for backend in args.backends:
        for config in args.configs:
            implementations = implementations_for(args, backend, config)
            for length in args.lengths:
                spec = base_spec(args, backend, config, length)
                spec["implementations"] = implementations
                for result in run_one(spec, backend, args.timeout):
                    results.append(result)
                    print(describe(result), flush=True)
    return results


def sweep_separately(args):
    """Each implementation and size in its own process, for peak memory.

    Skips what would not fit: a longer length where a shorter one failed, or
    where the growth from the last length predicts too much memory or time.
    """
    results = []
    for backend in args.backends:
        for config in args.configs:
            for implementation in implementations_for(args, backend, config):
                if implementation == "none" and config != args.configs[0]:
                    continue  # one model without attention is enough
                last = None
                for length in args.lengths:
                    spec = base_spec(args, backend, config, length)
                    spec["implementation"] = implementation
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
                        (spec,) = run_one(spec, backend, args.timeout)
                    results.append(spec)
                    last = spec
                    print(describe(spec), flush=True)
    return results


def sweep(args):
    if args.separate:
        return sweep_separately(args)
    return sweep_side_by_side(args)


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
    shared = any(r.get("shared_process") for r in results)
    if not shared:
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
        if not shared:
            row.append(f"{ours['peak_rss_gb']:.2f} GB")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results, path):
    """Train step time and peak RSS against T, log-log.

    One column per measured size (suite, batch, dim), so that a small-T and
    a large-T run replotted together stand side by side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if "error" not in r]
    groups = sorted(
        {(r.get("suite", "layer"), r["batch"], r["dim"]) for r in results},
        key=lambda group: (group[0], -group[1]),
    )
    figure, axes = plt.subplots(
        2, len(groups), figsize=(6.5 * len(groups), 9), squeeze=False
    )
    styles = {
        "ours": "-",
        "0.51": "--",
        "mha": ":",
        "builtin": "-.",
        "none": ":",
    }
    backends = {r["backend"] for r in results}
    for column, (suite, batch, dim) in enumerate(groups):
        top, bottom = axes[0][column], axes[1][column]
        series = {}
        for r in results:
            if (r.get("suite", "layer"), r["batch"], r["dim"]) == (
                suite,
                batch,
                dim,
            ):
                key = (r["backend"], r["implementation"], r["config"])
                series.setdefault(key, []).append(r)
        for (backend, implementation, config), points in sorted(
            series.items(),
            key=lambda item: (
                IMPLEMENTATIONS.index(item[0][1]),
                list(CONFIGS).index(item[0][2]),
            ),
        ):
            points.sort(key=lambda r: r["length"])
            lengths = [r["length"] for r in points]
            label = f"{implementation} {config}"
            if implementation == "none":
                label = "no attention"
            if len(backends) > 1:
                label += f" ({backend})"
            # Colour tells the configuration, line style the implementation.
            look = dict(
                linestyle=styles[implementation],
                color="grey"
                if implementation == "none"
                else f"C{list(CONFIGS).index(config)}",
                marker="o",
                label=label,
            )
            top.plot(lengths, [r["time_s"] for r in points], **look)
            bottom.plot(lengths, [r["peak_rss_gb"] for r in points], **look)
        # Implementations that shared a process have no peak RSS of their own.
        bottom.set_visible(
            not any(
                r.get("shared_process")
                for group in series.values()
                for r in group
            )
        )
        for axis, name in (
            (top, "train step time (s)"),
            (bottom, "peak RSS (GB)"),
        ):
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel("sequence length T")
            axis.set_ylabel(name)
            axis.grid(True, which="both", alpha=0.3)
        top.set_title(f"{suite} suite, batch {batch}, dim {dim}")
        top.legend(fontsize=7)
    first = results[0]
    figure.suptitle(
        f"one train step, units {first['units']}, jit_compile={first['jit']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


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
    parser.add_argument(
        "--separate",
        action=argparse.BooleanOptionalAction,
        help="one process per implementation and length, for peak memory "
        "(default with --preset large); otherwise the implementations of a "
        "length take turns in one process, for time ratios",
    )
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
    if args.separate is None:
        args.separate = args.preset == "large"
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
        groups = {}
        for r in results:
            group = (r.get("suite", "layer"), r["batch"], r["dim"])
            groups.setdefault(group, []).append(r)
        for (suite, batch, dim), members in groups.items():
            print(f"\n{suite} suite, batch {batch}, dim {dim}\n")
            print(table(members))
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
