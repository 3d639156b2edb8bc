use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::bytes::ByteArray;
use crate::envelope::{EnvelopeError, Message};
use crate::id::NodeId;
use crate::kind::Kind;
use crate::reason::Reason;
use crate::units::{EpochNo, UnixMs};

use super::invalid;

/// Per-epoch parameters the oracle publishes with the seed, so that agents and the oracle apply
/// the same schedule without a config change on every hotspot.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EpochParams {
    /// Beacon slots per epoch; each node beacons once, in its slot.
    pub slot_count: u32,
    /// At most this many witnesses are paid per beacon (the first to arrive).
    pub witness_limit: u16,
    /// Measurers assigned per prover per epoch.
    pub measurers_per_prover: u8,
    /// Agents send a heartbeat every this many milliseconds.
    pub heartbeat_interval_ms: u32,
    /// After the epoch ends, proofs are still accepted for this long (late witnesses settle).
    pub settle_ms: u32,
}

impl Default for EpochParams {
    /// One-hour epochs: 60 one-minute beacon slots, 14 witnesses, 3 measurers, 5-minute
    /// heartbeats, 10-minute settle window.
    fn default() -> Self {
        Self {
            slot_count: 60,
            witness_limit: 14,
            measurers_per_prover: 3,
            heartbeat_interval_ms: 300_000,
            settle_ms: 600_000,
        }
    }
}

/// The oracle's clock: published every `interval_ms` on [`crate::topics::CLOCK`], retained.
///
/// Every timestamp in a proof is judged against the oracle's clock, so an agent whose own clock
/// is off sets its time by these (a live one, not the retained copy, which is up to one
/// interval old: the retained copy only says that the oracle publishes them).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OracleClock {
    /// The oracle's wall clock when it signed this.
    pub now_ms: UnixMs,
    /// The oracle publishes one every this many milliseconds (1,000 to 600,000).
    pub interval_ms: u32,
}

impl OracleClock {
    /// The shortest interval allowed.
    pub const MIN_INTERVAL_MS: u32 = 1_000;
    /// The longest interval allowed.
    pub const MAX_INTERVAL_MS: u32 = 600_000;
}

