"""Per-step latency of a streaming `SeqSelfAttention` against recomputing.

A stateful causal layer (`history_only=True`, `attention_width=64`, dim 128,
units 32) is fed a stream in `predict_on_batch` calls: chunks carry one
stream to each of the positions 100, 10 000 and 100 000, then the streams
take turns for one-step calls, whose median times are taken. At position
10 000 the same step is also computed the way a layer that cannot stream
must: one call of the non-stateful layer over the whole history (10 001
steps, on its band path). Beside them, the same call of a model that
returns its input: what Keras itself costs a call. Each backend runs in a
fresh process; this checkout's package is imported, never another copy.

Usage:

    python benchmarks/streaming.py                        # TensorFlow
    python benchmarks/streaming.py --backends tensorflow jax torch
    python benchmarks/streaming.py --positions 100 1000 --batches 1  # quick
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WIDTH, DIM, UNITS = 64, 128, 32
# Steps per chunk while carrying the stream to a position: few calls, and a
# `(batch, chunk, chunk + WIDTH - 1, UNITS)` hidden tensor of at most ~40M.
FILL_ELEMENTS = 40_000_000


def import_package():
    sys.path.insert(0, ROOT)
    import keras_self_attention

    origin = os.path.dirname(os.path.abspath(keras_self_attention.__file__))
    if os.path.dirname(origin) != ROOT:
        raise RuntimeError(f"imported the wrong package: {origin}")
    return keras_self_attention


def fill_chunk(batch):
    chunk = 1
    while batch * (2 * chunk) * (2 * chunk + WIDTH) * UNITS <= FILL_ELEMENTS:
        chunk *= 2
    return chunk


def median_ms(step, repeats, warmup=3):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def stateful_twin(package, layer, batch):
    import keras

    streamer = package.SeqSelfAttention.from_config(
        {**layer.get_config(), "stateful": True}
    )
    inputs = keras.Input(batch_shape=(batch, None, DIM))
    model = keras.Model(inputs, streamer(inputs))
    streamer.set_weights(layer.get_weights())
    return model


def worker(args):
    """One stream per position, filled there, then timed taking turns.

    Taking turns step by step spreads the machine's slow moments over all
    positions alike, so that their ratios hold on a noisy machine.
    """
    import keras
    import numpy as np

    package = import_package()
    rng = np.random.default_rng(0)
    for batch in args.batches:
        layer = package.SeqSelfAttention(
            units=UNITS, attention_width=WIDTH, history_only=True
        )
        layer.build((None, None, DIM))
        whole = keras.Sequential([keras.Input((None, DIM)), layer])
        step = rng.standard_normal((batch, 1, DIM)).astype("float32")
        chunk_size = fill_chunk(batch)
        chunk = rng.standard_normal((batch, chunk_size, DIM)).astype("float32")
        positions = sorted(args.positions)
        models, fill_s = [], []
        for target in positions:
            model = stateful_twin(package, layer, batch)
            start = time.perf_counter()
            filled = 0
            while target - filled >= chunk_size:
                model.predict_on_batch(chunk)
                filled += chunk_size
            while filled < target:
                model.predict_on_batch(step)
                filled += 1
            fill_s.append(time.perf_counter() - start)
            models.append(model)
        # Keras's own cost of a call, the floor of any step: a model that
        # returns its input, timed in the same turns.
        inputs = keras.Input(batch_shape=(batch, None, DIM))
        floor = keras.Model(inputs, keras.layers.Identity()(inputs))
        times = [[] for _ in range(len(models) + 1)]
        for index in range(3 + args.repeats):
            for number, model in enumerate([*models, floor]):
                start = time.perf_counter()
                model.predict_on_batch(step)
                if index >= 3:
                    times[number].append(time.perf_counter() - start)
        for number, target in enumerate(positions):
            result = {
                "backend": keras.backend.backend(),
                "batch": batch,
                "position": target,
                "step_ms": 1000 * statistics.median(times[number]),
                "keras_call_ms": 1000 * statistics.median(times[-1]),
                "fill_s": fill_s[number],
            }
            if target == args.recompute_at:
                history = rng.standard_normal((batch, target + 1, DIM)).astype(
                    "float32"
                )
                result["recompute_ms"] = median_ms(
                    lambda whole=whole, history=history: whole.predict_on_batch(
                        history
                    ),
                    max(3, args.repeats // 20),
                    warmup=1,
                )
            print("RESULT " + json.dumps(result), flush=True)


def table(results):
    lines = [
        "| backend | batch | position | one step (streaming) | "
        "recompute the history | recompute / step | "
        "an identity model's call |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        recompute = r.get("recompute_ms")
        lines.append(
            f"| {r['backend']} | {r['batch']} | {r['position']:,} | "
            f"{r['step_ms']:.2f} ms | "
            + (
                f"{recompute:.1f} ms | {recompute / r['step_ms']:.0f}× |"
                if recompute
                else "— | — |"
            )
            + f" {r['keras_call_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", default=["tensorflow"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument(
        "--positions", nargs="+", type=int, default=[100, 10_000, 100_000]
    )
    parser.add_argument("--recompute-at", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--output", default=os.path.join(HERE, "results"))
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(raw)
    if args.worker:
        worker(args)
        return 0
    results = []
    for backend in args.backends:
        command = [sys.executable, __file__, "--worker", *raw]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        found = [
            json.loads(line[len("RESULT ") :])
            for line in done.stdout.splitlines()
            if line.startswith("RESULT ")
        ]
        if done.returncode or not found:
            print(f"{backend} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        for result in found:
            print(json.dumps(result), flush=True)
        results.extend(found)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "streaming.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(table(results))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
