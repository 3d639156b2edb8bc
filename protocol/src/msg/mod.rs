//! Message payloads. Each type is the `payload` of one envelope [`Kind`](crate::Kind).
//!
//! Every field is an integer, a byte string, a bounded UTF-8 string or a composite of those;
//! postcard encodes them in declaration order (see docs/PROTOCOL.md for the byte layout).
//! Bounds that the type cannot express (string lengths, list lengths, ordering) are checked in
//! each type's [`Message::check`](crate::envelope::Message::check), so an opened message always
//! respects them.

mod ack;
mod bandwidth;
mod carrier;
mod epoch;
mod heartbeat;
mod onboard;
mod radio;
mod rewards;
mod usage;

pub use ack::{
    ACK_BATCH_MAX, ACK_MAX_ENTRIES, Ack, AckEntry, AckRoot, OpenedAck, SEALED_ACK_MAX_LEN,
    SEALED_ACK_TAG, SealedAckRef, Verdict, open_sealed_ack, seal_acks,
};
pub use bandwidth::{
    BandwidthReceipt, BwFailure, Direction, MAX_WIRE_OVERHEAD_PERMILLE, Measurement, Outcome,
    RATE_BIN_MS, RATE_WINDOW_MS, rate_span_ms,
};
pub use carrier::CarrierReport;
pub use epoch::{
    AssemblyError, EpochParams, EpochSeed, MEASURER_SET_PART_MAX, MEASURER_SET_PARTS_MAX,
    MeasurerSet, MeasurerSetAssembly, OracleClock,
};
pub use heartbeat::{
    BackhaulOutcome, BackhaulSummary, DeviceHealth, GnssFix, Heartbeat, STATUS_WITNESSES_MAX,
    StatusReport,
};
pub use onboard::{Attestation, BANDS_MAX, Band, MAKER_MAX, OWNER_MAX, Onboard};
pub use radio::{Beacon, Witness};
pub use rewards::{MANIFEST_PAGE_MAX, RewardEntry, RewardManifest};
pub use usage::{
    CREDIT_MEMO_MAX, CreditGrant, USAGE_ANSWER_MAX, USAGE_BYTES_MAX, USAGE_DATA_PROTOCOL,
    USAGE_PROTOCOL, USAGE_REQUEST_MAX, UsageAnswer, UsageReceipt,
};

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::envelope::EnvelopeError;
use crate::reason::Reason;

/// The longest version string in [`Versions`].
pub const VERSION_STR_MAX: usize = 32;

/// Software versions a node reports.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Versions {
    /// The agent's version (`CARGO_PKG_VERSION`).
    pub agent: String,
    /// The firmware or device backend (`sim`, a board name and version).
    pub firmware: String,
}

impl Versions {
    /// Both versions.
    pub fn new(agent: &str, firmware: &str) -> Self {
        Self {
            agent: agent.into(),
            firmware: firmware.into(),
        }
    }

    fn check(&self) -> Result<(), EnvelopeError> {
        check_str("versions", &self.agent, VERSION_STR_MAX)?;
        check_str("versions", &self.firmware, VERSION_STR_MAX)
    }
}

/// Requires `s` to be at most `max` bytes of printable ASCII (no control characters), so that
/// it is safe to print in a terminal or a web page without escaping surprises.
pub(crate) fn check_str(field: &'static str, s: &str, max: usize) -> Result<(), EnvelopeError> {
    if s.len() > max {
        return Err(invalid(field, "too long", Reason::FieldOutOfRange));
    }
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(
            field,
            "not printable ASCII",
            Reason::FieldOutOfRange,
        ));
    }
    Ok(())
}

pub(crate) fn invalid(field: &'static str, why: &'static str, reason: Reason) -> EnvelopeError {
    EnvelopeError::Invalid { field, why, reason }
}