impl Message for OracleClock {
    const KIND: Kind = Kind::OracleClock;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if !(Self::MIN_INTERVAL_MS..=Self::MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(invalid(
                "interval_ms",
                "must be 1,000 to 600,000",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

/// The oracle's seed for one epoch. Signed by the oracle; agents pin the oracle's key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EpochSeed {
    /// The epoch number.
    pub epoch: EpochNo,
    /// When the epoch starts.
    pub start_ms: UnixMs,
    /// How long it lasts.
    pub duration_ms: u64,
    /// 32 random bytes, unknown before publication.
    pub seed: ByteArray<32>,
    /// The schedule parameters.
    pub params: EpochParams,
}

impl EpochSeed {
    /// When the epoch ends (exclusive).
    pub fn end_ms(&self) -> UnixMs {
        self.start_ms.saturating_add(self.duration_ms)
    }

    /// Whether `t` falls inside the epoch.
    pub fn contains(&self, t: UnixMs) -> bool {
        (self.start_ms..self.end_ms()).contains(&t)
    }
}

impl Message for EpochSeed {
    const KIND: Kind = Kind::EpochSeed;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.duration_ms == 0 || self.params.slot_count == 0 {
            return Err(invalid(
                "epoch_seed",
                "zero duration or slot count",
                Reason::FieldOutOfRange,
            ));
        }
        if u64::from(self.params.slot_count) > self.duration_ms {
            return Err(invalid(
                "epoch_seed",
                "slots shorter than 1 ms",
                Reason::FieldOutOfRange,
            ));
        }
        if self.start_ms.checked_add(self.duration_ms).is_none() {
            return Err(invalid(
                "epoch_seed",
                "end overflows",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

/// The most nodes one [`MeasurerSet`] part lists.
pub const MEASURER_SET_PART_MAX: usize = 4096;
/// The most parts an epoch's measurer set has (so at most 4,194,304 nodes).
pub const MEASURER_SET_PARTS_MAX: u16 = 1024;

/// One part of the nodes eligible to measure others in an epoch, as the oracle fixed them when
/// it opened the epoch. Provers and measurers apply the rendezvous assignment (§6.3 of
/// docs/PROTOCOL.md) over the union of all parts; the oracle checks receipts against the same
/// set. Part `i` lists the `i`-th run of the sorted set, so the concatenation of parts
/// `0..parts` is strictly ascending.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MeasurerSet {
    /// The epoch.
    pub epoch: EpochNo,
    /// This part's index, `< parts`.
    pub part: u16,
    /// How many parts the set has, 1 to [`MEASURER_SET_PARTS_MAX`].
    pub parts: u16,
    /// Strictly ascending node ids, at most [`MEASURER_SET_PART_MAX`].
    pub nodes: Vec<NodeId>,
}

impl MeasurerSet {
    /// Splits a sorted, duplicate-free set into its parts. `None` if the set needs more than
    /// [`MEASURER_SET_PARTS_MAX`] parts. An empty set is one empty part.
    pub fn split(epoch: EpochNo, sorted: &[NodeId]) -> Option<Vec<MeasurerSet>> {
        let chunks: Vec<&[NodeId]> = if sorted.is_empty() {
            alloc::vec![sorted]
        } else {
            sorted.chunks(MEASURER_SET_PART_MAX).collect()
        };
        let parts = u16::try_from(chunks.len())
            .ok()
            .filter(|p| *p <= MEASURER_SET_PARTS_MAX)?;
        Some(
            chunks
                .into_iter()
                .zip(0u16..)
                .map(|(c, part)| MeasurerSet {
                    epoch,
                    part,
                    parts,
                    nodes: c.to_vec(),
                })
                .collect(),
        )
    }
}

impl Message for MeasurerSet {
    const KIND: Kind = Kind::MeasurerSet;

    fn check(&self, _signer: &NodeId, _cosigners: &[NodeId]) -> Result<(), EnvelopeError> {
        if self.parts == 0 || self.parts > MEASURER_SET_PARTS_MAX || self.part >= self.parts {
            return Err(invalid(
                "measurer_set",
                "part outside 0..parts, or parts outside 1..=1024",
                Reason::FieldOutOfRange,
            ));
        }
        if self.nodes.len() > MEASURER_SET_PART_MAX {
            return Err(invalid(
                "measurer_set",
                "more than 4096 nodes in one part",
                Reason::FieldOutOfRange,
            ));
        }
        if self.nodes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "measurer_set",
                "nodes not strictly ascending",
                Reason::FieldOutOfRange,
            ));
        }
        Ok(())
    }
}

/// Collects an epoch's [`MeasurerSet`] parts, in any order and with repeats, into the whole
/// set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasurerSetAssembly {
    epoch: Option<EpochNo>,
    parts: Vec<Option<Vec<NodeId>>>,
}

/// Why a part does not fit the set being assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssemblyError {
    /// The part is for an older epoch than the one being assembled.
    OldEpoch,
    /// The part disagrees with parts already held (another count, other content, or its ends
    /// overlap a neighbour's).
    Inconsistent,
}

impl MeasurerSetAssembly {
    /// An empty assembly.
    pub fn new() -> Self {
        Self::default()
    }

    /// The epoch being assembled, if any part arrived.
    pub fn epoch(&self) -> Option<EpochNo> {
        self.epoch
    }

    /// Adds a checked part. A part of a newer epoch starts that epoch over. Returns whether the
    /// set is now complete.
    pub fn add(&mut self, part: MeasurerSet) -> Result<bool, AssemblyError> {
        match self.epoch {
            Some(e) if part.epoch < e => return Err(AssemblyError::OldEpoch),
            Some(e) if part.epoch == e => {
                if self.parts.len() != usize::from(part.parts) {
                    return Err(AssemblyError::Inconsistent);
                }
            }
            _ => {
                self.epoch = Some(part.epoch);
                self.parts = alloc::vec![None; usize::from(part.parts)];
            }
        }
        let i = usize::from(part.part);
        if let Some(held) = &self.parts[i] {
            return if *held == part.nodes {
                Ok(self.is_complete())
            } else {
                Err(AssemblyError::Inconsistent)
            };
        }
        let before = self.parts[..i].iter().rev().flatten().next();
        let after = self.parts[i + 1..].iter().flatten().next();
        let first = part.nodes.first();
        let last = part.nodes.last();
        let fits_before = match (before.and_then(|b| b.last()), first) {
            (Some(b), Some(f)) => b < f,
            _ => true,
        };
        let fits_after = match (last, after.and_then(|a| a.first())) {
            (Some(l), Some(a)) => l < a,
            _ => true,
        };
        if !fits_before || !fits_after {
            return Err(AssemblyError::Inconsistent);
        }
        self.parts[i] = Some(part.nodes);
        Ok(self.is_complete())
    }

