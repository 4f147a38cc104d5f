#!/usr/bin/env bash
# The test suite, as the README gives it and CI runs it: every Rust test of
# the workspace (unit, conformance, real servers over loopback, doc tests),
# then the Python package's lint, type check and tests against the real
# server binary that the Rust tests just built, then schemathesis against
# that binary, from its own OpenAPI document (scripts/api-fuzz.sh), then the
# dashboard in headless Chromium.
#
#   ./test.sh            # needs cargo, python3 (3.10+), npm, Debian's chromium
#                        # and PostgreSQL (ORDERLY_TEST_DATABASE_URL, default
#                        # postgres://postgres@127.0.0.1:5432/test); the first
#                        # run downloads the Python test tools, schemathesis
#                        # and playwright-core
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo test --workspace"
cargo test --workspace --locked

echo "== clients/python/run-tests.sh"
ORDERLY_BIN="$PWD/target/debug/orderly" bash clients/python/run-tests.sh

echo "== scripts/api-fuzz.sh"
ORDERLY_BIN="$PWD/target/debug/orderly" bash scripts/api-fuzz.sh

echo "== dashboard browser tests (crates/orderly-server/dashboard/tests)"
# Headless Chromium (Debian's package, /usr/bin/chromium or $CHROMIUM)
# driven by playwright-core (pinned in package-lock.json) against the real
# binary and the seed_app example that `cargo test` just built.
(
    cd crates/orderly-server/dashboard/tests
    npm ci --no-audit --no-fund --loglevel=error
    ORDERLY_BIN="$PWD/../../../../target/debug/orderly" npm test
)
