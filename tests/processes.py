"""Runs Python in a fresh process, for what one test process cannot do.

A Keras backend, TensorFlow's logical devices and JAX's host devices are
fixed when the framework starts, so tests that need another one run a
script in a new process from the repository root.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(*args, backend=None, timeout=300, cwd=ROOT, **env):
    """Runs `python *args`; fails the test, with its stderr, unless it works.

    Args:
        *args: the arguments after `python`, e.g. `"-m", "module", ...`.
        backend: the `KERAS_BACKEND` to run on. Defaults to `None` (this
            process's environment).
        timeout: seconds before the run is stopped. Defaults to `300`.
        cwd: the directory to run in. Defaults to the repository root.
        **env: more environment variables.

    Returns:
        The `subprocess.CompletedProcess`, with its output as text.
    """
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done
