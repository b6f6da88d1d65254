#!/usr/bin/env bash
# The README's run command, as documented: `sealbox serve --config keyring-config/dev.toml`
# (the embedded default: local development KEK, loopback only, no credentials) in a scratch
# directory. Checks readiness, an /encode → /decode round trip the way the Temporal CLI
# calls it, and a graceful stop on SIGTERM.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo build -q --locked -p sealbox-cli
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
scratch="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
cd "$scratch"
"$target/debug/sealbox" serve --config "$root/keyring-config/dev.toml" --listen "127.0.0.1:$port" >"$scratch/serve.log" 2>&1 &
pid=$!
python3 - "$port" <<'PY'
import base64, json, sys, time, urllib.request
port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try:
        if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
            break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("serve-smoke: the server never became ready")
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Namespace": "default"})
    return json.load(urllib.request.urlopen(req, timeout=10))
plain = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                       "data": base64.b64encode(b'"hello codec server"').decode()}]}
sealed = post("/encode", plain)
meta = sealed["payloads"][0]["metadata"]
assert base64.b64decode(meta["encoding"]) == b"binary/encrypted", sealed
assert b"hello" not in base64.b64decode(sealed["payloads"][0]["data"])
opened = post("/decode", sealed)
assert opened == plain, opened
print("serve-smoke: /encode and /decode round trip ok;", base64.b64decode(meta["encryption-key-id"]).decode())
PY
# A core dump of the server would hold data keys and tokens: `sealbox serve` turns them off.
grep -Eq '^Max core file size +0 +0 ' "/proc/$pid/limits" || { grep core "/proc/$pid/limits" >&2; echo "serve-smoke: core dumps are not off" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid"
pid=""
grep -q "sealbox serve: stopped" "$scratch/serve.log" || { cat "$scratch/serve.log" >&2; echo "serve-smoke: no graceful stop" >&2; exit 1; }
grep -q '"operation":"decode"' "$scratch/serve.log"
echo "serve-smoke: ok (graceful stop on SIGTERM, audit lines written)"
