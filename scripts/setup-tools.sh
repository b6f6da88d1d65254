#!/usr/bin/env bash
# Installs everything the test suite needs that cargo does not: a project-local Python
# virtualenv under .tools/ (git-ignored) with the packages in scripts/requirements-test.txt.
# Idempotent: a second run only checks. Later issues add the OpenBao, moto and Temporal
# binaries here, so that a fresh machine needs nothing but this repository.
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
echo "setup-tools: ready ($("$venv/bin/python" --version), $(cargo --version))"
