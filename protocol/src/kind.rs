//! Message kinds, their domain tags and their size limits.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The kind of payload an envelope carries. The byte value is the wire value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Kind {
    /// A node joins or re-asserts its location ([`crate::msg::Onboard`]).
    Onboard = 1,
    /// The oracle's per-epoch seed and parameters ([`crate::msg::EpochSeed`]).
    EpochSeed = 2,
    /// A radio beacon ([`crate::msg::Beacon`]).
    Beacon = 3,
    /// A node heard a beacon ([`crate::msg::Witness`]).
    Witness = 4,
    /// A bandwidth test result signed by measurer and prover ([`crate::msg::BandwidthReceipt`]).
    BandwidthReceipt = 5,
    /// Periodic liveness and location ([`crate::msg::Heartbeat`]).
    Heartbeat = 6,
    /// The oracle's signed root over a batch of verdicts ([`crate::msg::AckRoot`]); the
    /// verdicts travel as sealed acks ([`crate::msg::seal_acks`]).
    Ack = 7,
    /// One page of an epoch's rewards ([`crate::msg::RewardManifest`]).
    RewardManifest = 8,
    /// A node's signed status for monitors ([`crate::msg::StatusReport`]).
    StatusReport = 9,
    /// One part of the nodes eligible to measure in an epoch ([`crate::msg::MeasurerSet`]).
    MeasurerSet = 10,
    /// The oracle's clock, published every few seconds ([`crate::msg::OracleClock`]).
    OracleClock = 11,
    /// A subscriber's cumulative usage of a session, co-signed by the hotspot that carried it
    /// ([`crate::msg::UsageReceipt`]).
    UsageReceipt = 12,
    /// The oracle operator grants a subscriber prepaid data credits ([`crate::msg::CreditGrant`]).
    CreditGrant = 13,
    /// An allow-listed carrier's cumulative usage of one of its sessions on a hotspot
    /// ([`crate::msg::CarrierReport`]).
    CarrierReport = 14,
}

impl Kind {
    /// Every kind, in wire order.
    pub const ALL: [Kind; 14] = [
        Kind::Onboard,
        Kind::EpochSeed,
        Kind::Beacon,
        Kind::Witness,
        Kind::BandwidthReceipt,
        Kind::Heartbeat,
        Kind::Ack,
        Kind::RewardManifest,
        Kind::StatusReport,
        Kind::MeasurerSet,
        Kind::OracleClock,
        Kind::UsageReceipt,
        Kind::CreditGrant,
        Kind::CarrierReport,
    ];

