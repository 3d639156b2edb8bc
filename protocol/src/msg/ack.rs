use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{
    self, Envelope, EnvelopeError, Message, ProofId, decode_canonical, encode_payload,
};
use crate::id::{NodeId, NodeKey};
use crate::kind::Kind;
use crate::merkle;
use crate::reason::Reason;
use crate::units::UnixMs;

use super::invalid;

/// The most verdicts in one ack (the oracle merges a node's verdicts of a batch into one ack).
pub const ACK_MAX_ENTRIES: usize = 128;

/// The oracle's verdict on one proof.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Durably stored; it will be evaluated at epoch close. The agent may delete it.
    Accepted,
    /// Refused, with the reason. The agent counts the reason; it deletes the proof unless the
    /// reason is transient ([`Reason::is_transient`]: not judged now), which it resends later.
    Rejected(Reason),
}

impl Verdict {
    /// Whether the verdict is final: accepted, or rejected for a reason that is not transient.
    /// Only a final verdict lets the agent delete the proof.
    pub const fn is_final(self) -> bool {
        match self {
            Verdict::Accepted => true,
            Verdict::Rejected(r) => !r.is_transient(),
        }
    }
}

/// One proof's verdict.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AckEntry {
    /// The proof.
    pub proof_id: ProofId,
    /// The verdict.
    pub verdict: Verdict,
}

/// The verdicts for one node's proofs. An agent deletes an outbox entry only when an ack under
/// a root signed by the pinned oracle key names its proof id with a final verdict
/// ([`Verdict::is_final`]).
///
/// Acks travel sealed ([`seal_acks`], [`open_sealed_ack`]): the oracle signs one [`AckRoot`]
/// per batch and each ack carries its path to that root, so one signature covers a whole batch
/// of nodes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Ack {
    /// The node whose proofs these are (acks are published on that node's topic; the agent
    /// checks the field too, so an ack for another node is never applied).
    pub node: NodeId,
    /// When the oracle signed it.
    pub issued_ms: UnixMs,
    /// 1 to [`ACK_MAX_ENTRIES`] verdicts, distinct proof ids.
    pub entries: Vec<AckEntry>,
}

impl Ack {
    /// The structural rules: 1 to [`ACK_MAX_ENTRIES`] entries, distinct proof ids.
    pub fn check(&self) -> Result<(), EnvelopeError> {
        if self.entries.is_empty() || self.entries.len() > ACK_MAX_ENTRIES {
            return Err(invalid(
                "entries",
                "must hold 1 to 128 verdicts",
                Reason::FieldOutOfRange,
            ));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|p| p.proof_id == e.proof_id) {
                return Err(invalid(
                    "entries",
                    "duplicate proof id",
                    Reason::FieldOutOfRange,
                ));
            }
        }
        Ok(())
    }
}

/// The most acks under one signed root.
pub const ACK_BATCH_MAX: u32 = 1 << 20;

/// The most bytes of a sealed ack (root envelope, path and ack together).
pub const SEALED_ACK_MAX_LEN: usize = 8 * 1024;

/// The first byte of a sealed ack (format 1). An envelope starts with its version byte (1), so
/// the two cannot be confused.
pub const SEALED_ACK_TAG: u8 = 0xAC;

/// What the oracle signs for a batch of acks: the Merkle root over their canonical bytes
/// ([`crate::merkle::ACKS`]), in batch order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AckRoot {
    /// When the oracle signed it.
    pub issued_ms: UnixMs,
    /// Acks under the root, 1 to [`ACK_BATCH_MAX`].
    pub leaves: u32,
    /// The Merkle root.
    pub root: ByteArray<32>,
}

