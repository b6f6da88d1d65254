#!/usr/bin/env bash
# Where `sealbox serve` spends its CPU on /decode (issue #16 section 3): runs the release server
# with a local KEK and the audit log to a file (as section 3 does), drives it with section 3's
# closed loop (`sealbox-perf codec-load`, 16 connections), and profiles it.
#
#   perf/profile_codec_server.sh callgrind   # valgrind --tool=callgrind: user-space instructions,
#                                            # exact and inclusive, of REQUESTS requests (default 500)
#   perf/profile_codec_server.sh perf        # perf record (cpu-clock, DWARF call graphs) for
#                                            # SECONDS_TO_PROFILE (default 10): includes kernel time;
#                                            # perf report then takes minutes
#   perf/profile_codec_server.sh perf-flat   # perf record without call graphs (self time only,
#                                            # 999 Hz), grouped into cost centres by
#                                            # perf/profile_categories.py
#   PAYLOADS=10 perf/profile_codec_server.sh callgrind
#
# Needs target/perf-server/release/sealbox and perf/target/release/sealbox-perf (scripts/perf.sh
# builds both) and valgrind or perf (Debian: apt-get install valgrind linux-perf). Writes
# target/perf/profile/: callgrind.out.* with callgrind-inclusive.txt and callgrind-self.txt
# (callgrind_annotate, and callgrind-categories.md), perf.data with perf-children.txt and
# perf-self.txt (perf report), or perf-flat.data with perf-flat.txt and perf-flat-categories.md.
# The callgrind counts start after a warm-up (callgrind_control -z) and cover the measured load's
# own /encode and checking /decode too (2 requests more than REQUESTS).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tool="${1:-callgrind}"
bin="${SEALBOX_BIN:-$root/target/perf-server/release/sealbox}"
load="$root/perf/target/release/sealbox-perf"
out="$root/target/perf/profile"
payloads="${PAYLOADS:-1}"
requests="${REQUESTS:-500}"
seconds="${SECONDS_TO_PROFILE:-10}"

for f in "$bin" "$load"; do
    [[ -x "$f" ]] || { echo "profile: $f is missing: run scripts/perf.sh first" >&2; exit 1; }
done
mkdir -p "$out"
scratch="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

(umask 077 && head -c 32 /dev/urandom | base64 >"$scratch/perf.kek")
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$scratch/policy.toml" <<EOF
version = 1

[default]
active = "local:///perf?file=$scratch/perf.kek"

[server]
listen = "127.0.0.1:$port"
anonymous = ["encode", "decode"]
audit_log = "$scratch/audit.log"
EOF

wait_ready() {
    for _ in $(seq 1 240); do
        if "$load" codec-load --port "$port" --requests 1 --concurrency 1 >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "profile: the server never answered; its log:" >&2
    cat "$scratch/server.log" >&2
    exit 1
}

# For perf: the server started natively in the background (its PID in $pid), ready and warm.
serve_natively() {
    command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 1; }
    (cd "$scratch" && exec "$bin" serve --config "$scratch/policy.toml" --listen "127.0.0.1:$port") \
        >"$scratch/server.log" 2>&1 &
    pid=$!
    wait_ready
    "$load" codec-load --port "$port" --payloads "$payloads" --seconds 2 >/dev/null
}

case "$tool" in
callgrind)
    command -v valgrind >/dev/null || { echo "profile: valgrind is not installed" >&2; exit 1; }
    rm -f "$out"/callgrind.out*
    (cd "$scratch" && exec valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        "$bin" serve --config "$scratch/policy.toml" --listen "127.0.0.1:$port") >"$scratch/server.log" 2>&1 &
    pid=$!
    wait_ready
    echo "profile: warm-up (200 requests under callgrind)" >&2
    "$load" codec-load --port "$port" --payloads "$payloads" --requests 200 >&2
    callgrind_control -z "$pid" >/dev/null
    echo "profile: measuring $requests requests of $payloads payload(s)" >&2
    "$load" codec-load --port "$port" --payloads "$payloads" --requests "$requests"
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    dump="$(ls -t "$out"/callgrind.out.* 2>/dev/null | head -1)"
    [[ -n "$dump" ]] || { echo "profile: no callgrind dump in $out" >&2; exit 1; }
    callgrind_annotate --inclusive=yes "$dump" >"$out/callgrind-inclusive.txt"
    callgrind_annotate --threshold=100 "$dump" >"$out/callgrind-self.txt"
    python3 "$root/perf/profile_categories.py" callgrind "$out/callgrind-self.txt" >"$out/callgrind-categories.md"
    echo "profile: $dump; top inclusive:" >&2
    sed -n '1,60p' "$out/callgrind-inclusive.txt"
    ;;
perf)
    serve_natively
    perf record -q -F 499 --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" -- sleep "$seconds" \
        2>"$scratch/perf.log" &
    rec=$!
    "$load" codec-load --port "$port" --payloads "$payloads" --seconds "$seconds" --pid "$pid"
    wait "$rec"
    perf report -i "$out/perf.data" --children --stdio --percent-limit 1.5 2>/dev/null >"$out/perf-children.txt"
    perf report -i "$out/perf.data" --no-children --stdio -g none --percent-limit 0.5 2>/dev/null \
        >"$out/perf-self.txt"
    echo "profile: $out/perf.data; top self:" >&2
    grep -v '^#' "$out/perf-self.txt" | sed '/^$/d' | head -40
    ;;
perf-flat)
    serve_natively
    perf record -q -F 999 -p "$pid" -o "$out/perf-flat.data" -- sleep "$seconds" 2>"$scratch/perf.log" &
    rec=$!
    "$load" codec-load --port "$port" --payloads "$payloads" --seconds "$seconds" --pid "$pid"
    wait "$rec"
    perf report -i "$out/perf-flat.data" --no-children --stdio --sort dso,sym --percent-limit 0 2>/dev/null \
        >"$out/perf-flat.txt"
    grep -m2 -E '^# (Samples|Event count)' "$out/perf-flat.txt" || true
    python3 "$root/perf/profile_categories.py" perf "$out/perf-flat.txt" | tee "$out/perf-flat-categories.md"
    ;;
*)
    echo "usage: perf/profile_codec_server.sh callgrind|perf|perf-flat" >&2
    exit 2
    ;;
esac