    /// The kind for a wire byte.
    pub const fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Onboard,
            2 => Kind::EpochSeed,
            3 => Kind::Beacon,
            4 => Kind::Witness,
            5 => Kind::BandwidthReceipt,
            6 => Kind::Heartbeat,
            7 => Kind::Ack,
            8 => Kind::RewardManifest,
            9 => Kind::StatusReport,
            10 => Kind::MeasurerSet,
            11 => Kind::OracleClock,
            12 => Kind::UsageReceipt,
            13 => Kind::CreditGrant,
            14 => Kind::CarrierReport,
            _ => return None,
        })
    }

    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The lowercase name used in domain tags, metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Onboard => "onboard",
            Kind::EpochSeed => "epoch_seed",
            Kind::Beacon => "beacon",
            Kind::Witness => "witness",
            Kind::BandwidthReceipt => "bandwidth_receipt",
            Kind::Heartbeat => "heartbeat",
            Kind::Ack => "ack",
            Kind::RewardManifest => "reward_manifest",
            Kind::StatusReport => "status_report",
            Kind::MeasurerSet => "measurer_set",
            Kind::OracleClock => "oracle_clock",
            Kind::UsageReceipt => "usage_receipt",
            Kind::CreditGrant => "credit_grant",
            Kind::CarrierReport => "carrier_report",
        }
    }

    /// The domain tag prepended to the payload before signing: `wisp/v1/<name>\0`.
    ///
    /// It makes a signature for one kind useless as another kind, and useless outside wisp
    /// (a libp2p handshake signs `libp2p-tls-handshake:` or a noise prologue, never `wisp/`).
    pub const fn domain_tag(self) -> &'static [u8] {
        match self {
            Kind::Onboard => b"wisp/v1/onboard\0",
            Kind::EpochSeed => b"wisp/v1/epoch_seed\0",
            Kind::Beacon => b"wisp/v1/beacon\0",
            Kind::Witness => b"wisp/v1/witness\0",
            Kind::BandwidthReceipt => b"wisp/v1/bandwidth_receipt\0",
            Kind::Heartbeat => b"wisp/v1/heartbeat\0",
            Kind::Ack => b"wisp/v1/ack\0",
            Kind::RewardManifest => b"wisp/v1/reward_manifest\0",
            Kind::StatusReport => b"wisp/v1/status_report\0",
            Kind::MeasurerSet => b"wisp/v1/measurer_set\0",
            Kind::OracleClock => b"wisp/v1/oracle_clock\0",
            Kind::UsageReceipt => b"wisp/v1/usage_receipt\0",
            Kind::CreditGrant => b"wisp/v1/credit_grant\0",
            Kind::CarrierReport => b"wisp/v1/carrier_report\0",
        }
    }

    /// The largest envelope (all bytes, signatures included) accepted for this kind.
    ///
    /// Beacons must fit one WiFi vendor-specific information element (255 bytes, less the
    /// 3-byte OUI and 1-byte type), with room to spare. An ack root is a few fixed
    /// fields (the verdicts travel outside it, sealed); manifests carry up to
    /// [`crate::msg::MANIFEST_PAGE_MAX`] entries.
    pub const fn max_envelope_len(self) -> usize {
        match self {
            Kind::Onboard => 1024,
            Kind::EpochSeed => 512,
            Kind::Beacon => MAX_BEACON_LEN,
            Kind::Witness => 640,
            Kind::BandwidthReceipt => 512,
            Kind::Heartbeat => 512,
            Kind::Ack => 256,
            Kind::RewardManifest => MAX_ENVELOPE_LEN,
            Kind::StatusReport => 4096,
            Kind::MeasurerSet => MEASURER_SET_MAX_LEN,
            Kind::OracleClock => 128,
            Kind::UsageReceipt => 512,
            Kind::CreditGrant => 384,
            Kind::CarrierReport => 384,
        }
    }

    /// How many co-signatures an envelope of this kind may carry besides the signer's.
    /// Bandwidth receipts carry up to one (measurer signs, prover co-signs; a failed test may
    /// carry only the measurer's signature). Usage receipts carry up to one on the wire (the
    /// subscriber signs, the hotspot co-signs), so that a hotspot can check a receipt its
    /// subscriber signed before adding its own signature; only a co-signed one is valid
    /// ([`crate::msg::UsageReceipt`]). Every other kind carries none.
    pub const fn max_cosigners(self) -> usize {
        match self {
            Kind::BandwidthReceipt | Kind::UsageReceipt => 1,
            _ => 0,
        }
    }

    /// Whether the oracle accepts this kind on the proofs topic (the others are oracle output
    /// or peer-to-peer only).
    ///
    /// A usage receipt is a proof of its hotspot's and travels on the hotspot's proofs topic
    /// (docs/PROTOCOL.md §5.10): its topic is matched against the co-signer, not the signer
    /// ([`crate::envelope::EnvelopeRef::sent_by`]). A credit grant is the operator's input to
    /// the oracle and a carrier report a carrier's (both over its HTTP API); neither travels
    /// over MQTT: on a proofs topic they are `unexpected_kind`.
    pub const fn is_proof(self) -> bool {
        matches!(
            self,
            Kind::Onboard
                | Kind::Beacon
                | Kind::Witness
                | Kind::BandwidthReceipt
                | Kind::Heartbeat
                | Kind::UsageReceipt
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest beacon envelope: one vendor IE holds 251 bytes of payload; 240 leaves room for a
/// framing byte and future fields.
pub const MAX_BEACON_LEN: usize = 240;

/// The largest envelope of any kind (a reward manifest page). Inputs longer than this are
/// rejected before their kind byte is even read.
pub const MAX_ENVELOPE_LEN: usize = 256 * 1024;

/// The largest `measurer_set` envelope: 4,096 node ids of 32 bytes and room for the header.
pub const MEASURER_SET_MAX_LEN: usize = 132 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_u8(k.as_u8()), Some(k));
        }
        assert_eq!(Kind::from_u8(0), None);
        assert_eq!(Kind::from_u8(15), None);
    }

    #[test]
    fn usage_receipts_are_proofs_and_grants_are_not() {
        assert!(Kind::UsageReceipt.is_proof());
        assert!(!Kind::CreditGrant.is_proof());
        assert!(!Kind::CarrierReport.is_proof());
    }

    #[test]
    fn domain_tags_are_distinct_and_named() {
        for a in Kind::ALL {
            let tag = a.domain_tag();
            assert_eq!(tag, alloc::format!("wisp/v1/{}\0", a.name()).as_bytes());
            for b in Kind::ALL {
                if a != b {
                    // No tag is a prefix of another, so tag || payload never collides.
                    assert!(!b.domain_tag().starts_with(tag), "{a} prefixes {b}");
                }
            }
        }
    }

    #[test]
    fn limits_fit_under_the_global_cap() {
        for k in Kind::ALL {
            assert!(k.max_envelope_len() <= MAX_ENVELOPE_LEN);
        }
        const { assert!(MAX_BEACON_LEN <= 251) };
    }
}
