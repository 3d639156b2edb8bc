//! Proof of usage reported by an offload partner: a carrier (or roaming federation) that
//! accounts its subscribers' sessions on a hotspot itself, with RADIUS accounting as
//! Helium Mobile and OpenRoaming do, signs a cumulative report of each session.
//!
//! The hotspot does not co-sign: the carrier's accounting is the evidence, and the oracle
//! accepts a report only from a key on its allow-list of carriers (docs/PROTOCOL.md §5.12).
//! The report names its carrier, who must be the envelope signer, so a carrier's signature
//! cannot be presented as another carrier's; the domain tag keeps it from verifying as any
//! other kind (a subscriber's receipt included).

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{self, EnvelopeError, Message, Opened};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{EpochNo, UnixMs};

use super::invalid;
use super::usage::check_session_fields;

/// A carrier's account of one of its subscribers' sessions on one hotspot so far.
///
/// Like a [`super::UsageReceipt`] it is **cumulative**: each report of a session repeats its
/// totals with a higher `seq`, and the oracle counts, per session and epoch, the report with the
/// highest `seq`, less what earlier epochs counted. The carrier pays for what is counted from
/// its own balance of data credits at the oracle, as a subscriber does.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CarrierReport {
    /// The session's id, 16 bytes the carrier derives from its accounting (e.g. a keyed hash of
    /// the RADIUS Acct-Session-Id). Session ids share one namespace with subscribers' at the
    /// oracle and the first (payer, hotspot) to use one keeps it, so it should be unpredictable.
    pub session: ByteArray<16>,
    /// The hotspot that carried the traffic.
    pub hotspot: NodeId,
    /// The carrier's key: the envelope signer, and the account that pays.
    pub carrier: NodeId,
    /// The epoch in which the carrier signed, as it sees it.
    pub epoch: EpochNo,
    /// Increases with every report the carrier signs for the session, from 1 (e.g. one per
    /// RADIUS Interim-Update).
    pub seq: u64,
    /// Bytes delivered to the subscriber since the session started (≤
    /// [`super::USAGE_BYTES_MAX`]; RADIUS Acct-Output-Octets with its Gigawords).
    pub bytes_down: u64,
    /// Bytes the subscriber sent since the session started (≤ [`super::USAGE_BYTES_MAX`];
    /// Acct-Input-Octets with its Gigawords).
    pub bytes_up: u64,
    /// When the carrier signed this report.
    pub signed_ms: UnixMs,
    /// When the session started, if the carrier states it (at most `signed_ms`).
    pub start_ms: Option<UnixMs>,
}

impl CarrierReport {
    /// Verifies, decodes and checks a report, and requires its signer to be one of `carriers`
    /// (the oracle's allow-list): anything else is [`Reason::UsageCarrierUnknown`].
    pub fn open_from(
        bytes: &[u8],
        mut carriers: impl FnMut(&NodeId) -> bool,
    ) -> Result<Opened<Self>, EnvelopeError> {
        let opened = envelope::open::<Self>(bytes)?;
        if !carriers(&opened.signer) {
            return Err(invalid(
                "carrier",
                "is not on the allow-list of carriers",
                Reason::UsageCarrierUnknown,
            ));
        }
        Ok(opened)
    }
}

impl Message for CarrierReport {
    const KIND: Kind = Kind::CarrierReport;

    /// Signed by the carrier it names, which is not the hotspot; fields in range.
    fn check(&self, signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if *signer != self.carrier {
            return Err(invalid(
                "carrier",
                "is not the envelope signer",
                Reason::SignerMismatch,
            ));
        }
        if self.carrier == self.hotspot {
            return Err(invalid(
                "carrier",
                "is the hotspot: a key cannot report its own traffic",
                Reason::SignerMismatch,
            ));
        }
        check_session_fields(
            self.seq,
            self.bytes_down,
            self.bytes_up,
            self.signed_ms,
            self.start_ms,
        )
    }
}
