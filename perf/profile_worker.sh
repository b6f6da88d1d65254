#!/usr/bin/env bash
# Where the example worker's CPU goes with and without the Sealbox codec (issue #16, section 4).
# Needs what `scripts/perf.sh --only 4` built and installed (target/perf-server/release/worker
# and starter, target/perf/venv/bin/temporal) and Debian's linux-perf. Starts a Temporal dev
# server, then for each mode (SEALBOX_CODEC=none, then the codec with a fresh local KEK) a
# worker, warms it with 50 workflows, and records it (perf, 999 Hz, call graphs) for 25 s while
# `starter bench 600 3 2048` runs. Writes target/perf/worker-profile/perf-MODE.data and
# self-MODE.txt (self time per symbol), and prints the sample totals and Sealbox's own share:
#
#   perf/profile_worker.sh [text|random]     # the bench payload kind (default text)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kind="${1:-text}"
bin="$root/target/perf-server/release"
temporal="$root/target/perf/venv/bin/temporal"
out="$root/target/perf/worker-profile"
for f in "$bin/worker" "$bin/starter" "$temporal"; do
    [[ -x "$f" ]] || { echo "profile: $f is missing; run scripts/perf.sh --only 4 first" >&2; exit 1; }
done
command -v perf >/dev/null || { echo "profile: perf is not installed (Debian: linux-perf)" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$temporal" server start-dev --ip 127.0.0.1 --headless --log-level warn --port "$port" \
    --http-port "$(free_port)" --metrics-port "$(free_port)" >"$out/temporal.log" 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
until "$temporal" operator namespace describe --namespace default --address "127.0.0.1:$port" >/dev/null 2>&1; do
    sleep 0.3
done
head -c 32 /dev/urandom | base64 >"$out/kek"
chmod 600 "$out/kek"
printf 'version = 1\n[default]\nactive = "local:///perf?file=%s"\n' "$out/kek" >"$out/policy.toml"
export TEMPORAL_ADDRESS="http://127.0.0.1:$port" TEMPORAL_NAMESPACE=default SEALBOX_POLICY="$out/policy.toml"
for mode in none sealbox; do
    if [[ $mode == none ]]; then export SEALBOX_CODEC=none; else unset SEALBOX_CODEC; fi
    "$bin/worker" >"$out/worker-$mode.log" 2>&1 &
    wpid=$!
    "$bin/starter" bench 50 3 2048 64 "$kind" >/dev/null
    perf record -q -F 999 -g -p "$wpid" -o "$out/perf-$mode.data" -- sleep 25 2>/dev/null &
    rec=$!
    "$bin/starter" bench 600 3 2048 64 "$kind"
    wait "$rec" || true
    kill "$wpid"; wait "$wpid" 2>/dev/null || true
    perf report -i "$out/perf-$mode.data" --stdio -n --no-children -g none --sort symbol 2>/dev/null \
        | grep -v '^#' | sed '/^$/d' >"$out/self-$mode.txt"
done
# Totals, and the self time of Sealbox's own code (codec, key-ring and its cache, the core,
# AES-GCM, HKDF) in the codec run.
for mode in none sealbox; do
    awk -v m="$mode" '{ n += $2; if (tolower($0) ~ /sealbox|ring_core|ring::|aes|gcm|hkdf|sha2|moka|zeroize|sip::/) s += $2 }
        END { printf "%s: %d samples, Sealbox and its crypto/cache %d (%.1f%%)\n", m, n, s, 100 * s / n }' \
        "$out/self-$mode.txt"
done
