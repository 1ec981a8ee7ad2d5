#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend, each in its own process
# (a backend cannot be switched inside one Python process).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend python -m pytest -q "$@" || status=1
done
exit $status
