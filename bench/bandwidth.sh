#!/usr/bin/env bash
# Accuracy benchmark of the QUIC bandwidth test (proof of backhaul).
#
# Two network namespaces joined by a veth pair, each end's egress shaped with tc tbf at the
# same rate, so both directions see the configured rate. On each rate we run our test
# (examples/bwtest: the prover in namespace B, the measurer in A; "down" is A -> B, "up" is
# B -> A) and iperf3 (TCP, one stream) in the same two directions, and print a Markdown table.
#
# Run as root from the repository root:
#   cargo build --profile bench --example bwtest -p wisp-agent
#   sudo bench/bandwidth.sh                       # rates 10 50 100 500 Mbit/s
#   RATES="100" DURATION_MS=6000 sudo -E bench/bandwidth.sh
#
# tbf settings (why they keep tbf itself accurate):
# - burst = max(32 KiB, rate x 4 ms): at least what the kernel timer (HZ 250: 4 ms) lets
#   accumulate, so the bucket never runs dry between ticks (tbf under-delivers otherwise), and
#   small against a 1 s window (rate x 4 ms is 0.4 % of one window).
# - limit = max(256 KiB, rate x 50 ms) bytes of queue: enough for cubic's bursts and GSO
#   batches not to be tail-dropped at this RTT (veth: ~0.05 ms), small enough not to bloat.
# tbf counts whole Ethernet frames (14-byte header included). Our figures are IP-layer rates
# (verified payload scaled by the measurer's IP/payload byte ratio), so their ceiling is the
# IP capacity, rate x 1500/1514 (99.1 %); iperf3 reports TCP payload (1448 of 1514 bytes with
# timestamps, 95.6 %). The table gives the error against the rate and against the IP capacity.
set -euo pipefail

RATES=${RATES:-"10 50 100 500"}
DURATION_MS=${DURATION_MS:-6000}
IPERF_S=${IPERF_S:-$(( (DURATION_MS + 999) / 1000 ))}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/examples/bwtest}
A=wbwA
B=wbwB
IP_A=10.77.0.1
IP_B=10.77.0.2

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (network namespaces and tc)" >&2
    exit 1
fi
if [[ ! -x $BIN ]]; then
    echo "no $BIN: cargo build --profile bench --example bwtest -p wisp-agent (or set BIN)" >&2
    exit 1
fi
if ! command -v iperf3 >/dev/null; then
    apt-get install -y iperf3 >/dev/null
fi
command -v jq >/dev/null || apt-get install -y jq >/dev/null

cleanup() {
    ip netns pids $B 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids $A 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
cleanup

ip netns add $A
ip netns add $B
ip link add vA netns $A type veth peer name vB netns $B
ip -n $A addr add $IP_A/24 dev vA
ip -n $B addr add $IP_B/24 dev vB
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set vA up
ip -n $B link set vB up
# net.core.rmem_max / wmem_max are left alone (on many kernels they are global, not per
# namespace): the test asks for 8 MiB socket buffers and reports what the kernel granted.

shape() {
    local rate_mbit=$1
    local bps=$((rate_mbit * 1000000))
    local burst=$((bps / 8 * 4 / 1000))
    ((burst < 32768)) && burst=32768
    local limit=$((bps / 8 * 50 / 1000))
    ((limit < 262144)) && limit=262144
    ip netns exec $A tc qdisc replace dev vA root tbf rate ${rate_mbit}mbit burst $burst limit $limit
    ip netns exec $B tc qdisc replace dev vB root tbf rate ${rate_mbit}mbit burst $burst limit $limit
    echo "$burst $limit"
}

ip netns exec $B iperf3 -s -D -B $IP_B >/dev/null
ip netns exec $B "$BIN" serve --listen $IP_B:7000 >/tmp/wisp-bw-serve.log 2>&1 &
sleep 0.5

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
mbit() { awk -v a="$1" 'BEGIN { printf "%.2f", a / 1e6 }'; }

ROWS=()
for rate in $RATES; do
    read -r burst limit < <(shape "$rate")
    echo "rate ${rate} Mbit/s: tbf burst ${burst} B, limit ${limit} B" >&2
    ours=$(ip netns exec $A "$BIN" measure --prover $IP_B:7000 --bind $IP_A:0 \
        --duration-ms "$DURATION_MS" --directions both --json)
    echo "$ours" >&2
    for dir in down up; do
        line=$(echo "$ours" | jq -c "select(.direction == \"$dir\")")
        med=$(echo "$line" | jq .median_bps)
        p10=$(echo "$line" | jq .p10_bps)
        bytes=$(echo "$line" | jq .bytes)
        dur=$(echo "$line" | jq .duration_ms)
        rtt_i=$(echo "$line" | jq .rtt_idle_us)
        rtt_l=$(echo "$line" | jq .rtt_loaded_us)
        wire=$(echo "$line" | jq .wire_bytes)
        permille=$(echo "$line" | jq .wire_permille)
        outcome=$(echo "$line" | jq -r .outcome)
        if [[ $dir == down ]]; then rev=""; else rev="-R"; fi
        # iperf3's receiver-side rate (sum_received), same duration.
        ip_bps=$(ip netns exec $A iperf3 -c $IP_B -t "$IPERF_S" $rev -J | jq '.end.sum_received.bits_per_second | floor')
        cfg=$((rate * 1000000))
        ip_cap=$(awk -v c="$cfg" 'BEGIN { printf "%d", c * 1500 / 1514 }')
        ROWS+=("| $rate | $dir | $(mbit "$med") | $(pct "$med" "$cfg") | $(pct "$med" "$ip_cap") | $permille | $(mbit "$p10") | $(mbit "$ip_bps") | $(ratio "$med" "$ip_bps") | $bytes | $wire | $dur | $rtt_i / $rtt_l | $outcome |")
    done
done

echo
echo "Our test: ${DURATION_MS} ms per direction; iperf3: ${IPERF_S} s, TCP, 1 stream."
echo
echo "| rate (Mbit/s) | dir | our median (Mbit/s) | error vs rate | error vs IP capacity | IP / payload (‰) | our p10 (Mbit/s) | iperf3 (Mbit/s) | ours / iperf3 | verified bytes | wire bytes (whole test, both dirs) | duration (ms) | RTT idle / loaded (µs) | outcome |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
