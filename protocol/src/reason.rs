//! Stable rejection reason codes.
//!
//! The oracle stores, counts and acks every rejection with one of these codes; agents log them
//! and dashboards group by them. A code never changes meaning once released; new codes are
//! added, old ones retired (never reused). On the wire a reason is its `u16` code, and a code
//! this build does not know decodes as [`Reason::Other`] so an older agent still understands
//! that its proof was rejected.
//!
//! Nearly every reason is a final judgement of the proof: the same bytes would be judged the
//! same again, so the sender deletes the proof. A few say only "not judged now"
//! ([`Reason::is_transient`]): the sender keeps the proof and resends it later. Codes 900–999
//! are reserved for such verdicts, so an agent treats one it does not know as transient too.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $slug:literal; )*) => {
        /// Why a proof (or message) was rejected. The number is the stable wire code.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[doc = $doc])* $name, )*
            /// A code this build does not know (sent by a newer oracle).
            Other(u16),
        }

        impl Reason {
            /// Every known reason, in code order.
            pub const ALL: &'static [Reason] = &[ $( Reason::$name, )* ];

            /// The stable numeric code.
            pub const fn code(self) -> u16 {
                match self {
                    $( Reason::$name => $code, )*
                    Reason::Other(c) => c,
                }
            }

            /// The reason for a code (unknown codes give [`Reason::Other`]).
            pub const fn from_code(code: u16) -> Reason {
                match code {
                    $( $code => Reason::$name, )*
                    c => Reason::Other(c),
                }
            }

            /// The stable snake_case name, used as a metrics label and in JSON.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Reason::$name => $slug, )*
                    Reason::Other(_) => "other",
                }
            }

            /// One line for operators.
            pub const fn describe(self) -> &'static str {
                match self {
                    $( Reason::$name => concat!($($doc),*).trim_ascii_start(), )*
                    Reason::Other(_) => "a reason code unknown to this build",
                }
            }
        }
    };
}

