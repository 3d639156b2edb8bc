//! nl80211 scans: trigger one, wait for its results, dump the BSS table.
//!
//! Built on `wl-nl80211` (tokio). [`Nl80211Scanner::new`] spawns two netlink connection tasks
//! on the current tokio runtime: one for requests, one joined to the `scan` multicast group to
//! learn when the scan finished (`NL80211_CMD_NEW_SCAN_RESULTS` or `…_SCAN_ABORTED` for our
//! interface). The event channel is wl-nl80211's own (unbounded); only scan events arrive on it,
//! a handful per scan.
//!
//! On an interface in AP mode the kernel accepts a scan only with `NL80211_SCAN_FLAG_AP`, and
//! only if the driver supports it (mac80211 drivers generally do); the AP leaves its channel
//! for the dwell time of every scanned channel, so scan only the channels you need.

use std::io;
use std::time::Duration;
use std::vec::Vec;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use wl_nl80211::packet_core::NetlinkPayload;
use wl_nl80211::{
    Nl80211Attr, Nl80211BssInfo, Nl80211Command, Nl80211Error, Nl80211Handle, Nl80211Message,
    Nl80211MulticastGroup, Nl80211Scan, Nl80211ScanFlags,
};

/// One entry of the kernel's BSS table, reduced to what beacon reception needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanEntry {
    /// The transmitter's BSSID.
    pub bssid: [u8; 6],
    /// Frequency in MHz.
    pub freq_mhz: u32,
    /// Signal in mBm (1/100 dBm), when the driver reports dBm.
    pub signal_mbm: Option<i32>,
    /// How long ago the entry was last updated, ms, when the kernel built the dump
    /// (`NL80211_BSS_SEEN_MS_AGO`, jiffies resolution). [`rebase_ages`] replaces it with the
    /// age at a later, known instant.
    pub seen_ms_ago: Option<u32>,
    /// When the entry was last updated, ns of `CLOCK_BOOTTIME`
    /// (`NL80211_BSS_LAST_SEEN_BOOTTIME`, kernels ≥ 3.19).
    pub last_seen_boottime_ns: Option<u64>,
    /// `NL80211_BSS_INFORMATION_ELEMENTS`: from the last beacon or probe response.
    pub ies: Vec<u8>,
    /// `NL80211_BSS_BEACON_IES`: from the last beacon, when the kernel kept them apart.
    pub beacon_ies: Vec<u8>,
}

/// Reduces the attributes of one `NL80211_ATTR_BSS` to a [`ScanEntry`]; `None` without a
/// BSSID or frequency.
pub fn scan_entry_from_bss(attrs: &[Nl80211BssInfo]) -> Option<ScanEntry> {
    let mut entry = ScanEntry::default();
    let (mut has_bssid, mut has_freq) = (false, false);
    for attr in attrs {
        match attr {
            Nl80211BssInfo::Bssid(b) => {
                entry.bssid = *b;
                has_bssid = true;
            }
            Nl80211BssInfo::Frequency(f) => {
                entry.freq_mhz = *f;
                has_freq = true;
            }
            Nl80211BssInfo::SignalMbm(s) => entry.signal_mbm = Some(*s),
            Nl80211BssInfo::SeenMsAgo(ms) => entry.seen_ms_ago = Some(*ms),
            Nl80211BssInfo::LastSeenBootTime(ns) => entry.last_seen_boottime_ns = Some(*ns),
            Nl80211BssInfo::RawInformationElements(ies) => entry.ies.clone_from(ies),
            Nl80211BssInfo::RawBeaconInformationElements(ies) => entry.beacon_ies.clone_from(ies),
            _ => {}
        }
    }
    (has_bssid && has_freq).then_some(entry)
}

