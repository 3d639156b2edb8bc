#!/usr/bin/env bash
# schemathesis against a live oracle: a short devnet (the real wisp-oracle binary and real
# agents on loopback), read once an epoch has closed, so that nodes, proofs, rewards and witness
# links are there. The run fails on a 5xx, on a response that does not match the oracle's
# /openapi.json (schema, status code, content type), and on invalid input the oracle accepts.
#
# Usage: .ci/schemathesis.sh   (after `cargo test --workspace`, which builds target/debug)
# Env: SCHEMATHESIS_SECONDS, the time budget of the run (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -qF "version $SCHEMATHESIS_VERSION"; then
    pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
devnet_pid=
cleanup() {
    # The devnet stops its oracle and agents on SIGTERM.
    if [ -n "$devnet_pid" ]; then
        kill -TERM "$devnet_pid" 2>/dev/null || true
        wait "$devnet_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

target/debug/wisp-devnet run --nodes 4 --epoch-s 20 --for-s 600 --every-s 600 \
    --data-dir "$work/devnet" > "$work/devnet.log" 2>&1 &
devnet_pid=$!

url=
for _ in $(seq 300); do
    url=$(grep -oE 'dashboard +http://[0-9.:]+' "$work/devnet.log" | awk '{print $2}' | head -n 1 || true)
    [ -n "$url" ] && break
    kill -0 "$devnet_pid" 2>/dev/null || { cat "$work/devnet.log"; exit 1; }
    sleep 0.2
done
[ -n "$url" ] || { echo "the devnet's oracle did not start"; cat "$work/devnet.log"; exit 1; }

# Wait for a closed epoch that paid someone: the first close comes one epoch and a grace
# period in.
paid_epoch() { # the last closed epoch with reward entries, if any
    python3 -c '
import json, sys, urllib.request
url = sys.argv[1]
get = lambda p: json.load(urllib.request.urlopen(url + p, timeout=5))
closed = [e["epoch"] for e in get("/v1/epochs") if e["state"] == "closed"]
paid = [e for e in closed if get(f"/v1/epochs/{e}/rewards")["entries"]]
print(paid[-1] if paid else "")
' "$url" 2>/dev/null || true
}
paid=
for _ in $(seq 120); do
    paid=$(paid_epoch)
    [ -n "$paid" ] && break
    sleep 1
done
[ -n "$paid" ] || { echo "no epoch paid within 120 s"; cat "$work/devnet.log"; exit 1; }
echo "oracle $url: $(curl -fsS "$url/v1/nodes" | grep -o '"peer_id"' | wc -l) nodes; epoch $paid closed and paid"

# Deterministic inputs (--seed), a bounded budget, every phase (examples, coverage, fuzzing,
# stateful: the document's links feed real peer ids and epochs into the detail paths). Loaded
# from its URL, schemathesis leaves /openapi.json itself out: oracle/tests/openapi.rs checks it.
# Run from the scratch directory: schemathesis keeps caches in the current directory.
cd "$work"
schemathesis run "$url/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,negative_data_rejection \
    --mode all --seed 1 --max-time "${SCHEMATHESIS_SECONDS:-60}" --max-examples 100 \
    --workers 2 --request-timeout 10 --no-color \
    --report junit --report-dir report \
    --generation-database none
