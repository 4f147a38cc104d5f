#!/usr/bin/env bash
# Fuzz the HTTP API from its own OpenAPI document with schemathesis.
#
#   scripts/api-fuzz.sh            # the CI run: bounded, a few minutes
#   scripts/api-fuzz.sh --long     # the long run: >= 20,000 cases (about
#                                  # an hour on 2 cores; docs/reliability.md)
#   API_FUZZ_EXAMPLES=N scripts/api-fuzz.sh   # N examples per operation
#   scripts/api-fuzz.sh [--long] ARGS...      # more `schemathesis run` flags
#
# - a virtualenv in target/fuzz-venv at the repository root (reused when
#   present) with a pinned schemathesis from PyPI;
# - the server binary from ORDERLY_BIN, or built here with
#   `cargo build -p orderly-cli --bin orderly` (target/debug/orderly),
#   started with a token on a free loopback port and a fresh data directory;
# - `schemathesis run http://127.0.0.1:PORT/openapi.json` with every check,
#   every phase (examples, coverage, fuzzing, and stateful runs that follow
#   the document's links: enqueue -> get/wait/cancel/retry/attempts,
#   configure a queue -> get it, claim -> complete/fail/heartbeat with the
#   lease's token) and a fixed seed. The configuration and why each narrowing
#   is there: scripts/api-fuzz/schemathesis.toml and hooks.py.
#
# Exits non-zero on any failure (a 5xx, an answer the document does not
# describe, a crash) and leaves the server's log and schemathesis' reports
# in target/api-fuzz/ (target/api-fuzz-long/ for --long).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/target/fuzz-venv"
out="$repo/target/api-fuzz"
python="${PYTHON:-python3}"
schemathesis_version="4.32.5"

examples="${API_FUZZ_EXAMPLES:-}"
if [ "${1:-}" = "--long" ]; then
    shift
    examples="${examples:-1400}"
    out="$repo/target/api-fuzz-long"
fi
examples="${examples:-100}"

step() { printf '\n== %s\n' "$*"; }

step "virtualenv $venv (schemathesis $schemathesis_version)"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$repo/target"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -m schemathesis.cli --version 2>/dev/null | grep -q "$schemathesis_version"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

if [ -z "${ORDERLY_BIN:-}" ]; then
    step "cargo build -p orderly-cli --bin orderly"
    (cd "$repo" && cargo build -p orderly-cli --bin orderly)
    ORDERLY_BIN="$repo/target/debug/orderly"
fi
[ -x "$ORDERLY_BIN" ] || { echo "ORDERLY_BIN=$ORDERLY_BIN is not an executable" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
data="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="api-fuzz-$RANDOM$RANDOM"
base="http://127.0.0.1:$port"

step "server $ORDERLY_BIN on $base (log: $out/server.log)"
ORDERLY_TOKEN="$token" "$ORDERLY_BIN" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    --shutdown-grace 1s >"$out/server.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('$base/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$out/server.log" >&2; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done

step "schemathesis run $base/openapi.json ($examples examples per operation)"
cd "$out"
status=0
SCHEMATHESIS_HOOKS="$here/api-fuzz/hooks.py" "$venv/bin/python" -m schemathesis.cli \
    --config-file "$here/api-fuzz/schemathesis.toml" \
    run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-examples "$examples" \
    --report junit,ndjson --report-dir "$out" \
    "$@" || status=$?
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server crashed during the run: see $out/server.log" >&2
    status=1
fi
if grep -q 'panicked' "$out/server.log"; then
    echo "the server panicked during the run: see $out/server.log" >&2
    status=1
fi
exit "$status"
