#!/usr/bin/env bash
# Lint, type-check and test the Python package against the real server.
#
#   clients/python/run-tests.sh [pytest args...]
#
# - a virtualenv in target/python-venv at the repository root (reused when
#   present) with `pip install -e 'clients/python[test]'`;
# - the server binary from ORDERLY_BIN, or built here with
#   `cargo build -p orderly-cli --bin orderly` (target/debug/orderly);
# - ruff check, ruff format --check, mypy --strict (the package and the
#   examples), then pytest, whose tests start that binary on free ports with
#   fresh data directories.
#
# Exits non-zero on the first failure. Needs python3 (3.10+) and, unless
# ORDERLY_BIN is set, cargo; the first run downloads the test tools from PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/target/python-venv"
python="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*"; }

step "virtualenv $venv"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$repo/target"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" - <<'EOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"Python 3.10 or newer is needed, this is {sys.version.split()[0]}")
EOF
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[test]"

if [ -z "${ORDERLY_BIN:-}" ]; then
    step "cargo build -p orderly-cli --bin orderly"
    (cd "$repo" && cargo build -p orderly-cli --bin orderly)
    ORDERLY_BIN="$repo/target/debug/orderly"
fi
export ORDERLY_BIN
[ -x "$ORDERLY_BIN" ] || { echo "ORDERLY_BIN=$ORDERLY_BIN is not an executable" >&2; exit 1; }
echo "server under test: $ORDERLY_BIN"

cd "$here"
# Each tool through the venv's python (`python -m`), not its bin/ script: a
# venv copied from another checkout keeps scripts that start that
# checkout's python, which would check that checkout's package.
step "ruff check"
"$venv/bin/python" -m ruff check src tests examples
step "ruff format --check"
"$venv/bin/python" -m ruff format --check src tests examples
step "mypy --strict"
"$venv/bin/python" -m mypy --strict src/orderly
"$venv/bin/python" -m mypy --strict examples/*.py
step "pytest"
"$venv/bin/python" -m pytest "$@"
