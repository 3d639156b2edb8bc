#!/bin/sh
# `usage.hook`: enforces the agent's usage decisions with nftables. The agent runs it as
#   <hook> block|serve <peer id> <address or -> <reason>
# one decision at a time. A blocked client's address goes into a set that the ruleset
# (wisp-usage.nft, loaded once at boot) drops forwarded traffic from and to; serving it takes
# the address out again. A decision without an address (`-`) has nothing to enforce.
# Exit status: 0 when the set says what was decided, else nft's.
set -eu
action=$1
peer=$2
address=$3
reason=${4:-}
[ "$address" = "-" ] && exit 0
case "$address" in
    *:*) set=blocked6 ;;
    *) set=blocked4 ;;
esac
case "$action" in
    block)
        logger -t wisp-usage "block $address ($peer): $reason" 2>/dev/null || true
        nft add element inet wisp_usage "$set" "{ $address }"
        ;;
    serve)
        logger -t wisp-usage "serve $address ($peer)" 2>/dev/null || true
        # Not in the set (never blocked, or already served) is what serving means.
        nft delete element inet wisp_usage "$set" "{ $address }" 2>/dev/null \
            || ! nft get element inet wisp_usage "$set" "{ $address }" >/dev/null 2>&1
        ;;
    *)
        echo "nft-hook.sh: unknown action '$action' (block or serve)" >&2
        exit 2
        ;;
esac