impl Message for AckRoot {
    const KIND: Kind = Kind::Ack;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.leaves == 0 || self.leaves > ACK_BATCH_MAX {
            return Err(invalid(
                "leaves",
                "must be 1 to 2^20",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

/// Signs a batch of acks with one signature: returns each ack sealed, in the order given.
///
/// Layout: `0xAC | root envelope length (u16 LE) | root envelope | index (u32 LE) | path
/// length (u8) | path (32 bytes each, bottom up) | ack (canonical bytes, to the end)`.
///
/// # Panics
/// If `acks` holds more than [`ACK_BATCH_MAX`] acks, or an ack breaks [`Ack::check`] (the
/// caller builds them; this is a programming error, not input).
pub fn seal_acks(key: &NodeKey, issued_ms: UnixMs, acks: &[Ack]) -> Vec<Vec<u8>> {
    if acks.is_empty() {
        return Vec::new();
    }
    assert!(
        acks.len() <= ACK_BATCH_MAX as usize,
        "too many acks in one batch"
    );
    let bodies: Vec<Vec<u8>> = acks
        .iter()
        .map(|a| {
            a.check().expect("acks are built valid");
            encode_payload(a)
        })
        .collect();
    let tree = merkle::ACKS.tree(bodies.iter().map(|b| merkle::ACKS.leaf_hash(b)).collect());
    let root = Envelope::sign(
        key,
        &AckRoot {
            issued_ms,
            leaves: u32::try_from(acks.len()).expect("at most ACK_BATCH_MAX"),
            root: ByteArray(tree.root()),
        },
    )
    .to_bytes();
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let path = tree.proof(i).expect("index in range");
            let mut out =
                Vec::with_capacity(1 + 2 + root.len() + 4 + 1 + 32 * path.len() + body.len());
            out.push(SEALED_ACK_TAG);
            let root_len = u16::try_from(root.len()).expect("a root envelope is small");
            out.extend_from_slice(&root_len.to_le_bytes());
            out.extend_from_slice(&root);
            let index = u32::try_from(i).expect("at most ACK_BATCH_MAX");
            out.extend_from_slice(&index.to_le_bytes());
            out.push(u8::try_from(path.len()).expect("at most 20 levels"));
            for h in &path {
                out.extend_from_slice(h);
            }
            out.extend_from_slice(body);
            out
        })
        .collect()
}

/// A sealed ack, opened: who signed the root, the root, and the ack.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenedAck {
    /// The root's signer (the caller checks it is the oracle it trusts).
    pub signer: NodeId,
    /// The signed root.
    pub root: AckRoot,
    /// The ack, proven to sit under the root.
    pub ack: Ack,
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], EnvelopeError> {
    if bytes.len() < n {
        return Err(EnvelopeError::Truncated);
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// A sealed ack's parts, framing checked, nothing verified yet.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedAckRef<'a> {
    /// The root envelope's bytes.
    pub root: &'a [u8],
    /// The ack's index among the root's leaves.
    pub index: u32,
    /// The path to the root, bottom up.
    pub path: Vec<[u8; 32]>,
    /// The ack's bytes.
    pub ack: &'a [u8],
}

impl<'a> SealedAckRef<'a> {
    /// Size limit and framing only (see [`open_sealed_ack`] for the checks that matter).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        if bytes.is_empty() {
            return Err(EnvelopeError::Empty);
        }
        if bytes.len() > SEALED_ACK_MAX_LEN {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: SEALED_ACK_MAX_LEN,
            });
        }
        let mut rest = bytes;
        if take(&mut rest, 1)?[0] != SEALED_ACK_TAG {
            return Err(invalid("tag", "not a sealed ack", Reason::Malformed));
        }
        let root_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes"));
        let root = take(&mut rest, usize::from(root_len))?;
        let index = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
        let path_len = usize::from(take(&mut rest, 1)?[0]);
        if path_len > 32 {
            return Err(invalid("path", "longer than 32 hashes", Reason::Malformed));
        }
        let path = take(&mut rest, 32 * path_len)?
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        Ok(Self {
            root,
            index,
            path,
            ack: rest,
        })
    }
}

/// Opens a sealed ack: size limit, framing, the root envelope's strict signature over its raw
/// bytes, the ack's path to the root over its raw bytes, and only then the ack's canonical
/// decode and structural checks.
pub fn open_sealed_ack(bytes: &[u8]) -> Result<OpenedAck, EnvelopeError> {
    let sealed = SealedAckRef::parse(bytes)?;
    let opened = envelope::open::<AckRoot>(sealed.root)?;
    let root = opened.msg;
    let leaf = merkle::ACKS.leaf_hash(sealed.ack);
    if !merkle::ACKS.verify(
        &leaf,
        sealed.index as usize,
        root.leaves as usize,
        &sealed.path,
        &root.root.0,
    ) {
        return Err(invalid(
            "path",
            "the ack is not under the signed root",
            Reason::BadSignature,
        ));
    }
    let ack: Ack = decode_canonical(sealed.ack)?;
    ack.check()?;
    Ok(OpenedAck {
        signer: opened.signer,
        root,
        ack,
    })
}
