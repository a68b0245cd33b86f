#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then every test of the
# workspace (unit, provider fixtures, and the end-to-end tests that drive `em-agent serve` over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required: install Rust from https://rustup.rs" >&2
    exit 1
fi
# rustfmt and clippy are used by .ci/run; the tests themselves need only cargo.
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The end-to-end tests start the real binary; build it first so their time goes to testing.
cargo build --locked -p em-agent --bin em-agent
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite: cargo's own last line is that of whichever binary ran last.
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
