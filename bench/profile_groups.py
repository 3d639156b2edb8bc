"""Groups `perf report --no-children --sort dso,sym --stdio` lines by what the code does.

Reads the report on stdin; prints each group's share of the samples and its five heaviest
functions. The groups are matched on the symbol (and the library for code outside the
binary), first match wins; what matches none is "other".
"""

import re
import sys
from collections import defaultdict

# (group, pattern on "dso symbol"), in order.
GROUPS = [
    ("kernel: syscalls, network stack, scheduling", r"\[kernel|\[k\]"),
    ("ed25519: signature verification and signing", r"curve25519|ed25519|dalek"),
    ("hashing (SHA-2, BLAKE)", r"sha2|sha512|sha256|blake|digest::"),
    ("SQLite", r"sqlite|rusqlite"),
    ("embedded broker (rumqttd)", r"rumqttd"),
    ("MQTT client (rumqttc)", r"rumqttc"),
    ("judging: rules, epochs, registry (wisp-oracle-core)", r"wisp_oracle_core"),
    ("decoding and envelopes (wisp-protocol)", r"wisp_protocol"),
    ("oracle service (wisp-oracle: stages, store, acks)", r"wisp_oracle"),
    ("tokio runtime", r"tokio"),
    ("memory: allocation, copies", r"malloc|free|memcpy|memmove|memset|alloc::|realloc|_int_"),
    ("hash maps and collections", r"hashbrown|btree|core::hash|siphash|hash_one|foldhash"),
]

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+(\[.\])\s+(.*)$")


def main() -> None:
    share = defaultdict(float)
    top = defaultdict(list)
    total = 0.0
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
        total += pct
        key = f"{dso} {kind} {sym}"
        group = next((g for g, p in GROUPS if re.search(p, key)), "other")
        share[group] += pct
        top[group].append((pct, sym[:110]))
    if total == 0:
        print("no samples (is perf allowed here? see /proc/sys/kernel/perf_event_paranoid)")
        return
    print(f"\nself time by group ({total:.1f}% of the samples attributed):")
    for group, pct in sorted(share.items(), key=lambda x: -x[1]):
        print(f"  {pct:5.1f}%  {group}")
        for p, sym in sorted(top[group], reverse=True)[:5]:
            print(f"           {p:5.2f}%  {sym}")


if __name__ == "__main__":
    main()
