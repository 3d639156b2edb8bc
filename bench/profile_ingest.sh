#!/usr/bin/env bash
# Where one oracle process spends its CPU in the ingest bench: a sampling profile of the
# wisp-oracle process (its embedded broker included) while `cargo bench --bench ingest` runs
# its single-process part, grouped by what the code does.
#
# perf samples the cpu-clock software event (hardware counters are not available on every
# machine), at PERF_HZ per second, on every thread of the process, from its start to its end
# (the bench's onboarding included: 2,000 onboards against 50,000 heartbeats). The bench
# profile keeps symbols but no frame pointers, so the figures are self time per function:
# what each function itself spent, grouped by the crate or library it belongs to (the
# groups below), not call trees.
#
# Run from the repository root (needs perf: apt-get install linux-perf):
#   bench/profile_ingest.sh
#   PERF_HZ=1999 WISP_BENCH_PER_NODE=25 bench/profile_ingest.sh
#   BENCH=target/release/deps/ingest-<hash> bench/profile_ingest.sh   # a bench already built
set -euo pipefail
PERF_HZ=${PERF_HZ:-999}
# CALLERS=1 also records call chains (DWARF unwinding from .eh_frame: large files, fewer
# samples kept) and prints who calls the heaviest functions.
CALLERS=${CALLERS:-}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ -z "${BENCH:-}" ]; then
    cargo bench -p wisp-oracle --bench ingest --no-run 2>/dev/null
    BENCH=$(ls -t target/release/deps/ingest-* | grep -v '\.d$' | head -n 1)
fi
# The bench runs without the cluster part (its processes would be profiled too).
env -u WISP_BENCH_POSTGRES -u WISP_BENCH_MOSQUITTO "$BENCH" --bench > "$out/bench.txt" 2>&1 &
bench=$!
pid=
for _ in $(seq 600); do
    pid=$(pgrep -n -f 'wisp-oracle run --data-dir' || true)
    [ -n "$pid" ] && break
    sleep 0.05
done
[ -n "$pid" ] || { echo "the bench's oracle did not start" >&2; cat "$out/bench.txt"; exit 1; }
# perf ends when the process it follows does (the bench kills the oracle when it is done).
perf record -q -e cpu-clock -F "$PERF_HZ" ${CALLERS:+--call-graph dwarf,16384} -p "$pid" \
    -o "$out/perf.data" 2>"$out/perf.err" &
perf_pid=$!
wait "$bench"
wait "$perf_pid" || true
grep -E '^ingest|end to end|raw ed25519|end-to-end / raw|CPU during' "$out/bench.txt"
perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
    | python3 "$(dirname "$0")/profile_groups.py"
if [ -n "$CALLERS" ]; then
    echo
    echo "callers of the heaviest functions:"
    perf report -i "$out/perf.data" --no-children --sort sym --stdio -g caller,0.5,callee,function,percent \
        --percent-limit 3 2>/dev/null | grep -v '^$' | head -n 120
fi
