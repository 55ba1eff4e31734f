#!/usr/bin/env bash
# Intake load test: valid signed `pull_request` deliveries (~28 KB, GitHub's own example, a new
# delivery id each) to the real `tollgate serve` and to a bare axum handler that only reads the
# body, measured side by side in one run on loopback:
#   bare      the baseline handler
#   floor     bare plus the signature check and the parse, nothing else (no store, no logging,
#             no metrics): no intake that authenticates deliveries can outrun it
#   dry-run   tollgate without credentials (verifies, parses, logs; writes nothing)
#   sqlite    tollgate with the durable queue on SQLite (answers 202 after the commit)
#   postgres  the same on PostgreSQL (TOLLGATE_LOADTEST_POSTGRES_URL, default the local server;
#             a scratch database is created and dropped)
# The durable servers run intake only (TOLLGATE_WORKERS=0): this measures the write path a
# webhook waits for, not evaluations. Each target gets a closed-loop run (CONCURRENCY clients:
# the most it sustains), an open-loop run at RATE/s (p99 at a steady rate), and a 5 s run at
# 64 clients that reads the server's own CPU time from /proc (CPU per request: where the
# throughput goes, independent of the load generator's share of the cores).
#
# Usage: scripts/loadtest-intake.sh [SECONDS] [CONCURRENCY] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
concurrency="${2:-16}"
rate="${3:-500}"
fixtures="${TOLLGATE_EXTERNAL_FIXTURES:-$(cd .. && pwd)/shared/fixtures/external}"
payload="$fixtures/github/pull_request/opened.payload.json"
pg_admin="${TOLLGATE_LOADTEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
secret="loadtest-secret"
declare -A pid
declare -A addr=([bare]=127.0.0.1:18090 [floor]=127.0.0.1:18093 [dry-run]=127.0.0.1:18089 [sqlite]=127.0.0.1:18091 [postgres]=127.0.0.1:18092)

for a in "${addr[@]}"; do
  if curl -s -o /dev/null "http://$a/"; then
    echo "something already listens on $a; stop it first" >&2
    exit 1
  fi
done
cargo build --release --locked --bin tollgate --example loadtest
work="$(mktemp -d)"
pg_db="tollgate_loadtest_$$"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
bin="$PWD/target/release/tollgate"

serve() { # name, extra env...
  local name="$1"; shift
  mkdir -p "$work/$name"
  (cd "$work/$name" && exec env TOLLGATE_LISTEN="${addr[$name]}" TOLLGATE_GITHUB_WEBHOOK_SECRET=$secret "$@" \
    "$bin" serve 2>"$work/$name.log") &
  pid[$name]=$!
}
durable=(TOLLGATE_GITHUB_TOKEN=loadtest-unused TOLLGATE_GITHUB_API_URL=http://127.0.0.1:9 TOLLGATE_WORKERS=0)

target/release/examples/loadtest bare "${addr[bare]}" 2>/dev/null &
pid[bare]=$!
target/release/examples/loadtest floor "${addr[floor]}" "$secret" 2>/dev/null &
pid[floor]=$!
serve dry-run
serve sqlite "${durable[@]}"
targets=(bare floor dry-run sqlite)
if psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null 2>&1; then
  "$bin" keygen --out "$work/keys" >/dev/null
  serve postgres "${durable[@]}" TOLLGATE_DATABASE_URL="${pg_admin%/*}/$pg_db" \
    TOLLGATE_SIGNING_KEY_FILE="$work/keys/tollgate-signing.key"
  targets+=(postgres)
else
  echo "PostgreSQL at $pg_admin not reachable: skipping the postgres target" >&2
fi
for t in "${targets[@]}"; do
  for _ in $(seq 1 100); do
    case "$t" in bare | floor) break ;; esac
    curl -fs "http://${addr[$t]}/healthz" >/dev/null && break; sleep 0.1
  done
done
sleep 0.5

drive() { # target, extra flags...
  local t="$1"; shift
  target/release/examples/loadtest drive "http://${addr[$t]}/webhooks/github" \
    --secret "$secret" --payload "$payload" --label "$t" "$@"
}
# Warm up every target, then alternate measured runs so none gets the quieter machine.
for t in "${targets[@]}"; do drive "$t" --seconds 2 >/dev/null; done
for round in 1 2; do
  echo "round $round: closed loop, $concurrency clients, ${seconds}s each"
  for t in "${targets[@]}"; do drive "$t" --concurrency "$concurrency" --seconds "$seconds"; done
done
echo "open loop, $rate/s, ${seconds}s each"
for t in "${targets[@]}"; do drive "$t" --rate "$rate" --seconds "$seconds"; done

# User + system time of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
echo "server CPU per request, closed loop, 64 clients, 5s each"
for t in "${targets[@]}"; do
  before=$(cpu_ticks "${pid[$t]}")
  line=$(drive "$t" --concurrency 64 --seconds 5)
  after=$(cpu_ticks "${pid[$t]}")
  ok=$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$line")
  if [ "${ok:-0}" -eq 0 ]; then
    echo "$t: no delivery was answered: $line" >&2
    continue
  fi
  printf '%-10s %6d µs/request  (%s)\n' "$t" $(( (after - before) * tick_us / ok )) \
    "$(grep -o 'rps=[0-9]*' <<<"$line")"
done

# What the durable targets hold must be what they acknowledged.
for t in sqlite postgres; do
  [ -f "$work/$t.log" ] || continue
  curl -fs "http://${addr[$t]}/metrics" | grep -E '^tollgate_queue_(jobs|commit_batch_deliveries_(sum|count))' \
    | sed "s/^/  $t: /" || true
done