/// Now on `CLOCK_BOOTTIME` (monotonic, counting suspend), in ns: the clock of
/// [`ScanEntry::last_seen_boottime_ns`].
pub fn boottime_ns() -> io::Result<u64> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_BOOTTIME).map_err(io::Error::from)?;
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Sets each entry's [`ScanEntry::seen_ms_ago`] to its age at `boottime_now_ns` (a
/// [`boottime_ns`] reading), from [`ScanEntry::last_seen_boottime_ns`] where the kernel gave
/// it; entries without it keep the kernel's own age at dump time.
///
/// Read the wall clock right next to `boottime_now_ns` and pass it as the scan's `now_ms` to
/// `LinuxRadio::handle_scan`: each frame's receive time is then that wall time minus the
/// age, i.e. the last beacon the kernel received from that BSS mapped onto the wall clock.
/// The mapping assumes the wall clock did not step (NTP) during the age, at most the radio's
/// `max_entry_age_ms`; jiffies-based ages are coarser (1–10 ms) and include the time the dump
/// spent in transit.
pub fn rebase_ages(entries: &mut [ScanEntry], boottime_now_ns: u64) {
    for entry in entries {
        if let Some(seen) = entry.last_seen_boottime_ns {
            let age_ms = boottime_now_ns.saturating_sub(seen) / 1_000_000;
            entry.seen_ms_ago = Some(u32::try_from(age_ms).unwrap_or(u32::MAX));
        }
    }
}

/// Errors of a scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Opening the netlink sockets failed.
    #[error("nl80211 socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel refused or failed the request (no nl80211 family, no such interface, busy,
    /// AP scan unsupported).
    #[error("nl80211: {0}")]
    Netlink(#[from] Nl80211Error),
    /// The kernel aborted the scan.
    #[error("nl80211 scan aborted")]
    Aborted,
    /// No scan-finished event within the timeout.
    #[error("nl80211 scan did not finish in time")]
    Timeout,
    /// The event connection closed.
    #[error("nl80211 event connection closed")]
    EventsClosed,
}

/// A scan-group event, reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanEvent {
    Finished(Option<u32>),
    Aborted(Option<u32>),
}

/// Scans on one wireless interface.
pub struct Nl80211Scanner {
    handle: Nl80211Handle,
    // wl-nl80211's event channel is unbounded by its design; it carries only `scan` group
    // events (a few per scan), reduced here to what the scanner waits for.
    events: BoxStream<'static, ScanEvent>,
    if_index: u32,
    ap_mode: bool,
    timeout: Duration,
}

