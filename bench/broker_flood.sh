#!/usr/bin/env bash
# Memory of the oracle with its embedded broker under a flood of large payloads.
#
# Starts wisp-oracle on its embedded broker (loopback, private ports), makes a node key and
# its broker login (`wisp-agent credentials`), then publishes ROUNDS rounds of COUNT payloads
# of SIZE bytes (QoS 1) with mosquitto_pub, logged in as that node on its own proof topic:
# the one topic the broker lets it flood. It prints the process's resident memory before and
# after each round and the publishes the oracle took in. Payloads are not envelopes: the
# oracle counts them (`wisp_oracle_unverified_total`) and drops them; what this measures is
# the broker's and the ingest path's memory, which must stay flat however much is published.
#
# Run from the repository root (needs mosquitto-clients):
#   cargo build -p wisp-oracle -p wisp-agent --bins  # or --profile bench, with BIN=/AGENT=...
#   bench/broker_flood.sh
#   COUNT=5500 SIZE=250000 ROUNDS=3 bench/broker_flood.sh
set -euo pipefail
BIN=${BIN:-target/debug/wisp-oracle}
AGENT=${AGENT:-target/debug/wisp-agent}
COUNT=${COUNT:-5500}
SIZE=${SIZE:-250000}
ROUNDS=${ROUNDS:-3}
MQTT_PORT=${MQTT_PORT:-18830}
HTTP_PORT=${HTTP_PORT:-19321}
command -v mosquitto_pub >/dev/null || { echo "needs mosquitto_pub (apt-get install mosquitto-clients)" >&2; exit 1; }
dir=$(mktemp -d)
WISP_BROKER__LISTEN=127.0.0.1:$MQTT_PORT WISP_HTTP__LISTEN=127.0.0.1:$HTTP_PORT \
    "$BIN" run --data-dir "$dir/oracle" > "$dir/oracle.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf "127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
taken() { curl -s "127.0.0.1:$HTTP_PORT/metrics" | awk '/^wisp_oracle_unverified_total/ {n += $2} END {print n + 0}'; }
oracle=$("$BIN" key --data-dir "$dir/oracle" | tail -n 1 | awk '{print $NF}')
export WISP_NODE__DATA_DIR=$dir/node WISP_ORACLE__PUBLIC_KEY=$oracle
"$AGENT" keygen >/dev/null
login=$("$AGENT" credentials 2>/dev/null)
user=$(sed -n 's/^# username: //p' <<<"$login")
pass=$(sed -n 's/^# password: //p' <<<"$login")
topic=wisp/v1/proofs/$user
echo "$(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); $COUNT x $SIZE B per round"
echo "| round | RSS before (MiB) | RSS after (MiB) | publishes taken in so far |"
echo "|---:|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
    before=$(rss)
    python3 -c "
import sys
line = 'a' * $SIZE + '\n'
for _ in range($COUNT):
    sys.stdout.write(line)
" | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -i "wisp-flood-$user" -u "$user" -P "$pass" \
        -t "$topic" -l -q 1
    sleep 3
    echo "| $round | $before | $(rss) | $(taken) |"
done
awk '/VmHWM/ {printf "peak RSS (VmHWM): %.1f MiB\n", $2 / 1024}' "/proc/$pid/status"
