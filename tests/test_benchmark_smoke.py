"""The benchmark script runs end to end (tiny sizes; it measures nothing)."""

import json
import os

import keras

from tests.processes import ROOT, run_python


def test_benchmark_smoke(tmp_path):
    backend = keras.backend.backend()
    done = run_python(
        os.path.join(ROOT, "benchmarks", "benchmark.py"),
        "--smoke",
        "--backends",
        backend,
        "--output",
        tmp_path,
        timeout=600,
    )
    with open(tmp_path / f"{backend}.json") as f:
        results = json.load(f)
    assert {r["implementation"] for r in results} == {"ours", "mha"}
    assert all("error" not in r for r in results), results
    assert all(r["time_s"] > 0 and r["peak_rss_gb"] > 0 for r in results)
    assert (tmp_path / f"{backend}.png").stat().st_size > 10_000
    rows = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(f"| {backend} |")
    ]
    # One row per configuration and length, with ours and MHA side by side.
    assert len(rows) == 2
    assert rows[0].startswith(f"| {backend} | additive width 15 | 16 |")


def test_streaming_benchmark_smoke(tmp_path):
    backend = keras.backend.backend()
    done = run_python(
        os.path.join(ROOT, "benchmarks", "streaming.py"),
        "--backends",
        backend,
        "--batches",
        "2",
        "--positions",
        "3",
        "70",
        "--recompute-at",
        "70",
        "--repeats",
        "2",
        "--output",
        tmp_path,
        timeout=600,
    )
    with open(tmp_path / "streaming.json") as f:
        results = json.load(f)
    assert [(r["batch"], r["position"]) for r in results] == [(2, 3), (2, 70)]
    assert all(r["step_ms"] > 0 and r["keras_call_ms"] > 0 for r in results)
    assert "recompute_ms" in results[1] and "recompute_ms" not in results[0]
    assert f"| {backend} | 2 | 70 |" in done.stdout
