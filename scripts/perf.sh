#!/usr/bin/env bash
# Sealbox performance harness (issue #16): builds perf/ (a crate outside the workspace, with
# its own Cargo.lock and target dir perf/target) in release mode and runs every section it
# implements, printing one table per section and writing them to target/perf/:
#
#   scripts/perf.sh            # full run, ≈ 2 minutes of measuring on one core
#   scripts/perf.sh --quick    # smoke test (short batches; figures not meaningful)
#
#   target/perf/results.md       the tables below, with the run's date, commit and machine
#   target/perf/throughput.csv   every implementation × size × seal/open (median, quartiles)
#   target/perf/cost_curve.csv   Sealbox vs the fastest raw AES-256-GCM, 64 B … 4 MiB
#   target/perf/cost_curve.svg   the same, log-log; ratio_curve.svg: the ratio against size
#   target/perf/breakdown.csv    where a 1 KiB seal/open spends its time
#   target/perf/memory.csv       peak memory of a 4 MiB seal / open / round trip
#   target/perf/overhead.csv     envelope bytes − plaintext bytes (local KEK)
#
# What each figure means: perf/README.md. Not part of the test command. The build uses one
# job (PERF_JOBS to change) and never touches the workspace's target/debug or target/release.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
perf="$root/perf"
out="$root/target/perf"
jobs="${PERF_JOBS:-1}"

# Cargo runs inside perf/ (its own workspace): never in the repository root.
cd "$perf"
echo "[perf] building perf/ (release, -j $jobs; first build compiles ring and aws-lc-rs: minutes)" >&2
build_start=$(date +%s)
cargo build --release -j "$jobs" >&2
build_secs=$(( $(date +%s) - build_start ))

# The core's AEAD backend in this build, from the features cargo resolved for sealbox-core.
if cargo tree -e features -i sealbox-core 2>/dev/null \
    | grep -q 'sealbox-core feature "ring"'; then
    backend=ring
else
    backend=rustcrypto
fi

# Section 3 needs the Python equivalent of Temporal's sample codec server; it is not built yet.
py="$root/.tools/venv/bin/python"
if [ ! -x "$py" ]; then
    section3="not implemented yet; also, no Python at .tools/venv (scripts/setup-tools.sh creates it)."
elif ! "$py" -c 'import aiohttp' 2>/dev/null; then
    section3="not implemented yet; also, aiohttp is not installed in .tools/venv, so the Python sample codec server (aiohttp + cryptography + temporalio) cannot run here."
else
    section3="not implemented in the harness yet."
fi

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain -- crates Cargo.toml 2>/dev/null | awk '{print $2}' | paste -sd ' ' -)"
meta="date: $(date -u '+%Y-%m-%d %H:%M UTC')
commit: $commit${dirty:+ plus uncommitted changes in: $dirty}
toolchain: $(rustc --version)
sealbox-core features in this build: AEAD backend $backend
harness build: ${build_secs} s (cargo build --release -j $jobs in perf/, incremental if it was built before)"

mkdir -p "$out"
cd "$root"
SEALBOX_PERF_META="$meta" \
SEALBOX_PERF_CORE_BACKEND="$backend" \
SEALBOX_PERF_SECTION3="$section3" \
    "$perf/target/release/sealbox-perf" run --out "$out" "$@"
