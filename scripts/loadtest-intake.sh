#!/usr/bin/env bash
# Intake load test: valid signed `pull_request` deliveries (~28 KB, GitHub's own example) to the
# real `tollgate serve` (dry-run) and to a bare axum handler that only reads the body, measured
# side by side in one run on loopback. Usage: scripts/loadtest-intake.sh [SECONDS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
concurrency="${2:-16}"
fixtures="${TOLLGATE_EXTERNAL_FIXTURES:-$(cd .. && pwd)/shared/fixtures/external}"
payload="$fixtures/github/pull_request/opened.payload.json"
secret="loadtest-secret"
tollgate_addr=127.0.0.1:18089
bare_addr=127.0.0.1:18090

for addr in $tollgate_addr $bare_addr; do
  if curl -s -o /dev/null "http://$addr/"; then
    echo "something already listens on $addr; stop it first" >&2
    exit 1
  fi
done
cargo build --release --locked --bin tollgate --example loadtest
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$work" && TOLLGATE_LISTEN=$tollgate_addr TOLLGATE_GITHUB_WEBHOOK_SECRET=$secret \
  exec "$OLDPWD/target/release/tollgate" serve 2>"$work/tollgate.log") &
target/release/examples/loadtest bare $bare_addr 2>/dev/null &
for _ in $(seq 1 50); do
  curl -fs "http://$tollgate_addr/healthz" >/dev/null && break; sleep 0.1
done
sleep 0.5

drive() {
  target/release/examples/loadtest drive "http://$1/webhooks/github" \
    --secret "$secret" --payload "$payload" --concurrency "$concurrency" --seconds "$2"
}
# Warm up both, then alternate measured runs so neither gets the quieter machine.
drive $tollgate_addr 2 >/dev/null; drive $bare_addr 2 >/dev/null
for round in 1 2; do
  echo "round $round"
  echo -n "  tollgate: "; drive $tollgate_addr "$seconds"
  echo -n "  bare:     "; drive $bare_addr "$seconds"
done
echo "dry-run lines logged by tollgate: $(grep -c 'dry-run' "$work/tollgate.log")"
