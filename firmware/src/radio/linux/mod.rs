//! The WiFi beacon radio on a Linux router (feature `linux`).
//!
//! - **Transmit**: hostapd's `vendor_elements` carries the wisp element in every beacon and
//!   probe response ([`hostapd`]). [`LinuxRadio::transmit`] sets it over the control socket and
//!   asks hostapd to rebuild the beacon. It stays on air until [`end_transmission`] puts the
//!   operator's own elements back: the agent does so [`BEACON_ON_AIR`] after sending, so that
//!   every frame carrying a beacon goes out within that time of the beacon's `tx_ms`.
//! - **Receive**: neighbours' beacons show up in nl80211 scan results ([`nl80211`]). The agent
//!   runs [`nl80211::Nl80211Scanner::scan`] on its tokio runtime, rebases the entries' ages on
//!   `CLOCK_BOOTTIME` read next to its wall clock ([`nl80211::rebase_ages`]) and hands them to
//!   [`LinuxRadio::handle_scan`], which extracts wisp elements into the receive queue that
//!   [`Radio::receive`] drains.
//!
//! Not exercised on WiFi hardware: the control protocol is tested against a fake hostapd on a
//! real Unix socket and the scan conversion on constructed nl80211 attributes; the nl80211
//! requests themselves need a wireless interface.

pub mod hostapd;
pub mod nl80211;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use std::vec::Vec;

use self::hostapd::{HostapdCtrl, HostapdError};
use self::nl80211::ScanEntry;
use super::ie::{self, MAX_IE_PAYLOAD};
use super::{Channel, Payload, PayloadTooLarge, Radio, RadioFrame};

/// Settings of [`LinuxRadio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxRadioConfig {
    /// hostapd's control socket for the beacon interface, e.g. `/var/run/hostapd/wlan0`.
    pub hostapd_ctrl: PathBuf,
    /// Longest wait for a hostapd reply. Default 1 s.
    pub timeout: Duration,
    /// Vendor elements the operator configured in hostapd, kept in front of wisp's because
    /// `SET vendor_elements` replaces the whole value. Raw element bytes.
    pub other_vendor_elements: Vec<u8>,
    /// Noise floor used for SNR (nl80211 scan results carry no noise figure), tenths of dBm.
    /// Default −950 (−95 dBm, a typical 20 MHz WiFi receiver).
    pub noise_floor_ddbm: i16,
    /// Scan entries older than this are ignored (the kernel keeps BSSes ~30 s). Default 15 s.
    pub max_entry_age_ms: u32,
    /// Receive queue capacity; when full the oldest frame is dropped and counted. Default 64.
    pub rx_queue: usize,
}

impl LinuxRadioConfig {
    /// Defaults for hostapd's control socket at `hostapd_ctrl`.
    pub fn new(hostapd_ctrl: impl Into<PathBuf>) -> Self {
        Self {
            hostapd_ctrl: hostapd_ctrl.into(),
            timeout: Duration::from_secs(1),
            other_vendor_elements: Vec::new(),
            noise_floor_ddbm: -950,
            max_entry_age_ms: 15_000,
            rx_queue: 64,
        }
    }
}

