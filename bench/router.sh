#!/usr/bin/env bash
# The agent as a router runs it: a static release build for each router target this machine
# can build, its stripped size, `--version` under qemu-user, then a one-minute run on the
# simulated device under qemu with its resident memory and CPU.
#
# Installs what it needs when missing: the Rust targets (rustup), a cross C compiler for the
# C parts (ring, blake3, bundled SQLite) through `ziglang` and `cargo-zigbuild` (PyPI),
# and qemu-user-static (Debian). A cold release build takes tens of minutes on 2 cores (LTO,
# one codegen unit, opt-level z: the release profile in Cargo.toml).
#
# The build is the router build: `--no-default-features --features router` (agent/Cargo.toml;
# FEATURES adds to it, e.g. FEATURES=router,nat for NAT traversal), with the unwind tables
# discarded at link time (.cargo/config.toml). A panic must still print its message and abort:
# `keygen` writing its peer id to /dev/full is one (println! panics on a failed write).
#
# Run from the repository root:
#   bench/router.sh                                   # aarch64 only
#   TARGETS="aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl" bench/router.sh
#   RUN_S=60 bench/router.sh                           # the simulated run's length
#   FEATURES=router,nat bench/router.sh                # another feature set
set -euo pipefail
TARGETS=${TARGETS:-aarch64-unknown-linux-musl}
RUN_S=${RUN_S:-60}
FEATURES=${FEATURES:-router}

command -v cargo-zigbuild >/dev/null || pip install -q ziglang cargo-zigbuild
if ! command -v qemu-aarch64-static >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi

qemu_for() { # qemu_for TARGET
    case "$1" in
        aarch64-*) echo qemu-aarch64-static ;;
        armv7-*|arm-*) echo qemu-arm-static ;;
        mipsel-*) echo qemu-mipsel-static ;;
        mips-*) echo qemu-mips-static ;;
        *) echo "" ;;
    esac
}

for target in $TARGETS; do
    echo "== $target"
    # Without a prebuilt standard library for the target (rustup has none for tier-3 MIPS, and
    # the registry here had none for armv7), std is built from the toolchain's own sources
    # (`rust-src`) with cargo's `-Zbuild-std`, which a stable toolchain runs only with
    # RUSTC_BOOTSTRAP=1: the same compiler and std sources, built with the release profile.
    build_std=()
    if ! rustup target list --installed | grep -qx "$target" \
        && ! rustup target add "$target" >/dev/null 2>&1; then
        if ! rustup component add rust-src >/dev/null 2>&1; then
            echo "   no Rust standard library for $target from rustup, and no rust-src to build one: skipped"
            continue
        fi
        echo "   no prebuilt standard library for $target from rustup: std built from rust-src (-Zbuild-std)"
        build_std=(-Zbuild-std=std,panic_abort)
    fi
    start=$SECONDS
    if ! env ${build_std:+RUSTC_BOOTSTRAP=1} cargo zigbuild --release -p wisp-agent --no-default-features \
        --features "$FEATURES" --target "$target" "${build_std[@]}" >"/tmp/router-$target.log" 2>&1; then
        echo "   build failed after $((SECONDS - start)) s (last lines of /tmp/router-$target.log):"
        tail -n 15 "/tmp/router-$target.log" | sed 's/^/   /'
        continue
    fi
    bin="${CARGO_TARGET_DIR:-target}/$target/release/wisp-agent"
    bytes=$(stat -c %s "$bin")
    echo "   features $FEATURES, built in $((SECONDS - start)) s: $bin, $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }') MiB)"
    file "$bin" | sed 's/^/   /'
    # What the flash holds: OpenWrt's root filesystem is an xz-compressed squashfs.
    echo "   xz -9 compressed: $(xz -9 -c "$bin" | wc -c) bytes"
    size -A "$bin" 2>/dev/null | awk '$1 ~ /^\.(text|rodata|eh_frame|eh_frame_hdr|data\.rel\.ro)$/ { printf "   %-14s %9d bytes\n", $1, $2 }' || true
    if size -A "$bin" 2>/dev/null | grep -q '^\.eh_frame'; then
        echo "   unwind tables present (.cargo/config.toml not applied to $target?)"
    fi
    qemu=$(qemu_for "$target")
    if [ -z "$qemu" ] || ! command -v "$qemu" >/dev/null; then
        echo "   no qemu-user for $target: not run"
        continue
    fi
    echo "   --version under $qemu: $("$qemu" "$bin" --version)"
    # A node on the simulated device, no broker reachable, no peers: what the agent costs
    # when it has nothing to do but its schedule (the broker reconnects are part of it).
    dir=$(mktemp -d)
    cat >"$dir/agent.toml" <<EOF
[node]
data_dir = "$dir/data"
[device]
kind = "sim"
[location]
lat = 38.7223
lon = -9.1393
[mqtt]
url = "mqtt://127.0.0.1:9"
[oracle]
public_key = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
[http]
listen = "127.0.0.1:0"
EOF
    # A panic without unwind tables: its message, then an abort (SIGABRT: status 134). Run by
    # an inner shell whose own "Aborted" notice stays out of the report.
    status=$(sh -c '"$@" >/dev/full 2>"$0"; echo $?' "$dir/panic.log" \
        "$qemu" "$bin" keygen --config "$dir/agent.toml" 2>/dev/null)
    if [ "$status" -eq 134 ] && grep -q "panicked at" "$dir/panic.log"; then
        echo "   a panic (keygen > /dev/full): $(grep -m1 -o 'failed printing to stdout.*' "$dir/panic.log"), aborted (status 134)"
    else
        echo "   a panic did not print and abort as expected (status $status):"
        sed 's/^/   /' "$dir/panic.log"
    fi
    "$qemu" "$bin" run --config "$dir/agent.toml" >"$dir/agent.log" 2>&1 &
    pid=$!
    sleep 5
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "   the agent stopped at start:"
        tail -n 10 "$dir/agent.log" | sed 's/^/   /'
        rm -rf "$dir"
        continue
    fi
    t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    sleep "$RUN_S"
    t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
    hz=$(getconf CLK_TCK)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "   under qemu for ${RUN_S} s: RSS $rss KiB (qemu's own included), CPU $(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$RUN_S" 'BEGIN { printf "%.3f", (b - a) / hz / s * 100 }') % of a core (emulated: a router's own CPU does the same work natively)"
    rm -rf "$dir"
done
