"""The benchmark script runs end to end (tiny sizes; it measures nothing)."""

import json
import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_smoke(tmp_path):
    backend = keras.backend.backend()
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "benchmark.py"),
            "--smoke",
            "--backends",
            backend,
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
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
