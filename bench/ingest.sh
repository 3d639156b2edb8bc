#!/usr/bin/env bash
# The ingest bench with its broker parts: a private Mosquitto of its own (the limits of
# deploy/mosquitto/wisp.conf, without TLS, logins or persistence) on a free loopback port, so
# the drain part (broker → committed, the oracle stopped while the nodes publish) runs, and
# with WISP_BENCH_POSTGRES set the cluster part too. The machine's own Mosquitto is not used:
# its default max_queued_messages (1,000) drops a burst, and other oracles' tests share it.
#
# Run from the repository root:
#   bench/ingest.sh
#   RUNS=3 bench/ingest.sh
#   WISP_BENCH_POSTGRES='host=127.0.0.1 user=postgres dbname=test' bench/ingest.sh
set -euo pipefail
RUNS=${RUNS:-1}
command -v mosquitto >/dev/null || { echo "needs mosquitto (apt-get install mosquitto)" >&2; exit 1; }
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
message_size_limit 262144
max_packet_size 263168
max_inflight_messages 1000
max_queued_messages 100000
max_queued_bytes 268435456
CONF
mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.log" 2>&1 &
mq=$!
trap 'kill $mq 2>/dev/null; wait $mq 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
cargo bench -p wisp-oracle --bench ingest --no-run
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
for run in $(seq "$RUNS"); do
    echo "== run $run of $RUNS"
    WISP_BENCH_MOSQUITTO=127.0.0.1:$port cargo bench -p wisp-oracle --bench ingest 2>/dev/null
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
