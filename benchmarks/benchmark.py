"""Step time and peak memory of SeqSelfAttention against 0.51 and Keras MHA.

Every measurement runs in a fresh process (peak RSS is per process), one
`train_on_batch` step of `Input -> attention layer` with an MSE loss, on
random data of shape `(batch, T, dim)`. Three implementations:

- `ours`: this package's `SeqSelfAttention`;
- `0.51`: keras-self-attention 0.51 from PyPI, installed on first use into
  `benchmarks/.cache/` (never imported from this repository), run on Keras 3's
  TensorFlow backend;
- `mha`: `keras.layers.MultiHeadAttention(num_heads=1, key_dim=dim)`, with
  `sliding_window=8` for the width-15 band (15 keys per query) and the causal
  mask for history-only attention.

Usage:

    python benchmarks/benchmark.py                      # the full table
    python benchmarks/benchmark.py --lengths 2048 8192  # some lengths only
    python benchmarks/benchmark.py --backends tensorflow jax torch
    python benchmarks/benchmark.py --smoke              # tiny, for CI

It prints a markdown table with the median step time, peak RSS and the ratios
to 0.51 and to MHA, writes the results as JSON and plots time and memory
against T (log-log) to a PNG.
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
IMPLEMENTATIONS = ["ours", "0.51", "mha"]
LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]


# ------------------------------------------------------------------ worker


def build_layer(
    implementation, attention_type, width, history_only, dim, units
):
    if implementation == "mha":
        import keras

        window = None
        if width is not None:
            window = width if history_only else width // 2 + 1
        return keras.layers.MultiHeadAttention(
            num_heads=1, key_dim=dim, sliding_window=window
        )
    if implementation == "0.51":
        sys.path.insert(0, OLD_PACKAGE)
    import keras_self_attention

    origin = os.path.dirname(keras_self_attention.__file__)
    if (implementation == "0.51") != origin.startswith(OLD_PACKAGE):
        raise RuntimeError(f"imported the wrong package: {origin}")
    return keras_self_attention.SeqSelfAttention(
        units=units,
        attention_type=attention_type,
        attention_width=width,
        history_only=history_only,
    )


def worker(spec):
    """Measures one configuration in this process; prints a JSON line."""
    import keras
    import numpy as np

    attention_type, width, history_only = CONFIGS[spec["config"]]
    batch, length, dim = spec["batch"], spec["length"], spec["dim"]
    layer = build_layer(
        spec["implementation"],
        attention_type,
        width,
        history_only,
        dim,
        spec["units"],
    )
    inputs = keras.Input(shape=(length, dim))
    if spec["implementation"] == "mha":
        outputs = layer(inputs, inputs, use_causal_mask=history_only)
    else:
        outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    jit_compile = {"auto": "auto", "true": True, "false": False}[spec["jit"]]
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, length, dim)).astype("float32")
    y = rng.standard_normal((batch, length, dim)).astype("float32")
    times = []
    deadline = time.perf_counter() + spec["time_budget"]
    for step in range(spec["warmup"] + spec["repeats"]):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        elapsed = time.perf_counter() - start
        if step >= spec["warmup"]:
            times.append(elapsed)
        if times and time.perf_counter() > deadline:
            break
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        "RESULT "
        + json.dumps(
            {
                **spec,
                "time_s": statistics.median(times),
                "steps": len(times),
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
    return implementation != "ours" or width is None


def sweep(args):
    results = []
    for backend in args.backends:
        for config in args.configs:
            for implementation in args.implementations:
                if implementation == "0.51" and backend != "tensorflow":
                    continue  # 0.51 only runs on TensorFlow
                last = None
                for length in args.lengths:
                    spec = {
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


def describe(result):
    head = (
        f"{result['backend']:10s} {result['implementation']:5s} "
        f"{result['config']:30s} T={result['length']:6d}"
    )
    if "error" in result:
        return f"{head}  {result['error']}"
    return f"{head}  {result['time_s']:8.3f} s  {result['peak_rss_gb']:6.2f} GB"


def table(results):
    """Markdown table: one row per (backend, config, T) with our numbers."""
    index = {
        (r["backend"], r["implementation"], r["config"], r["length"]): r
        for r in results
    }

    def lookup(backend, implementation, config, length):
        found = index.get((backend, implementation, config, length))
        if found is None and implementation == "mha":
            # MHA has no additive/multiplicative variants: any config with
            # the same window stands for it.
            for name, value in CONFIGS.items():
                if value[1:] == CONFIGS[config][1:]:
                    found = found or index.get(
                        (backend, implementation, name, length)
                    )
        return found

    def cell(result):
        if result is None:
            return "—"
        if "error" in result:
            return result["error"].split(":")[0]
        return f"{result['time_s']:.3f} s, {result['peak_rss_gb']:.2f} GB"

    def ratio(ours, other, key):
        if not ours or not other or "error" in ours or "error" in other:
            return "—"
        return f"{other[key] / ours[key]:.1f}×"

    lines = [
        "| backend | config | T | ours | 0.51 (TF) | MHA | "
        "0.51 / ours time | 0.51 / ours mem | MHA / ours time | "
        "MHA / ours mem |",
        "|" + "---|" * 10,
    ]
    keys = sorted(
        {(r["backend"], r["config"], r["length"]) for r in results},
        key=lambda k: (k[0], list(CONFIGS).index(k[1]), k[2]),
    )
    for backend, config, length in keys:
        ours = lookup(backend, "ours", config, length)
        old = lookup("tensorflow", "0.51", config, length)
        mha = lookup(backend, "mha", config, length)
        if ours is None:
            continue
        lines.append(
            f"| {backend} | {config} | {length} | {cell(ours)} | {cell(old)} "
            f"| {cell(mha)} | {ratio(ours, old, 'time_s')} "
            f"| {ratio(ours, old, 'peak_rss_gb')} "
            f"| {ratio(ours, mha, 'time_s')} "
            f"| {ratio(ours, mha, 'peak_rss_gb')} |"
        )
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
    styles = {"ours": "-", "0.51": "--", "mha": ":"}
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
        f"one train step, batch {first['batch']}, dim {first['dim']}, "
        f"units {first['units']}, jit_compile={first['jit']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
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
    parser.add_argument("--lengths", nargs="+", type=int, default=LENGTHS)
    parser.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="passed to model.compile; Keras's 'auto' skips XLA on CPU",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
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
