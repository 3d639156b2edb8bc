#!/bin/sh
# `usage.counters_command` for an access point run by hostapd: each associated station's
# cumulative bytes from the kernel's nl80211 station statistics, as `iw` prints them.
# Prints one line `<mac> <down> <up>` per station: down is what the radio sent the station
# (`tx bytes`), up what it received from it (`rx bytes`). The agent maps each MAC to its
# client's address through /proc/net/arp, and takes a count that falls (the station
# associated again, or a 32-bit counter wrapped on an old kernel) as counting afresh.
#
# The interface: WISP_USAGE_IFACE (default wlan0), e.g. `Environment=WISP_USAGE_IFACE=phy0-ap0`
# in a systemd drop-in, or `procd_set_param env` in the OpenWrt init script.
set -eu
iface=${WISP_USAGE_IFACE:-wlan0}
# Read first, so that a failing `iw` fails the program (a pipeline's status would be awk's).
dump=$(iw dev "$iface" station dump)
printf '%s\n' "$dump" | awk '
    $1 == "Station" {
        if (mac != "") print mac, tx, rx
        mac = $2; tx = 0; rx = 0
    }
    $1 == "tx" && $2 == "bytes:" { tx = $3 }
    $1 == "rx" && $2 == "bytes:" { rx = $3 }
    END { if (mac != "") print mac, tx, rx }
'
