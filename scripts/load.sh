#!/usr/bin/env bash
# Load test of `em-agent serve`: GitHub push deliveries, each a body of its own signed per request, posted
# with wrk to a fresh server on 127.0.0.1. Reports req/s, latency percentiles, the server's peak RSS and CPU
# time, waits for the aggregator to drain the queue, and fails unless the server stored exactly as many
# deliveries as it answered with 202.
#
# Usage: scripts/load.sh [-d seconds] [-c connections] [-t threads] [-p port] [-b body.json]
#   -d  seconds of sending (default 20, or $DURATION)
#   -c  connections (default 8, or $CONNECTIONS); a multiple of the threads
#   -t  wrk threads (default 2, or $THREADS)
#   -p  port on 127.0.0.1 (default 38080, or $PORT)
#   -b  the GitHub push body to post (default shared/providers/benches/data/github/push-branch.json, or $BODY)
# Environment: SKIP_BUILD=1 uses the existing release binary; EM_AGENT_BIN names another binary;
#   SERVER_CPUS / WRK_CPUS pin the server / wrk with taskset (e.g. SERVER_CPUS=0 WRK_CPUS=1);
#   KEEP_DATA=1 keeps the temporary data directory; DRAIN_TIMEOUT seconds to wait for the queue (default 300).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
THREADS="${THREADS:-2}"
PORT="${PORT:-38080}"
BODY="${BODY:-$ROOT/shared/providers/benches/data/github/push-branch.json}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300}"
# wrk runs this much longer than the sending time, so every thread stops itself before wrk does.
GRACE=5

while getopts "d:c:t:p:b:h" opt; do
  case "$opt" in
    d) DURATION="$OPTARG" ;;
    c) CONNECTIONS="$OPTARG" ;;
    t) THREADS="$OPTARG" ;;
    p) PORT="$OPTARG" ;;
    b) BODY="$OPTARG" ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
  esac
done

die() { echo "load.sh: $*" >&2; exit 1; }
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || die "-d wants whole seconds"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -gt 0 ]] || die "-c wants a positive count"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -gt 0 ]] || die "-t wants a positive count"
((THREADS <= CONNECTIONS)) || THREADS="$CONNECTIONS"
((CONNECTIONS % THREADS == 0)) || die "-c $CONNECTIONS is not a multiple of -t $THREADS"
[[ -f "$BODY" ]] || die "no body file $BODY"

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
for tool in curl openssl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

BIN="${EM_AGENT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/em-agent}"
if [[ -z "${SKIP_BUILD:-}" && -z "${EM_AGENT_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p em-agent)
fi
[[ -x "$BIN" ]] || die "no em-agent binary at $BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/em-agent-load.XXXXXX")"
SERVER_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "${KEEP_DATA:-}" ]]; then
    echo "data kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE="http://127.0.0.1:$PORT"
SECRET="$(openssl rand -hex 32)"
SIGNATURE="sha256=$(openssl dgst -sha256 -hmac "$SECRET" -r <"$BODY" | cut -d' ' -f1)"
RUN_ID="load-$(date +%s)-$$"

# The pushed repository is one service, so the aggregator recomputes metrics as it would in use.
cat >"$WORK/em-agent.toml" <<'EOF'
[[services]]
name = "load"
repositories = ["woodpecker-ci/woodpecker"]
EOF

server=("$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" --config "$WORK/em-agent.toml")
# taskset execs the server, so $! is the server's own pid either way.
[[ -n "${SERVER_CPUS:-}" ]] && server=(taskset -c "$SERVER_CPUS" "${server[@]}")
EM_AGENT_GITHUB_SECRET="$SECRET" RUST_LOG="${RUST_LOG:-warn}" "${server[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited"; }
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || die "the server does not answer on $BASE"

# One delivery by hand, so that a signing mistake fails here and not as a run of 401s.
status="$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$BASE/webhooks/github" \
  -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
  -H "X-GitHub-Delivery: $RUN_ID-preflight" -H "X-Hub-Signature-256: $SIGNATURE" \
  --data-binary "@$BODY")"
[[ "$status" == 202 ]] || die "the preflight delivery got HTTP $status, not 202"

cpu_seconds() { # utime + stime of the server
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
    "/proc/$SERVER_PID/stat"
}
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }

