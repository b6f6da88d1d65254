#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (scripts/setup-tools.sh),
# checks formatting and lints, runs the format's independent vector verifier, smoke-tests the
# README's run command, and runs every Rust test. `.ci/run` calls exactly this script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A one-shot run from a clean clone gains nothing from incremental caches, which cost many GB of
# disk (set CARGO_INCREMENTAL=1 to keep them when iterating locally).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
scripts/setup-tools.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "supply chain: cargo deny check bans licenses sources (deny.toml)"
# --workspace: the root manifest is also the `sealbox` package, so without it only that package's
# graph would be checked. Advisories are a manual step (deny.toml says how): CI can't reach the
# advisory database. Duplicate versions are warnings; any error fails the run.
cargo deny --workspace --locked check bans licenses sources

step "format vectors, checked by an independent implementation (tests/vectors/verify.py)"
.tools/venv/bin/python tests/vectors/verify.py

step "README quick start: cargo run --example quickstart (in a scratch directory, fresh dev key)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo build --locked --example quickstart -q
(cd "$scratch" && env -u SEALBOX_LOCAL_KEK -u SEALBOX_LOCAL_KEK_FILE \
  "$root/target/debug/examples/quickstart" "hello from the test suite") | tee "$scratch/out.txt"
grep -q "opened: hello from the test suite" "$scratch/out.txt"
test "$(stat -c %a "$scratch/.sealbox/dev.kek")" = 600

step "README Temporal example: worker + starter against a Temporal dev server (scripts/temporal-example.sh)"
env -u SEALBOX_LOCAL_KEK -u SEALBOX_LOCAL_KEK_FILE bash scripts/temporal-example.sh

step "README run command: sealbox serve --config keyring-config/dev.toml (scripts/serve-smoke.sh)"
env -u SEALBOX_LOCAL_KEK -u SEALBOX_LOCAL_KEK_FILE bash scripts/serve-smoke.sh

step "doc tests"
cargo test --workspace --doc --locked -q

step "unit and integration tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  echo "(cargo-nextest not installed; using cargo test)"
  cargo test --workspace --locked --no-fail-fast
fi