reasons! {
    // 1xx: envelope and transport.
    /// The envelope is larger than its kind allows.
    Oversize = 100, "oversize";
    /// The bytes are not a well-formed envelope or payload.
    Malformed = 101, "malformed";
    /// The envelope's protocol version is not supported.
    UnsupportedVersion = 102, "unsupported_version";
    /// The kind is unknown or not accepted on this channel.
    UnexpectedKind = 103, "unexpected_kind";
    /// A signature does not verify, or a signer key is invalid.
    BadSignature = 104, "bad_signature";
    /// The payload is not in its one canonical encoding.
    NonCanonical = 105, "non_canonical";
    /// The MQTT topic names another node than the envelope's signer.
    TopicMismatch = 106, "topic_mismatch";
    /// The sender exceeded its rate limit.
    RateLimited = 107, "rate_limited";
    /// The signer has not onboarded.
    UnknownNode = 108, "unknown_node";
    /// The signer is on the deny list.
    Denied = 109, "denied";
    /// A party's role does not match who signed (e.g. the receipt's measurer is not its signer).
    SignerMismatch = 110, "signer_mismatch";
    /// A field is out of its allowed range.
    FieldOutOfRange = 111, "field_out_of_range";
    // 2xx: time and epochs.
    /// The proof names an epoch that is closed or not yet open.
    WrongEpoch = 200, "wrong_epoch";
    /// A timestamp lies outside the allowed window around the epoch.
    TimestampOutOfWindow = 201, "timestamp_out_of_window";
    /// The proof arrived after the settle window closed.
    LateArrival = 202, "late_arrival";
    // 3xx: beacons.
    /// The beacon was sent outside the node's slot for the epoch.
    BeaconWrongSlot = 300, "beacon_wrong_slot";
    /// The beacon's nonce is not the one derived from the epoch seed.
    BeaconBadNonce = 301, "beacon_bad_nonce";
    /// The node already beaconed this epoch.
    BeaconDuplicate = 302, "beacon_duplicate";
    /// The beacon's frequency is outside the node's declared bands.
    BeaconUndeclaredBand = 303, "beacon_undeclared_band";
    /// The beacon's cell is not the node's asserted cell.
    BeaconCellMismatch = 304, "beacon_cell_mismatch";
    // 4xx: witnesses.
    /// A node witnessed its own beacon.
    SelfWitness = 400, "self_witness";
    /// The same node witnessed the same beacon twice.
    DuplicateWitness = 401, "duplicate_witness";
    /// The witness was received too long after the beacon was sent.
    WitnessLag = 402, "witness_lag";
    /// The witnessed frequency differs from the beacon's declared frequency, or lies in no band the witness declared for its own radio.
    FrequencyMismatch = 403, "frequency_mismatch";
    /// Witness and beaconer are closer than the minimum distance.
    TooClose = 404, "too_close";
    /// Witness and beaconer are farther apart than any radio link could reach.
    TooFar = 405, "too_far";
    /// The RSSI is stronger than free-space path loss allows at that distance.
    RssiTooStrong = 406, "rssi_too_strong";
    /// The beacon already has the maximum number of witnesses.
    WitnessLimit = 407, "witness_limit";
    /// The embedded beacon is itself invalid.
    BeaconInvalid = 408, "beacon_invalid";
    /// No valid beacon matches this witness after the settle window.
    BeaconNotFound = 409, "beacon_not_found";
    /// The witness never beacons validly, so it earns no witness rewards.
    NoReciprocity = 410, "no_reciprocity";
    /// The RSSI or SNR values are physically implausible (e.g. below the noise floor, constant).
    SignalImplausible = 411, "signal_implausible";
    /// The witness's cell is not its asserted cell.
    WitnessCellMismatch = 412, "witness_cell_mismatch";
    /// The link is longer than twice the reach the network's radios show on that band, or an end of it is misplaced.
    LinkImplausible = 413, "link_implausible";
    /// The beacon was received long after it was sent: a replay.
    WitnessReplayed = 414, "witness_replayed";
    // 5xx: bandwidth.
    /// The measurer is not assigned to this prover for the epoch.
    WrongMeasurer = 500, "wrong_measurer";
    /// The receipt lacks the prover's co-signature.
    MissingCosignature = 501, "missing_cosignature";
    /// More throughput than the declared link could carry.
    ImplausibleThroughput = 502, "implausible_throughput";
    /// A second receipt from the same measurer for the same prover, direction and epoch.
    DuplicateMeasurer = 503, "duplicate_measurer";
    /// The measured RTT is shorter than light needs to cover the claimed distance.
    SpeedOfLight = 504, "speed_of_light";
    /// The test itself failed (refused, timed out, wrong bytes); recorded, not paid.
    TestFailed = 505, "test_failed";
    // 6xx: heartbeats and location.
    /// The GNSS fix is far from the asserted cell.
    GnssMismatch = 600, "gnss_mismatch";
    /// A heartbeat sequence number was already accepted.
    HeartbeatReplay = 601, "heartbeat_replay";
    /// Heartbeats were signed closer together than the interval allows.
    HeartbeatTooFrequent = 602, "heartbeat_too_frequent";
    // 7xx: onboarding.
    /// The secure-element attestation does not verify.
    AttestationInvalid = 700, "attestation_invalid";
    /// The attestation names a maker the oracle does not trust.
    UnknownMaker = 701, "unknown_maker";
    /// The oracle requires an attestation and none was given.
    AttestationRequired = 702, "attestation_required";
    /// The location was re-asserted sooner than allowed.
    ReassertTooSoon = 703, "reassert_too_soon";
    /// The owner (payout) address is not valid.
    BadOwnerAddress = 704, "bad_owner_address";
    /// The chip serial is already bound to another node key.
    DeviceAlreadyBound = 705, "device_already_bound";
    /// The onboard message is older than (or conflicts with) the one already applied.
    OnboardStale = 706, "onboard_stale";
    // 8xx: a node's standing, judged over all its proofs of an epoch.
    /// The node serves a penalty for cheating caught in an earlier epoch and earns nothing.
    Penalized = 800, "penalized";
    /// The node's radio links contradict its asserted location, or it claims to hear beaconers far beyond reach (distinct beaconers, or epochs of far beacons that came over the internet).
    LinksImplausible = 801, "links_implausible";
    /// The node reports hearing its partners much louder than they hear it (over its partners, or over epochs for a node with few).
    RssiInconsistent = 802, "rssi_inconsistent";
    /// The measurer's figures disagree with the other measurers and its own capacity.
    MeasurerDisagrees = 803, "measurer_disagrees";
    /// Nobody outside the node's small group of witnesses hears it; coverage paid at a reduced rate.
    IsolatedCluster = 804, "isolated_cluster";
    /// The node shares its site with other identities (closer than the minimum distance); paid as one.
    CoLocated = 805, "co_located";
    /// Beacons between the node and its partners took far longer both ways than radio does: relayed.
    LinksRelayed = 806, "links_relayed";
    // 10xx: usage (subscribers' receipts, carriers' reports); 9xx is reserved for transient verdicts.
    /// The usage receipt lacks the hotspot's co-signature: only the subscriber signed it.
    UsageMissingCosignature = 1000, "usage_missing_cosignature";
    /// The usage receipt is not signed by the subscriber it names and co-signed by the hotspot it names (roles swapped, another key, or one key in both roles).
    UsageRoleMismatch = 1001, "usage_role_mismatch";
    /// The session id is bound to another subscriber and hotspot: a receipt replayed to a second hotspot, or a colluding subscriber reusing a session.
    UsageSessionConflict = 1002, "usage_session_conflict";
    /// The receipt's seq is not above that of the session's last accepted receipt: a replay or an older receipt.
    UsageStaleSeq = 1003, "usage_stale_seq";
    /// A cumulative counter of the receipt is below that of the session's last accepted receipt.
    UsageCountersDecreased = 1004, "usage_counters_decreased";
    /// The subscriber shares an owner with the hotspot (it is the owner's key, or a node of the same owner): self-dealing is not paid.
    UsageSelfDealing = 1005, "usage_self_dealing";
    /// The subscriber holds no data credits: never granted any, or its balance is spent.
    UsageNoCredit = 1006, "usage_no_credit";
    /// The subscriber already has as many sessions as the oracle keeps for one subscriber.
    UsageSessionLimit = 1007, "usage_session_limit";
    /// The hotspot's sessions carried more bytes than its verified backhaul could in the epoch; the excess is not paid (recorded at close).
    UsageExceedsBackhaul = 1008, "usage_exceeds_backhaul";
    /// The subscriber's balance did not cover the epoch's usage: its sessions were paid pro rata to what it held (recorded at close).
    UsageCreditShort = 1009, "usage_credit_short";
    /// A credit grant with the same grant id was already applied: each grant credits once.
    UsageGrantReused = 1010, "usage_grant_reused";
    /// The carrier report is signed by a key that is not on the oracle's allow-list of carriers.
    UsageCarrierUnknown = 1011, "usage_carrier_unknown";
}

