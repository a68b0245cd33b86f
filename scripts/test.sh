#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then every test of the
# workspace (unit, provider fixtures, the end-to-end tests that drive `em-agent serve` over HTTP, and the AWS
# tests, which run against a local AWS-compatible server started here).
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

# The AWS tests need moto's server (DynamoDB, SQS, S3, Secrets Manager on the loopback), cargo-lambda (the
# functions under `cargo lambda watch`) and the SAM CLI (template checks), pinned, in .venv.
venv=.venv
pins=("moto[server]==5.2.5" "cargo-lambda==1.9.2" "aws-sam-cli==1.170.0")
pinned() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
import sys
want = {"moto": "5.2.5", "cargo-lambda": "1.9.2", "aws-sam-cli": "1.170.0"}
sys.exit(0 if all(m.version(p) == v for p, v in want.items()) else 1)
EOF
}
if ! pinned; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "python3 (with its venv module) is required for the AWS tests' tools" >&2
        exit 1
    fi
    echo "installing ${pins[*]} into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "${pins[@]}"
    pinned || { echo "the tools in $venv are not the pinned versions (${pins[*]})" >&2; exit 1; }
fi
PATH="$PWD/$venv/bin:$PATH"
export PATH

# The browser tests open the email digest in Debian's headless Chromium, driven through ChromeDriver.
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium and chromium-driver (apt)" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Two AWS-compatible servers for the whole run: every test creates resources under names of its own. One
# moto process serves requests on one core; the heaviest tests (the scenario through the Lambda handlers)
# get the second server, so the other core is not idle while everything queues behind the first.
free_port() {
    python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Resetting the server is harmless at start-up and answers only once it serves requests.
moto_answers() {
    python -c 'import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/moto-api/reset", method="POST"), timeout=2)' \
        "http://127.0.0.1:$1" >/dev/null 2>&1
}
log="$(mktemp)"
moto_pids=()
moto_logs=()
cleanup() {
    local code=$?
    for pid in "${moto_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$log"
    if [ "$code" -eq 0 ]; then
        rm -f "${moto_logs[@]}"
    else
        echo "moto server logs: ${moto_logs[*]}" >&2
    fi
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Starts moto (with Query narrowed to the partition, as DynamoDB does: see the script) on a free port and
# waits until it answers; sets moto_port and moto_log.
start_moto() {
    moto_port="$(free_port)"
    moto_log="$(mktemp -t em-agent-moto.XXXXXX)"
    moto_logs+=("$moto_log")
    python scripts/moto_server.py -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
    local pid=$!
    moto_pids+=("$pid")
    for _ in $(seq 1 300); do
        if moto_answers "$moto_port"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "moto_server exited:" >&2
            cat "$moto_log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "moto_server did not answer on port $moto_port within 30 s:" >&2
    cat "$moto_log" >&2
    exit 1
}
start_moto
first_port="$moto_port" first_log="$moto_log"
start_moto
export EM_AGENT_TEST_AWS_ENDPOINT_2="http://127.0.0.1:$moto_port"
export EM_AGENT_TEST_MOTO_LOG_2="$moto_log"
moto_port="$first_port" moto_log="$first_log"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
# One moto process answers every test at once on a loaded CI machine: give its answers time. The SDK
# default here (5 s an attempt) suits AWS, where a slower answer means a stalled connection.
export EM_AGENT_AWS_ATTEMPT_TIMEOUT_MS="${EM_AGENT_AWS_ATTEMPT_TIMEOUT_MS:-30000}"
export EM_AGENT_TEST_MOTO_LOG="$moto_log"

# The end-to-end tests start the real binary; build it first so their time goes to testing.
cargo build --locked -p em-agent --bin em-agent
set +e
cargo test --locked --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite: cargo's own last line is that of whichever binary ran last.
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