    /// Whether every part arrived.
    pub fn is_complete(&self) -> bool {
        self.epoch.is_some() && self.parts.iter().all(Option::is_some)
    }

    /// The whole set, sorted, once complete.
    pub fn set(&self) -> Option<(EpochNo, Vec<NodeId>)> {
        if !self.is_complete() {
            return None;
        }
        let nodes = self.parts.iter().flatten().flatten().copied().collect();
        Some((self.epoch?, nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> NodeId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        NodeId(b)
    }

    #[test]
    fn split_and_assemble_in_any_order_give_the_set_back() {
        let all: Vec<NodeId> = (0..10_000).map(id).collect();
        let parts = MeasurerSet::split(7, &all).unwrap_or_else(|| unreachable!());
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.check(&id(0), &[]).is_ok()));
        let mut a = MeasurerSetAssembly::new();
        assert_eq!(a.add(parts[2].clone()), Ok(false));
        assert_eq!(a.add(parts[0].clone()), Ok(false));
        assert_eq!(
            a.add(parts[0].clone()),
            Ok(false),
            "a repeat changes nothing"
        );
        assert_eq!(a.set(), None);
        assert_eq!(a.add(parts[1].clone()), Ok(true));
        assert_eq!(a.set(), Some((7, all)));
        // An older epoch is refused; a newer one starts over.
        let old = MeasurerSet::split(6, &[id(1)]).unwrap_or_default();
        assert_eq!(a.add(old[0].clone()), Err(AssemblyError::OldEpoch));
        let new = MeasurerSet::split(8, &[id(1)]).unwrap_or_default();
        assert_eq!(a.add(new[0].clone()), Ok(true));
        assert_eq!(a.set(), Some((8, vec![id(1)])));
    }

    #[test]
    fn an_empty_set_is_one_empty_part() {
        let parts = MeasurerSet::split(1, &[]).unwrap_or_default();
        assert_eq!(parts.len(), 1);
        let mut a = MeasurerSetAssembly::new();
        assert_eq!(a.add(parts[0].clone()), Ok(true));
        assert_eq!(a.set(), Some((1, Vec::new())));
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        let all: Vec<NodeId> = (0..5000).map(id).collect();
        let parts = MeasurerSet::split(3, &all).unwrap_or_default();
        let mut a = MeasurerSetAssembly::new();
        a.add(parts[0].clone()).unwrap_or_default();
        // Another count for the same epoch.
        let mut other = parts[1].clone();
        other.parts = 3;
        assert_eq!(a.add(other), Err(AssemblyError::Inconsistent));
        // Part 1 overlapping part 0's range.
        let mut overlap = parts[1].clone();
        overlap.nodes.insert(0, id(10));
        assert_eq!(a.add(overlap), Err(AssemblyError::Inconsistent));
        // Other content for a part already held.
        let mut changed = parts[0].clone();
        changed.nodes.pop();
        assert_eq!(a.add(changed), Err(AssemblyError::Inconsistent));
        assert_eq!(a.add(parts[1].clone()), Ok(true));
    }

    #[test]
    fn check_refuses_unsorted_oversize_and_bad_part_numbers() {
        let ok = MeasurerSet {
            epoch: 1,
            part: 0,
            parts: 1,
            nodes: vec![id(1), id(2)],
        };
        assert!(ok.check(&id(0), &[]).is_ok());
        let mut m = ok.clone();
        m.nodes = vec![id(2), id(1)];
        assert!(m.check(&id(0), &[]).is_err());
        m.nodes = vec![id(1), id(1)];
        assert!(m.check(&id(0), &[]).is_err());
        m = ok.clone();
        m.part = 1;
        assert!(m.check(&id(0), &[]).is_err());
        m.parts = 0;
        m.part = 0;
        assert!(m.check(&id(0), &[]).is_err());
        m = ok;
        m.nodes = (0..=u32::try_from(MEASURER_SET_PART_MAX).unwrap_or(u32::MAX))
            .map(id)
            .collect();
        assert!(m.check(&id(0), &[]).is_err());
    }
}
