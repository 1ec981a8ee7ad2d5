#!/usr/bin/env bash
# Lints and format-checks the code (ruff, settings in ruff.toml), then runs the
# whole test suite once per Keras backend, each in its own process (a backend
# cannot be switched inside one Python process). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "=== ruff"
ruff check .
ruff format --check .
status=0
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend python -m pytest -q "$@" || status=1
done
exit $status
