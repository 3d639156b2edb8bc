//! The beacon radio: proof-of-coverage beacons out, neighbours' beacons in.
//!
//! [`Radio`] is what the agent needs: transmit one beacon payload on the hotspot's declared
//! channel, and receive the frames it heard with signal strength and frequency. Backends:
//!
//! - WiFi ([`ie`], and with the `linux` feature `radio::linux`): the payload rides in a
//!   vendor-specific information element of the access point's beacon frames (hostapd
//!   `vendor_elements`); neighbours find it in their nl80211 scan results. One element carries
//!   at most [`ie::MAX_IE_PAYLOAD`] = 251 bytes.
//! - The simulator's in-memory radio (`device::SimRadio`, feature `sim`).
//!
//! Signal values are integers in tenths (dBm, dB), like every other measured value that ends
//! up in a signed proof.

pub mod ie;
#[cfg(feature = "linux")]
pub mod linux;

/// The largest payload any backend accepts (a LoRa-class frame; WiFi allows less).
pub const MAX_PAYLOAD: usize = 255;

/// A received or transmitted payload.
pub type Payload = heapless::Vec<u8, MAX_PAYLOAD>;

/// A radio channel: centre frequency and bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    /// Centre frequency in kHz.
    pub freq_khz: u32,
    /// Bandwidth in MHz (20, 40, 80, 160 for WiFi; fractions of a MHz round up to 1).
    pub width_mhz: u16,
}

impl Channel {
    /// A channel from its centre frequency and width.
    pub const fn new(freq_khz: u32, width_mhz: u16) -> Self {
        Self {
            freq_khz,
            width_mhz,
        }
    }

    /// 2.4 GHz WiFi channel `number` (1–14), 20 MHz.
    pub const fn wifi_2g4(number: u8) -> Option<Self> {
        let mhz = match number {
            1..=13 => 2_407 + 5 * number as u32,
            14 => 2_484,
            _ => return None,
        };
        Some(Self::new(mhz * 1_000, 20))
    }

    /// 5 GHz WiFi channel `number` (32–177), 20 MHz.
    pub const fn wifi_5g(number: u8) -> Option<Self> {
        match number {
            32..=177 => Some(Self::new((5_000 + 5 * number as u32) * 1_000, 20)),
            _ => None,
        }
    }

    /// 6 GHz WiFi channel `number` (1–233), 20 MHz.
    pub const fn wifi_6g(number: u8) -> Option<Self> {
        match number {
            1..=233 => Some(Self::new((5_950 + 5 * number as u32) * 1_000, 20)),
            _ => None,
        }
    }

    /// The centre frequency in whole MHz (rounded down).
    pub const fn freq_mhz(&self) -> u32 {
        self.freq_khz / 1_000
    }
}

/// A frame heard by the radio.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RadioFrame {
    /// The beacon payload as transmitted (the vendor element's contents for WiFi).
    pub payload: Payload,
    /// Received signal strength in tenths of a dBm (−723 = −72.3 dBm).
    pub rssi_ddbm: i16,
    /// Signal-to-noise ratio in tenths of a dB.
    pub snr_ddb: i16,
    /// Frequency it was heard on, kHz.
    pub freq_khz: u32,
    /// When it was received, in the receiver's wall-clock ms (UTC).
    pub rx_time_ms: u64,
}

/// A payload longer than the radio can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("beacon payload of {len} bytes exceeds this radio's {max}-byte limit")]
pub struct PayloadTooLarge {
    /// The payload's length.
    pub len: usize,
    /// The radio's limit.
    pub max: usize,
}

/// A beacon radio.
///
/// Neither method blocks on the air: `transmit` hands the payload to the radio (for WiFi: the
/// access point repeats it in every beacon until replaced), `receive` returns a frame already
/// heard or `None`.
pub trait Radio {
    /// The backend's error; includes a way to report [`PayloadTooLarge`].
    type Error;

    /// The largest payload [`Radio::transmit`] accepts.
    fn max_payload(&self) -> usize;

    /// Starts transmitting `payload` on `channel`, replacing the previous payload.
    fn transmit(&mut self, channel: Channel, payload: &[u8]) -> Result<(), Self::Error>;

    /// The next frame heard, oldest first.
    fn receive(&mut self) -> Result<Option<RadioFrame>, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wifi_channel_numbers() {
        assert_eq!(Channel::wifi_2g4(1), Some(Channel::new(2_412_000, 20)));
        assert_eq!(Channel::wifi_2g4(6).map(|c| c.freq_mhz()), Some(2_437));
        assert_eq!(Channel::wifi_2g4(14).map(|c| c.freq_mhz()), Some(2_484));
        assert_eq!(Channel::wifi_2g4(15), None);
        assert_eq!(Channel::wifi_5g(36).map(|c| c.freq_mhz()), Some(5_180));
        assert_eq!(Channel::wifi_5g(165).map(|c| c.freq_mhz()), Some(5_825));
        assert_eq!(Channel::wifi_5g(14), None);
        assert_eq!(Channel::wifi_6g(1).map(|c| c.freq_mhz()), Some(5_955));
        assert_eq!(Channel::wifi_6g(0), None);
    }
}