/// Errors of [`LinuxRadio`].
#[derive(Debug, thiserror::Error)]
pub enum LinuxRadioError {
    /// The payload does not fit one vendor element.
    #[error(transparent)]
    TooLarge(#[from] PayloadTooLarge),
    /// The beacon was asked for on a channel the access point does not operate on; the AP's
    /// channel is hostapd's configuration, not something a beacon can change.
    #[error("beacon requested on {requested_khz} kHz but the access point is on {ap_khz} kHz")]
    ChannelMismatch {
        /// Requested centre frequency.
        requested_khz: u32,
        /// The AP's frequency.
        ap_khz: u32,
    },
    /// hostapd failed or refused.
    #[error(transparent)]
    Hostapd(#[from] HostapdError),
}

/// How long a beacon's element stays on air: the agent ends each transmission this long after
/// it began ([`end_transmission`]).
///
/// A scan reports when the kernel *last* received a frame from a BSS, and the element rides in
/// every beacon hostapd sends (about ten a second) for as long as it is set. Were it left on
/// air until the next beacon, a neighbour that scans a minute later would stamp it a minute
/// late and the oracle would refuse the witness (`witness_lag`: more than 2 s between `tx_ms`
/// and `rx_ms`). Taken off after 1.5 s, every frame that carries it was sent within 1.5 s of
/// `tx_ms` (plus one beacon interval of about 0.1 s), whatever the receiver's scan cadence;
/// a receiver must scan inside that window to hear it, which the agent does by scanning in the
/// middle of each beacon slot's window.
pub const BEACON_ON_AIR: Duration = Duration::from_millis(1_500);

/// Takes the wisp element off air: sets hostapd's vendor elements back to the operator's own
/// (`config.other_vendor_elements`) and rebuilds the beacon, over a control connection of its
/// own (so a task may call it while [`LinuxRadio`] is busy elsewhere). Blocks for at most two
/// hostapd round trips plus the connect, each bounded by `config.timeout`.
pub fn end_transmission(config: &LinuxRadioConfig) -> Result<(), LinuxRadioError> {
    let ctrl = HostapdCtrl::connect(&config.hostapd_ctrl, config.timeout)?;
    ctrl.set_vendor_elements(&config.other_vendor_elements)?;
    ctrl.update_beacon()?;
    Ok(())
}

// BSSIDs remembered for de-duplication; beyond this the table is reset (a rare, harmless
// repeat of already-reported beacons, in exchange for a hard memory bound).
const MAX_TRACKED_BSS: usize = 512;

/// The WiFi beacon radio. See the [module docs](self).
#[derive(Debug)]
pub struct LinuxRadio {
    ctrl: HostapdCtrl,
    config: LinuxRadioConfig,
    ap_channel: Channel,
    rx: VecDeque<RadioFrame>,
    dropped: u64,
    // The last payload reported per BSSID: the AP repeats its beacon every ~100 ms and scans
    // find it again and again; a witness should be produced once per distinct beacon.
    last_payload: HashMap<[u8; 6], Payload>,
}

impl LinuxRadio {
    /// Connects to hostapd and reads the access point's frequency.
    pub fn new(config: LinuxRadioConfig) -> Result<Self, LinuxRadioError> {
        let ctrl = HostapdCtrl::connect(&config.hostapd_ctrl, config.timeout)?;
        let freq_mhz = ctrl.freq_mhz()?;
        Ok(Self {
            ctrl,
            ap_channel: Channel::new(freq_mhz.saturating_mul(1_000), 20),
            rx: VecDeque::with_capacity(config.rx_queue),
            config,
            dropped: 0,
            last_payload: HashMap::new(),
        })
    }

    /// Opens a new control connection and re-reads the access point's frequency, keeping the
    /// receive queue: for when hostapd restarted (a WiFi reload re-creates its socket, and the
    /// old connection then fails with `ECONNREFUSED`). On error the old connection is kept.
    pub fn reconnect(&mut self) -> Result<(), LinuxRadioError> {
        let ctrl = HostapdCtrl::connect(&self.config.hostapd_ctrl, self.config.timeout)?;
        let freq_mhz = ctrl.freq_mhz()?;
        self.ctrl = ctrl;
        self.ap_channel = Channel::new(freq_mhz.saturating_mul(1_000), 20);
        Ok(())
    }

    /// The access point's channel (frequency from hostapd; width reported as 20 MHz, the
    /// primary channel beacons are sent on).
    pub fn ap_channel(&self) -> Channel {
        self.ap_channel
    }

    /// Frames dropped because the receive queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The settings it was opened with (for [`end_transmission`]).
    pub fn config(&self) -> &LinuxRadioConfig {
        &self.config
    }

    /// The hostapd client, for other control commands.
    pub fn hostapd(&self) -> &HostapdCtrl {
        &self.ctrl
    }

    /// Extracts wisp beacons from scan results taken at wall-clock `now_ms` into the receive
    /// queue; returns how many were new.
    pub fn handle_scan(&mut self, entries: &[ScanEntry], now_ms: u64) -> usize {
        let frames = frames_from_scan(
            entries,
            now_ms,
            self.config.noise_floor_ddbm,
            self.config.max_entry_age_ms,
        );
        let mut new = 0;
        for (bssid, frame) in frames {
            if self.last_payload.get(&bssid) == Some(&frame.payload) {
                continue;
            }
            if self.last_payload.len() >= MAX_TRACKED_BSS {
                self.last_payload.clear();
            }
            self.last_payload.insert(bssid, frame.payload.clone());
            if self.rx.len() >= self.config.rx_queue.max(1) {
                self.rx.pop_front();
                self.dropped = self.dropped.saturating_add(1);
            }
            self.rx.push_back(frame);
            new += 1;
        }
        new
    }
}

/// The wisp beacons in `entries`, each with its BSSID.
///
/// RSSI is the entry's signal (mBm → tenths of dBm), SNR is RSSI minus `noise_floor_ddbm`,
/// the receive time is `now_ms` minus the entry's age. Entries without a dBm signal or older
/// than `max_age_ms` are skipped. The beacon's own elements are preferred over those of a
/// probe response.
pub fn frames_from_scan(
    entries: &[ScanEntry],
    now_ms: u64,
    noise_floor_ddbm: i16,
    max_age_ms: u32,
) -> Vec<([u8; 6], RadioFrame)> {
    let mut frames = Vec::new();
    for entry in entries {
        let age = entry.seen_ms_ago.unwrap_or(0);
        let Some(mbm) = entry.signal_mbm else {
            continue;
        };
        if age > max_age_ms {
            continue;
        }
        let ies = if entry.beacon_ies.is_empty() {
            &entry.ies
        } else {
            &entry.beacon_ies
        };
        let Some(payload) = ie::wisp_payloads(ies).next() else {
            continue;
        };
        let Ok(payload) = Payload::from_slice(payload) else {
            continue;
        };
        let rssi_ddbm =
            i16::try_from(mbm / 10).unwrap_or(if mbm < 0 { i16::MIN } else { i16::MAX });
        frames.push((
            entry.bssid,
            RadioFrame {
                payload,
                rssi_ddbm,
                snr_ddb: rssi_ddbm.saturating_sub(noise_floor_ddbm),
                freq_khz: entry.freq_mhz.saturating_mul(1_000),
                rx_time_ms: now_ms.saturating_sub(u64::from(age)),
            },
        ));
    }
    frames
}

impl Radio for LinuxRadio {
    type Error = LinuxRadioError;

    fn max_payload(&self) -> usize {
        MAX_IE_PAYLOAD
    }

    /// Blocks for at most two hostapd round trips (each bounded by the configured timeout).
    fn transmit(&mut self, channel: Channel, payload: &[u8]) -> Result<(), LinuxRadioError> {
        if channel.freq_mhz() != self.ap_channel.freq_mhz() {
            return Err(LinuxRadioError::ChannelMismatch {
                requested_khz: channel.freq_khz,
                ap_khz: self.ap_channel.freq_khz,
            });
        }
        let element = ie::encode_wisp_element(payload).map_err(|e| PayloadTooLarge {
            len: e.len,
            max: MAX_IE_PAYLOAD,
        })?;
        let mut elements = self.config.other_vendor_elements.clone();
        elements.extend_from_slice(&element);
        self.ctrl.set_vendor_elements(&elements)?;
        self.ctrl.update_beacon()?;
        Ok(())
    }

    fn receive(&mut self) -> Result<Option<RadioFrame>, LinuxRadioError> {
        Ok(self.rx.pop_front())
    }
}
