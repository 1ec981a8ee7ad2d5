"""`python -m keras_self_attention.demo`: its data, its result, its options."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_self_attention import demo
from tests.processes import ROOT, run_python


def test_every_token_is_tagged_with_its_partners_colour(rng):
    tokens, tags, lengths = demo.make_data(rng, 200)
    assert tokens.shape == tags.shape == (200, 2 * demo.SYMBOLS)
    assert set(lengths) <= set(range(10, 2 * demo.SYMBOLS + 1, 2))
    assert len(set(lengths)) > 3
    for row, length in zip(tokens, lengths, strict=True):
        assert np.all(row[:length] > 0) and np.all(row[length:] == 0)
    symbols, colours = np.divmod(tokens - 1, demo.COLOURS)
    for b, t in zip(*np.nonzero(tokens), strict=True):
        partners = [
            s
            for s in np.nonzero(symbols[b] == symbols[b, t])[0]
            if s != t and tokens[b, s] > 0
        ]
        assert len(partners) == 1
        assert tags[b, t] == colours[b, partners[0]]
    assert demo.token_label(1 + 2 * demo.COLOURS + 1) == "C2"
    assert demo.token_label(0) == ""


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras runs the LSTM step by step in Python on torch's CPU "
    "backend: the demo takes about 3 minutes there",
)
def test_attention_clearly_wins(tmp_path, capsys):
    path = tmp_path / "attention.png"
    accuracies = demo.main(["--output", str(path)])
    without = accuracies["without attention"]
    with_attention = accuracies["with SeqSelfAttention"]
    # The tag depends only on a token at a random distance; chance is 25%.
    assert with_attention >= 0.9 and without <= 0.6, accuracies
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert f"with SeqSelfAttention  {with_attention:.1%}" in printed


def test_options_and_backend_switch(tmp_path):
    backend = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    path = tmp_path / "local.png"
    done = run_python(
        "-m",
        "keras_self_attention.demo",
        f"--backend={backend}",
        "--attention-type=additive",
        "--attention-width=5",
        "--epochs=1",
        "--samples=64",
        f"--output={path}",
    )
    assert f"Backend {backend}; SeqSelfAttention additive, window 5" in (
        done.stdout
    )
    assert "Held-out accuracy" in done.stdout
    assert path.stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv",
    [["--epochs=0"], ["--attention-width=0"], ["--attention-type=dot"]],
)
def test_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.fixture
def no_training(monkeypatch):
    """Makes the test fail if the demo gets as far as training."""

    def train(*args):
        raise AssertionError("the demo built a model")

    monkeypatch.setattr(demo, "build_model", train)


@pytest.mark.parametrize(
    "name,problem",
    [
        ("missing/attention.png", "is in a folder that does not exist"),
        (".", "is a directory"),
        ("attention.xyz", "has an image format matplotlib cannot write"),
    ],
    ids=["missing-folder", "directory", "format"],
)
def test_bad_output_fails_before_training(
    name, problem, tmp_path, capsys, no_training
):
    path = os.path.join(tmp_path, name)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--output", path])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument --output: {path!r} {problem}" in error


def test_unwritable_output(tmp_path, monkeypatch):
    # Checked with `os.access`, which root passes whatever the permissions.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    path = str(tmp_path / "attention.png")
    assert demo.output_problem(path) == "is not writable"


def test_good_output_has_no_problem(tmp_path):
    assert demo.output_problem(str(tmp_path / "attention.svg")) is None
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"")
    assert demo.output_problem(str(existing)) is None


def test_missing_matplotlib_fails_before_training(
    monkeypatch, capsys, no_training
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_info:
        demo.main([])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "matplotlib, which is not installed" in error
    assert "`pip install matplotlib`" in error


def test_missing_matplotlib_from_the_command_line(tmp_path):
    """A `matplotlib` first on the path that fails to import, as if absent."""
    stub = tmp_path / "matplotlib"
    stub.mkdir()
    (stub / "__init__.py").write_text(
        "raise ImportError('No module named matplotlib')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "keras_self_attention.demo"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Install it with `pip install matplotlib`" in done.stderr
    assert "Training" not in done.stdout
