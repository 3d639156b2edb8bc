//! Integer units used on the wire.
//!
//! Proofs carry no floating-point numbers: a float has several encodings of "the same" value
//! (NaN payloads, -0.0), which would break "one proof, one byte form". Radio quantities are
//! tenths of a decibel, positions are 1e-7 degrees, times are milliseconds since the Unix epoch.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A level or gain in tenths of a decibel (dBm for powers and RSSI, dBi for antenna gains, dB
/// for SNR). `DeciDb(-853)` is -85.3.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeciDb(pub i16);

impl DeciDb {
    /// From a value in whole decibels.
    pub const fn from_db(db: i16) -> Self {
        Self(db.saturating_mul(10))
    }

    /// The value in decibels.
    pub fn db(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl fmt::Debug for DeciDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}dB", self.db())
    }
}

/// Milliseconds since the Unix epoch (UTC). The wire carries it as a varint `u64`.
pub type UnixMs = u64;

/// An epoch number: the reward period counter, starting at 0.
pub type EpochNo = u64;

/// A radio frequency in kHz. `2_412_000` is WiFi channel 1; 32 bits reach 4.29 THz, which
/// covers every band up to 60 GHz and beyond.
pub type FreqKhz = u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decidb_conversions() {
        assert_eq!(DeciDb::from_db(-85), DeciDb(-850));
        assert_eq!(DeciDb(-853).db(), -85.3);
        assert_eq!(DeciDb::from_db(i16::MAX), DeciDb(i16::MAX));
    }

    #[test]
    fn decidb_zigzag_encoding_is_short() {
        // postcard encodes i16 as zigzag varint: -85.3 dB is 2 bytes, not a float's 8.
        assert_eq!(postcard::to_allocvec(&DeciDb(-853)).unwrap().len(), 2);
    }
}