impl core::fmt::Debug for Nl80211Scanner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nl80211Scanner")
            .field("if_index", &self.if_index)
            .field("ap_mode", &self.ap_mode)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Nl80211Scanner {
    /// Opens the netlink connections for interface `if_index` and spawns their tasks on the
    /// current tokio runtime (panics outside one, like `tokio::spawn`).
    ///
    /// `ap_mode`: the interface runs an access point (sets `NL80211_SCAN_FLAG_AP`).
    /// `timeout`: how long [`Nl80211Scanner::trigger`] waits for the scan to finish.
    pub fn new(if_index: u32, ap_mode: bool, timeout: Duration) -> Result<Self, ScanError> {
        let (connection, handle, _) = wl_nl80211::new_connection()?;
        tokio::spawn(connection);
        let (events_connection, _, events) =
            wl_nl80211::new_multicast_connection(&[Nl80211MulticastGroup::Scan])?;
        tokio::spawn(events_connection);
        let events = events
            .filter_map(|(message, _)| async move {
                let NetlinkPayload::InnerMessage(raw) = message.into_parts().1 else {
                    return None;
                };
                let genl = raw.parse_into_genlmsg::<Nl80211Message>().ok()?;
                let if_index = genl.payload.attributes.iter().find_map(|a| match a {
                    Nl80211Attr::IfIndex(i) => Some(*i),
                    _ => None,
                });
                match genl.payload.cmd {
                    Nl80211Command::NewScanResults => Some(ScanEvent::Finished(if_index)),
                    Nl80211Command::ScanAborted => Some(ScanEvent::Aborted(if_index)),
                    _ => None,
                }
            })
            .boxed();
        Ok(Self {
            handle,
            events,
            if_index,
            ap_mode,
            timeout,
        })
    }

    /// Triggers a scan of `freqs_mhz` (all channels when empty) and waits until the kernel
    /// reports its results.
    pub async fn trigger(&mut self, freqs_mhz: &[u32]) -> Result<(), ScanError> {
        let mut request = Nl80211Scan::new(self.if_index);
        if self.ap_mode {
            request = request.scan_flags(Nl80211ScanFlags::Ap);
        }
        if !freqs_mhz.is_empty() {
            request = request.scan_frequencies(freqs_mhz.to_vec());
        }
        let mut replies = self.handle.scan().trigger(request.build()).execute().await;
        while replies.try_next().await?.is_some() {}
        let if_index = self.if_index;
        let ours = |i: Option<u32>| i.is_none_or(|i| i == if_index);
        let wait = async {
            loop {
                match self.events.next().await {
                    Some(ScanEvent::Finished(i)) if ours(i) => return Ok(()),
                    Some(ScanEvent::Aborted(i)) if ours(i) => return Err(ScanError::Aborted),
                    Some(_) => {}
                    None => return Err(ScanError::EventsClosed),
                }
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| ScanError::Timeout)?
    }

    /// The kernel's current BSS table for the interface (`iw dev … scan dump`).
    pub async fn dump(&mut self) -> Result<Vec<ScanEntry>, ScanError> {
        let mut replies = self.handle.scan().dump(self.if_index).execute().await;
        let mut entries = Vec::new();
        while let Some(message) = replies.try_next().await? {
            for attr in &message.payload.attributes {
                if let Nl80211Attr::Bss(infos) = attr {
                    entries.extend(scan_entry_from_bss(infos));
                }
            }
        }
        Ok(entries)
    }

    /// [`Nl80211Scanner::trigger`], then [`Nl80211Scanner::dump`].
    pub async fn scan(&mut self, freqs_mhz: &[u32]) -> Result<Vec<ScanEntry>, ScanError> {
        self.trigger(freqs_mhz).await?;
        self.dump().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bss_attributes_reduce_to_an_entry() {
        let attrs = [
            Nl80211BssInfo::Bssid([2, 0, 0, 0, 0, 1]),
            Nl80211BssInfo::Frequency(2_437),
            Nl80211BssInfo::Tsf(123),
            Nl80211BssInfo::SignalMbm(-6_150),
            Nl80211BssInfo::SeenMsAgo(40),
            Nl80211BssInfo::RawInformationElements(std::vec![0, 1, b'x']),
            Nl80211BssInfo::RawBeaconInformationElements(std::vec![0, 1, b'y']),
        ];
        let entry = scan_entry_from_bss(&attrs).unwrap();
        assert_eq!(entry.bssid, [2, 0, 0, 0, 0, 1]);
        assert_eq!(
            (entry.freq_mhz, entry.signal_mbm, entry.seen_ms_ago),
            (2_437, Some(-6_150), Some(40))
        );
        assert_eq!(
            (entry.ies.as_slice(), entry.beacon_ies.as_slice()),
            (&[0, 1, b'x'][..], &[0, 1, b'y'][..])
        );
        assert_eq!(entry.last_seen_boottime_ns, None);
        assert_eq!(scan_entry_from_bss(&attrs[1..]), None, "no BSSID");
        assert_eq!(scan_entry_from_bss(&attrs[..1]), None, "no frequency");
    }

    #[test]
    fn ages_are_rebased_on_the_boottime_clock() {
        let seen_at = 5_000_000_000;
        let mut entries = [
            scan_entry_from_bss(&[
                Nl80211BssInfo::Bssid([2, 0, 0, 0, 0, 1]),
                Nl80211BssInfo::Frequency(2_437),
                Nl80211BssInfo::SeenMsAgo(40),
                Nl80211BssInfo::LastSeenBootTime(seen_at),
            ])
            .unwrap(),
            scan_entry_from_bss(&[
                Nl80211BssInfo::Bssid([2, 0, 0, 0, 0, 2]),
                Nl80211BssInfo::Frequency(2_437),
                Nl80211BssInfo::SeenMsAgo(70),
            ])
            .unwrap(),
        ];
        // Read 1.2345 s after the beacon: the dump's 40 ms is replaced, the other kept.
        rebase_ages(&mut entries, seen_at + 1_234_500_000);
        assert_eq!(entries[0].seen_ms_ago, Some(1_234));
        assert_eq!(entries[1].seen_ms_ago, Some(70));
        // The clock itself runs and is positive.
        let (a, b) = (boottime_ns().unwrap(), boottime_ns().unwrap());
        assert!(a > 0 && b >= a);
    }
}
