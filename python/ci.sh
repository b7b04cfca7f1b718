#!/usr/bin/env bash
# CI for the Python package: a virtual environment with maturin and pytest, the extension built
# into it (`maturin develop --release`), and the pytest suite. Exits non-zero on any failure,
# including a run that collects no test (pytest's exit status 5).
#
#   python/ci.sh            # from anywhere; PYTHON=python3.12 python/ci.sh for another interpreter
#
# The virtual environment is python/.venv (kept between runs: pip and maturin reuse it, and cargo
# reuses the workspace's target/ directory).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${SHMQ_PY_VENV:-.venv}"

echo "== python: virtual environment ($("$PYTHON" --version))"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "maturin>=1.5,<2" pytest

# The extension is a workspace member outside default-members (the root's `cargo clippy` and
# `.ci/loom` do not build it), so it is linted here.
if cargo clippy --version >/dev/null 2>&1; then
  echo "== python: cargo clippy -p shmq-python"
  cargo clippy -p shmq-python --all-targets --all-features --quiet -- -D warnings
fi

echo "== python: maturin develop --release"
# maturin develop installs into the active virtual environment.
VIRTUAL_ENV="$(cd "$VENV" && pwd)" PATH="$(cd "$VENV" && pwd)/bin:$PATH" \
  "$VENV/bin/maturin" develop --release --quiet

echo "== python: pytest"
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "python/ci.sh: pytest collected no test" >&2
  exit 1
fi
exit "$status"
