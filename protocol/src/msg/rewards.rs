use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, Message, encode_payload};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::EpochNo;

use super::{OWNER_MAX, invalid};

/// The most entries in one manifest page.
pub const MANIFEST_PAGE_MAX: usize = 1024;

/// One node's reward for an epoch, with its breakdown by pool:
/// `amount = coverage + backhaul + uptime + usage`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RewardEntry {
    /// The node.
    pub node: NodeId,
    /// Its owner (payout) address at epoch close.
    pub owner: String,
    /// Total paid, in the token's smallest unit.
    pub amount: u64,
    /// From the coverage pool (beacons and witnesses).
    pub coverage: u64,
    /// From the backhaul pool (bandwidth receipts).
    pub backhaul: u64,
    /// From the uptime pool (heartbeats).
    pub uptime: u64,
    /// From the usage pool (usage receipts: the subscribers' data credits burned for traffic
    /// the node carried).
    pub usage: u64,
}

impl RewardEntry {
    /// The Merkle leaf of this entry: [`crate::merkle::leaf_hash`] of its canonical bytes.
    pub fn leaf(&self) -> [u8; 32] {
        crate::merkle::leaf_hash(&encode_payload(self))
    }
}

/// One page of an epoch's signed rewards. The root and totals are the same on every page, so a
/// node can check its own page alone, and anyone holding all pages can recompute the root.
/// Entries are sorted by node id across pages; page `p` holds entries from
/// `p × MANIFEST_PAGE_MAX`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RewardManifest {
    /// The epoch.
    pub epoch: EpochNo,
    /// The epoch's emission; the entries' amounts sum to exactly this (unless nobody earned).
    pub emission: u64,
    /// Entries in the whole manifest.
    pub entry_count: u32,
    /// Merkle root over all entries' leaves in order ([`crate::merkle`]).
    pub root: ByteArray<32>,
    /// This page's number, from 0.
    pub page: u32,
    /// How many pages.
    pub page_count: u32,
    /// This page's entries.
    pub entries: Vec<RewardEntry>,
}

impl Message for RewardManifest {
    const KIND: Kind = Kind::RewardManifest;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        // Pages are full except the last; an empty manifest is one empty page.
        let count = self.entry_count as usize;
        let pages = count.div_ceil(MANIFEST_PAGE_MAX).max(1);
        if self.page_count as usize != pages || self.page >= self.page_count {
            return Err(invalid(
                "page",
                "page or page_count inconsistent with entry_count",
                Reason::FieldOutOfRange,
            ));
        }
        let expected = count
            .saturating_sub(self.page as usize * MANIFEST_PAGE_MAX)
            .min(MANIFEST_PAGE_MAX);
        if self.entries.len() != expected {
            return Err(invalid(
                "entries",
                "page holds the wrong number of entries",
                Reason::FieldOutOfRange,
            ));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.owner.len() > OWNER_MAX {
                return Err(invalid("owner", "too long", Reason::FieldOutOfRange));
            }
            let sum = e
                .coverage
                .checked_add(e.backhaul)
                .and_then(|s| s.checked_add(e.uptime))
                .and_then(|s| s.checked_add(e.usage));
            if sum != Some(e.amount) {
                return Err(invalid(
                    "amount",
                    "is not the sum of its parts",
                    Reason::FieldOutOfRange,
                ));
            }
            if i > 0 && self.entries[i - 1].node >= e.node {
                return Err(invalid(
                    "entries",
                    "not sorted by node id",
                    Reason::FieldOutOfRange,
                ));
            }
        }
        Ok(())
    }
}
