//! Proof of usage: a subscriber's cumulative usage receipts, co-signed by the hotspot that
//! carried the traffic, and the operator's grants of prepaid data credits.
//!
//! Roles are what the two signatures of a [`UsageReceipt`] prove, so they are fixed by position:
//! the envelope signer is the subscriber the receipt names, the one co-signer is the hotspot it
//! names. Both sign the same bytes (`wisp/v1/usage_receipt\0 || payload`), and the payload names
//! both keys, so a signature binds its key to the role the payload gives it; a receipt whose
//! signatures sit in the other positions, or are by keys it does not name, is refused with
//! [`Reason::UsageRoleMismatch`].

use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{self, EnvelopeError, Message, Opened};
use crate::id::{NodeId, SubscriberId};
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{EpochNo, UnixMs};

use super::{check_str, invalid};

/// The most bytes a usage receipt may count in one direction: 2^48 (256 TiB).
///
/// More than a 2.4 Gbit/s WiFi 6 link carries flat out in a week (about 181 TB), so no honest
/// session reaches it, and 65,536 receipts at the bound still sum within a `u64`. It is a
/// sanity bound on the encoding, not a plausibility check: the oracle compares the bytes with
/// the hotspot's verified backhaul.
pub const USAGE_BYTES_MAX: u64 = 1 << 48;

/// The longest [`CreditGrant::memo`], in bytes of printable ASCII.
pub const CREDIT_MEMO_MAX: usize = 64;

/// The bounds every cumulative account of a session meets, a subscriber's receipt or a
/// carrier's report alike: `seq` from 1, each counter at most [`USAGE_BYTES_MAX`], the start
/// (when stated) not after the signature.
pub(super) fn check_session_fields(
    seq: u64,
    bytes_down: u64,
    bytes_up: u64,
    signed_ms: UnixMs,
    start_ms: Option<UnixMs>,
) -> Result<(), EnvelopeError> {
    if seq == 0 {
        return Err(invalid("seq", "starts at 1", Reason::FieldOutOfRange));
    }
    if bytes_down > USAGE_BYTES_MAX || bytes_up > USAGE_BYTES_MAX {
        return Err(invalid(
            "bytes",
            "above USAGE_BYTES_MAX",
            Reason::FieldOutOfRange,
        ));
    }
    if start_ms.is_some_and(|s| s > signed_ms) {
        return Err(invalid(
            "start_ms",
            "after signed_ms",
            Reason::FieldOutOfRange,
        ));
    }
    Ok(())
}

/// A subscriber's account of one session with one hotspot so far, co-signed by the hotspot.
///
/// The counters are **cumulative** over the session: each receipt the client signs repeats the
/// session's totals with a higher `seq`, so a lost receipt loses nothing and a later one
/// supersedes it. The hotspot co-signs the last receipt whose counters its own per-client
/// counters agree with and sends that one as its proof. The oracle counts, per session and
/// epoch, the receipt with the highest `seq`; what it pays for in an epoch is that receipt's
/// totals less those of the session's receipt counted in an earlier epoch.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// Random id the subscriber's client chose for the session (16 bytes from its CSPRNG).
    pub session: ByteArray<16>,
    /// The hotspot that carried the traffic: the co-signer.
    pub hotspot: NodeId,
    /// The subscriber who used it: the envelope signer.
    pub subscriber: SubscriberId,
    /// The epoch in which the subscriber signed, as its client sees it.
    pub epoch: EpochNo,
    /// Increases with every receipt the client signs in the session, from 1.
    pub seq: u64,
    /// Bytes delivered to the subscriber since the session started (≤ [`USAGE_BYTES_MAX`]).
    pub bytes_down: u64,
    /// Bytes the subscriber sent since the session started (≤ [`USAGE_BYTES_MAX`]).
    pub bytes_up: u64,
    /// When the subscriber signed this receipt.
    pub signed_ms: UnixMs,
    /// When the session started, if the client states it (at most `signed_ms`).
    pub start_ms: Option<UnixMs>,
}

impl UsageReceipt {
    /// The checks that need no signer: sequence, byte and time bounds. [`Message::check`] runs
    /// them after the role checks; a hotspot may run them before it co-signs.
    pub fn check_fields(&self) -> Result<(), EnvelopeError> {
        check_session_fields(
            self.seq,
            self.bytes_down,
            self.bytes_up,
            self.signed_ms,
            self.start_ms,
        )
    }

    /// The role checks alone, for a receipt that may still lack the hotspot's signature: the
    /// signer is the subscriber named, and any co-signer the hotspot named. A hotspot runs this
    /// on the receipt its subscriber sent before co-signing it.
    pub fn check_roles(&self, signer: &NodeId, cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.subscriber.key() == &self.hotspot {
            return Err(invalid(
                "subscriber",
                "is the hotspot: a key cannot serve itself",
                Reason::UsageRoleMismatch,
            ));
        }
        if signer != self.subscriber.key() {
            return Err(invalid(
                "subscriber",
                "is not the envelope signer",
                Reason::UsageRoleMismatch,
            ));
        }
        match cosigners {
            [] => Ok(()),
            [h] if *h == self.hotspot => Ok(()),
            [_] => Err(invalid(
                "cosigner",
                "is not the hotspot",
                Reason::UsageRoleMismatch,
            )),
            _ => Err(invalid("cosigner", "too many", Reason::Malformed)),
        }
    }

