#!/usr/bin/env bash
# Runs Sealbox's cargo-fuzz targets (fuzz/, a crate outside the workspace) one after another,
# each for a fixed number of executions, and prints a summary line per target.
#
#   scripts/fuzz.sh                      # every target, 10,000,000 executions each
#   scripts/fuzz.sh -n 100000 envelope   # one target, 100,000 executions
#   FUZZ_RUNS=1000000 scripts/fuzz.sh policy payloads_json
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Everything happens inside fuzz/ with its own target dir
# (fuzz/target); the workspace build is untouched. One libFuzzer process at a time, one job:
# no -jobs/-workers.
#
# Corpus: fuzz/seeds/<target> (committed, read-only, regenerate with fuzz/make_seeds.py) plus
# fuzz/corpus/<target> (git-ignored; new inputs are saved there). Crashes are written to
# fuzz/artifacts/<target>/. Logs go to fuzz/logs/<target>.log.
#
# Per-target settings (see fuzz/README.md for why):
#   max_len      longest input libFuzzer generates
#   sanitizer    address (cargo fuzz's default) or none. zstd and policy run without ASan:
#                under ASan they managed ~600 and ~5,000 exec/s (every zstd decoder
#                allocation of up to a 16 MiB window is poisoned and unpoisoned), which makes
#                10M executions take hours. Non-ASan builds go to fuzz/target/nosan so the
#                two builds do not evict each other. FUZZ_SANITIZER=address|none overrides.
#   detect_leaks 0 for targets whose fixtures hold caches (key-ring leases and unwraps,
#                Proxy data keys): cache inserts look like leaks to LeakSanitizer, whose full
#                heap scan on each such run cut exec/s by 3x.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
runs="${FUZZ_RUNS:-10000000}"
toolchain="${FUZZ_TOOLCHAIN:-+nightly}"
all=(envelope policy payloads_json legacy zstd)

while getopts "n:h" opt; do
    case "$opt" in
        n) runs="$OPTARG" ;;
        *) sed -n '2,30p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

settings() { # target -> "max_len sanitizer detect_leaks"
    case "$1" in
        envelope)      echo "65536 address 0" ;;
        policy)        echo "16384 none 1" ;;
        payloads_json) echo "4096 address 1" ;;
        legacy)        echo "8192 address 0" ;;
        zstd)          echo "65536 none 0" ;;
        *) echo "unknown target $1 (known: ${all[*]})" >&2; exit 2 ;;
    esac
}

for t in "${targets[@]}"; do settings "$t" >/dev/null; done
mkdir -p "$fuzz/logs"
summary=()
for t in "${targets[@]}"; do
    read -r max_len sanitizer detect_leaks < <(settings "$t")
    sanitizer="${FUZZ_SANITIZER:-$sanitizer}"
    build=(-s "$sanitizer")
    [ "$sanitizer" = address ] || build+=(--target-dir "$fuzz/target/nosan")
    mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
    dict=()
    [ -f "$fuzz/dicts/$t.dict" ] && dict=(-dict="$fuzz/dicts/$t.dict")
    log="$fuzz/logs/$t.log"
    echo "==> $t: $runs runs, max_len $max_len, sanitizer $sanitizer, detect_leaks $detect_leaks (log: ${log#"$root"/})"
    # Build first (untimed): the workspace's crates may have changed since the last build.
    (cd "$fuzz" && cargo "$toolchain" fuzz build "${build[@]}" "$t") >"$log" 2>&1 || {
        echo "build of $t failed, see ${log#"$root"/}"; summary+=("$t: build FAILED"); continue; }
    start=$(date +%s)
    status=0
    (cd "$fuzz" && cargo "$toolchain" fuzz run "${build[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -runs="$runs" -max_len="$max_len" -rss_limit_mb=2048 -detect_leaks="$detect_leaks" \
        -print_final_stats=1 "${dict[@]}") >>"$log" 2>&1 || status=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    line=$(printf '%-14s executions %-10s cov %-6s ft %-7s time %5ss  exec/s %-7s peak RSS %s MB  %s' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$secs" "${rate:-?}" "${rss:-?}" \
        "$([ "$status" = 0 ] && echo ok || echo "FAILED (exit $status, see ${log#"$root"/})")")
    echo "$line"
    summary+=("$line")
done

echo
echo "Summary ($runs runs per target):"
printf '%s\n' "${summary[@]}"
