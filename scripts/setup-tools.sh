#!/usr/bin/env bash
# Installs everything the test suite needs that cargo does not: a project-local Python
# virtualenv under .tools/ (git-ignored) with the packages in scripts/requirements-test.txt,
# and cargo-deny (pinned, for the supply-chain check).
# Idempotent: a second run only checks. Also installs protoc (Debian protobuf-compiler) if it
# is missing, so that a fresh machine needs nothing but this repository.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
venv="$tools/venv"
req="$root/scripts/requirements-test.txt"
stamp="$venv/.requirements.sha256"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup-tools: '$1' is required but not installed: $2" >&2; exit 1; }
}
need python3 "install Python 3.9+ (Debian: apt-get install python3 python3-venv)"
need cargo "install Rust with rustup: https://rustup.rs"

sudo_cmd=""
[[ "$(id -u)" -ne 0 ]] && sudo_cmd="sudo"
# protoc: temporalio-common (the Temporal codec) compiles Temporal's protos at build time.
if ! command -v protoc >/dev/null 2>&1; then
  echo "setup-tools: installing protoc (Debian package protobuf-compiler)"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get install -y -q protobuf-compiler >/dev/null 2>&1 ||
      { $sudo_cmd apt-get update -q >/dev/null 2>&1 && $sudo_cmd apt-get install -y -q protobuf-compiler >/dev/null; } ||
      { echo "setup-tools: could not install protobuf-compiler with apt-get" >&2; exit 1; }
  else
    echo "setup-tools: 'protoc' is required: install the protobuf compiler (Debian: apt-get install protobuf-compiler)" >&2
    exit 1
  fi
fi

# chromium + playwright-core: the codec server's Web UI test drives Debian's Chromium
# (never a downloaded browser) with playwright-core, pinned in scripts/node/package-lock.json.
if [[ ! -x /usr/bin/chromium ]]; then
  echo "setup-tools: installing chromium (Debian package)"
  $sudo_cmd apt-get install -y -q chromium >/dev/null 2>&1 ||
    { $sudo_cmd apt-get update -q >/dev/null 2>&1 && $sudo_cmd apt-get install -y -q chromium >/dev/null; } ||
    { echo "setup-tools: could not install chromium with apt-get" >&2; exit 1; }
fi
# postgresql: the rotation job's PostgreSQL store is tested against a real server, a throwaway
# cluster that sealbox-testkit creates with Debian's initdb/postgres (found via pg_config).
if ! command -v pg_config >/dev/null 2>&1; then
  echo "setup-tools: installing postgresql (Debian package)"
  $sudo_cmd apt-get install -y -q postgresql >/dev/null 2>&1 ||
    { $sudo_cmd apt-get update -q >/dev/null 2>&1 && $sudo_cmd apt-get install -y -q postgresql >/dev/null; } ||
    { echo "setup-tools: could not install postgresql with apt-get" >&2; exit 1; }
fi
# cargo-deny: scripts/test.sh checks the dependency graph's bans, licences and sources against
# deny.toml. Pinned (deny.toml follows this version's schema); installed from crates.io into
# cargo's default bin dir, not .tools/, so that a fresh clone on the same machine (CI) reuses it
# instead of compiling it again (a cold `cargo install` takes minutes).
deny_version="0.20.2"
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $deny_version" ]]; then
  echo "setup-tools: installing cargo-deny $deny_version (cargo install --locked, from crates.io)"
  cargo install --locked --quiet cargo-deny --version "$deny_version" ||
    { echo "setup-tools: could not install cargo-deny $deny_version with cargo install" >&2; exit 1; }
  [[ "$(cargo deny --version 2>/dev/null || true)" == "cargo-deny $deny_version" ]] ||
    { echo "setup-tools: cargo-deny $deny_version installed but 'cargo deny --version' does not report it (is cargo's bin dir on PATH?)" >&2; exit 1; }
fi
need node "install Node.js 18+ (Debian: apt-get install nodejs npm)"
lock="$root/scripts/node/package-lock.json"
node_stamp="$root/scripts/node/node_modules/.lock.sha256"
if [[ "$(cat "$node_stamp" 2>/dev/null || true)" != "$(sha256sum "$lock" | cut -d' ' -f1)" ]]; then
  echo "setup-tools: installing playwright-core (npm ci in scripts/node)"
  (cd "$root/scripts/node" && npm ci --no-audit --no-fund --silent)
  sha256sum "$lock" | cut -d' ' -f1 > "$node_stamp"
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-tools: creating $venv"
  python3 -m venv "$venv" || {
    echo "setup-tools: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "setup-tools: installing $(grep -cv '^\s*#' "$req") Python package(s) from scripts/requirements-test.txt"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" > "$stamp"
fi
echo "setup-tools: ready ($("$venv/bin/python" --version), $(cargo --version), $(protoc --version), $(cargo deny --version))"