    /// Verifies and decodes a receipt the subscriber signed but the hotspot has not co-signed
    /// yet (the hotspot's view before it adds its signature; [`envelope::open`] refuses such a
    /// receipt). The roles and fields are checked as in a complete receipt.
    pub fn open_for_cosigning(bytes: &[u8]) -> Result<Opened<Self>, EnvelopeError> {
        let env = envelope::EnvelopeRef::parse(bytes)?;
        if env.kind != Kind::UsageReceipt {
            return Err(EnvelopeError::WrongKind {
                expected: Kind::UsageReceipt,
                got: env.kind,
            });
        }
        env.verify()?;
        let msg: Self = envelope::decode_canonical(env.payload)?;
        let signer = env.signer_id();
        let cosigners = env.cosigner_ids();
        if !cosigners.is_empty() {
            return Err(invalid("cosigner", "already co-signed", Reason::Malformed));
        }
        msg.check_roles(&signer, &cosigners)?;
        msg.check_fields()?;
        Ok(Opened {
            msg,
            signer,
            cosigners,
            id: env.proof_id(),
        })
    }
}

impl Message for UsageReceipt {
    const KIND: Kind = Kind::UsageReceipt;

    /// A complete receipt: signed by its subscriber, co-signed by its hotspot, fields in range.
    fn check(&self, signer: &NodeId, cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        self.check_roles(signer, cosigners)?;
        if cosigners.is_empty() {
            return Err(invalid(
                "cosigner",
                "hotspot has not co-signed",
                Reason::UsageMissingCosignature,
            ));
        }
        self.check_fields()
    }
}

/// The oracle operator grants (or tops up) a subscriber's prepaid balance of data credits.
///
/// A data credit (DC) is the ledger's unit: subscribers' balances are held in DC, and usage is
/// burned in DC at a price per MiB that the oracle's rules set. This message carries DC only, so
/// a change of price never changes a grant. The signer is the oracle's key; the oracle applies a
/// grant only when that is so, and once per `grant`, so a grant submitted twice credits once.
/// Grants are the operator's input to the oracle (its admin interface), never an MQTT message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CreditGrant {
    /// Unique id of the grant (16 random bytes): the oracle applies each id once.
    pub grant: ByteArray<16>,
    /// Who receives the credits.
    pub subscriber: SubscriberId,
    /// Data credits granted, at least 1.
    pub amount_dc: u64,
    /// When the operator issued it.
    pub issued_ms: UnixMs,
    /// A note for the ledger (an invoice number, "devnet"): at most [`CREDIT_MEMO_MAX`] bytes of
    /// printable ASCII.
    pub memo: String,
}

impl CreditGrant {
    /// Verifies, decodes and checks a grant, and requires that `operator` (the oracle's key)
    /// signed it: anything else is [`Reason::SignerMismatch`].
    pub fn open_from(bytes: &[u8], operator: &NodeId) -> Result<Opened<Self>, EnvelopeError> {
        let opened = envelope::open::<Self>(bytes)?;
        if opened.signer != *operator {
            return Err(invalid(
                "signer",
                "is not the oracle operator",
                Reason::SignerMismatch,
            ));
        }
        Ok(opened)
    }
}

impl Message for CreditGrant {
    const KIND: Kind = Kind::CreditGrant;

    fn check(&self, signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if signer == self.subscriber.key() {
            return Err(invalid(
                "subscriber",
                "cannot grant itself credits",
                Reason::SignerMismatch,
            ));
        }
        if self.amount_dc == 0 {
            return Err(invalid("amount_dc", "is zero", Reason::FieldOutOfRange));
        }
        check_str("memo", &self.memo, CREDIT_MEMO_MAX)
    }
}

/// The libp2p protocol on which a subscriber's client sends its receipts to the hotspot that
/// serves it and reads the hotspot's [`UsageAnswer`] (one request, one answer per stream).
pub const USAGE_PROTOCOL: &str = "/wisp/usage/1";

/// The libp2p protocol of a hotspot's test endpoint for proof of usage: a subscriber's client
/// asks for bytes down (and sends bytes up) so that there is traffic to count and sign for
/// (devnets and tests; real subscribers' traffic is counted by the router). Each request and
/// response is length-prefixed; the agent bounds their sizes.
pub const USAGE_DATA_PROTOCOL: &str = "/wisp/usage-data/1";

/// The largest request on [`USAGE_PROTOCOL`]: one receipt envelope the subscriber signed, not
/// yet co-signed, as [`UsageReceipt::open_for_cosigning`] reads it.
pub const USAGE_REQUEST_MAX: usize = 512;

/// The largest [`UsageAnswer`] in postcard: the tag and three varints.
pub const USAGE_ANSWER_MAX: usize = 64;

/// What a hotspot answers to a receipt its subscriber sent on [`USAGE_PROTOCOL`], encoded with
/// postcard (canonical form as every payload).
///
/// The hotspot compares the receipt's cumulative counters with its own per-client counters for
/// the session. Only a receipt it agrees with is co-signed and kept (the latest one goes to the
/// oracle); a client that keeps sending receipts the hotspot cannot agree with, or none, stops
/// being served.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum UsageAnswer {
    /// The counters agree within the hotspot's tolerance: receipt `seq` is co-signed and the
    /// session goes on.
    Agreed {
        /// The receipt's sequence number.
        seq: u64,
    },
    /// The counters do not agree: the hotspot's own totals for the session, so that an honest
    /// client whose counts drifted can sign again. Nothing is co-signed.
    Disputed {
        /// The receipt's sequence number.
        seq: u64,
        /// Bytes the hotspot delivered to the subscriber in the session, by its counters.
        bytes_down: u64,
        /// Bytes the hotspot received from the subscriber in the session, by its counters.
        bytes_up: u64,
    },
    /// The receipt is not acceptable at all (wrong hotspot, a key in the wrong role, a sequence
    /// that went back, a session the hotspot no longer serves): the reason's code (§8). The
    /// session ends.
    Refused {
        /// A [`Reason`] code.
        reason: u16,
    },
}