cpu_before="$(cpu_seconds)"
echo "server pid $SERVER_PID, data in $WORK/data" >&2
echo "posting for ${DURATION}s with $CONNECTIONS connections ($THREADS wrk threads) to $BASE (body $(wc -c <"$BODY") bytes)" >&2
client=(wrk)
[[ -n "${WRK_CPUS:-}" ]] && client=(taskset -c "$WRK_CPUS" wrk)
"${client[@]}" -t "$THREADS" -c "$CONNECTIONS" -d "$((DURATION + GRACE))s" --timeout 10s \
  -s "$ROOT/scripts/load.lua" "$BASE/webhooks/github" \
  -- "$BODY" "$SECRET" "$DURATION" "$RUN_ID" "$((CONNECTIONS / THREADS))" \
  >"$WORK/wrk.out" 2>&1 || { cat "$WORK/wrk.out" >&2; die "wrk failed"; }
cpu_load="$(cpu_seconds)"
hwm_load="$(vm VmHWM)"

r() { sed -n "s/^EM_LOAD $1=//p" "$WORK/wrk.out"; }
grep -q '^EM_LOAD ' "$WORK/wrk.out" || { cat "$WORK/wrk.out" >&2; die "wrk printed no results"; }

# Wait for the aggregator to drain what was queued.
drain_start="$(date +%s.%N)"
stats=""
queued=1
for _ in $(seq "$((DRAIN_TIMEOUT * 10))"); do
  stats="$(curl -fsS "$BASE/v1/stats")"
  queued="$(sed -n 's/.*"queued":\([0-9]*\).*/\1/p' <<<"$stats")"
  [[ "$queued" == 0 ]] && break
  sleep 0.1
done
drain_seconds="$(awk -v a="$drain_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$stats"; }
deliveries="$(field deliveries)"
dead_letters="$(field dead_letters)"
cpu_end="$(cpu_seconds)"
hwm_end="$(vm VmHWM)"
rss_end="$(vm VmRSS)"

accepted="$(r accepted)"
seconds="$(r seconds)"
ok_2xx=$((accepted + $(r duplicates) + $(r other_2xx)))
expected=$((accepted + 1)) # + the preflight delivery
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }

cat <<EOF

em-agent load test: ${CONNECTIONS} connections ($THREADS wrk threads), ${seconds} s of sending, $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))
  requests          $(r completed) answered
  2xx               $ok_2xx  (202 accepted $accepted, duplicate $(r duplicates), other 2xx $(r other_2xx))
  non-2xx           $(r non_2xx)  (socket errors: connect $(r errors_connect), read $(r errors_read), write $(r errors_write), timeout $(r errors_timeout))
  throughput        $(awk -v n="$ok_2xx" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }') req/s (2xx)
  latency           p50 $(ms "$(r latency_p50_us)"), p90 $(ms "$(r latency_p90_us)"), p99 $(ms "$(r latency_p99_us)"), p99.9 $(ms "$(r latency_p999_us)"), max $(ms "$(r latency_max_us)")
  server CPU        $(awk -v a="$cpu_before" -v b="$cpu_load" 'BEGIN { printf "%.1f", b - a }') s during the load, $(awk -v a="$cpu_load" -v b="$cpu_end" 'BEGIN { printf "%.1f", b - a }') s more while draining
  server peak RSS   $((hwm_load / 1024)) MiB at the end of the load, $((hwm_end / 1024)) MiB after draining (RSS now $((rss_end / 1024)) MiB)
  queue drained in  ${drain_seconds} s
  stored            deliveries $deliveries, queued $queued, dead letters $dead_letters (/v1/stats)
EOF

fail=0
if [[ "$queued" != 0 ]]; then
  echo "FAIL: the queue did not drain within ${DRAIN_TIMEOUT}s" >&2
  fail=1
fi
if [[ "$deliveries" != "$expected" ]]; then
  echo "FAIL: the server stored $deliveries deliveries but answered $accepted with 202 (+1 preflight = $expected)" >&2
  fail=1
fi
if [[ "$(r duplicates)" != 0 || "$(r other_2xx)" != 0 ]]; then
  echo "FAIL: unique delivery ids were answered as duplicates or with an unexpected 2xx" >&2
  fail=1
fi
if [[ "$(r threads_unstopped)" != 0 ]]; then
  echo "FAIL: $(r threads_unstopped) wrk thread(s) still had requests in flight when wrk stopped" >&2
  fail=1
fi
if [[ "$fail" == 0 ]]; then
  echo "OK: stored deliveries ($deliveries) = 202 answers ($accepted) + 1 preflight"
fi
exit "$fail"