/// Codes reserved for transient verdicts: a receiver that does not know one still treats it
/// as "not judged now" ([`Reason::is_transient`]).
pub const TRANSIENT_CODES: core::ops::RangeInclusive<u16> = 900..=999;

impl Reason {
    /// Whether this verdict says "not judged now" rather than judging the proof: the sender
    /// keeps the proof and resends it later, with backoff, and deletes it only on a final
    /// verdict. The oracle neither stores nor remembers a proof it refused this way, so the
    /// resend is judged afresh.
    ///
    /// Transient: `rate_limited` (the node sent faster than its allowance; the proof itself was
    /// never looked at) and every code in [`TRANSIENT_CODES`], known or not.
    ///
    /// Every other reason is final. The envelope reasons (`oversize`, `malformed`,
    /// `unsupported_version`, `unexpected_kind`, `bad_signature`, `non_canonical`,
    /// `topic_mismatch`, `signer_mismatch`, `field_out_of_range`) judge the bytes, which a
    /// resend repeats. `unknown_node` and `denied` judge the signer against the registry as it
    /// stands: a node that has not onboarded must onboard, not resend, and keeping such proofs
    /// would fill the outbox with proofs that may never be accepted. `wrong_epoch` cannot
    /// become right: an agent learns epochs only from the oracle's seeds, and the oracle opens
    /// an epoch before it publishes its seed. `timestamp_out_of_window` and `late_arrival` only
    /// get worse with time. The beacon, witness, bandwidth, heartbeat and onboarding reasons
    /// (3xx–7xx) and the usage reasons (10xx) judge what the proof claims against signed facts
    /// and the node's record;
    /// `reassert_too_soon` among them refuses the move itself, which the operator makes again
    /// once it is allowed (it can be days), rather than the agent resending until then. The
    /// 8xx reasons are the close's judgement of a node over a whole epoch.
    pub const fn is_transient(self) -> bool {
        match self {
            Reason::RateLimited => true,
            r => {
                let c = r.code();
                c >= *TRANSIENT_CODES.start() && c <= *TRANSIENT_CODES.end()
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Other(c) => write!(f, "other({c})"),
            r => f.write_str(r.name()),
        }
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self, self.code())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u16(self.code())
        }
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = alloc::string::String::deserialize(d)?;
            if let Some(code) = s.strip_prefix("other(").and_then(|r| r.strip_suffix(')')) {
                let code = code.parse::<u16>().map_err(serde::de::Error::custom)?;
                return Ok(Reason::from_code(code));
            }
            Reason::ALL
                .iter()
                .copied()
                .find(|r| r.name() == s)
                .ok_or_else(|| serde::de::Error::custom("unknown reason name"))
        } else {
            Ok(Reason::from_code(u16::deserialize(d)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        for (i, a) in Reason::ALL.iter().enumerate() {
            assert_eq!(Reason::from_code(a.code()), *a);
            assert!(!a.describe().is_empty());
            for b in &Reason::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn unknown_codes_survive_a_round_trip() {
        let r = Reason::from_code(9999);
        assert_eq!(r, Reason::Other(9999));
        let enc = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<Reason>(&enc).unwrap(), r);
    }

    #[test]
    fn only_rate_limited_and_the_reserved_range_are_transient() {
        let transient: alloc::vec::Vec<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|r| r.is_transient())
            .collect();
        assert_eq!(transient, [Reason::RateLimited]);
        // The wire keeps it: an older build decoding a newer oracle's code still backs off.
        for (code, transient) in [
            (107, true),
            (899, false),
            (900, true),
            (999, true),
            (1000, false),
            (9999, false),
        ] {
            let enc = postcard::to_allocvec(&Reason::from_code(code)).unwrap();
            let r: Reason = postcard::from_bytes(&enc).unwrap();
            assert_eq!(r.is_transient(), transient, "code {code}");
        }
        // Every known code in the reserved range must be transient (none is, yet).
        assert!(
            Reason::ALL
                .iter()
                .all(|r| !TRANSIENT_CODES.contains(&r.code()) || r.is_transient())
        );
        // Final verdicts an agent might be tempted to retry.
        for r in [
            Reason::UnknownNode,
            Reason::WrongEpoch,
            Reason::LateArrival,
            Reason::TimestampOutOfWindow,
            Reason::WitnessLimit,
            Reason::BadSignature,
        ] {
            assert!(!r.is_transient(), "{r}");
        }
    }

    #[test]
    fn wire_form_is_the_code() {
        // 406 = 0b1_1001_0110 → varint 0x96 0x03.
        assert_eq!(
            postcard::to_allocvec(&Reason::RssiTooStrong).unwrap(),
            [0x96, 0x03]
        );
    }
}
