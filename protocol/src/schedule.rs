//! Schedules derived from the epoch seed: beacon slots, beacon nonces and measurer assignment.
//!
//! All three are hashes of `(seed, ids)`, so nobody can predict them before the oracle publishes
//! the seed, and everybody (agent, oracle, simulator) computes the same answer. Each hash uses
//! its own BLAKE3 derive-key context, so the three never collide.

use alloc::vec::Vec;

use crate::id::NodeId;
use crate::msg::EpochSeed;

const SLOT_CONTEXT: &str = "wisp/v1 beacon slot";
const NONCE_CONTEXT: &str = "wisp/v1 beacon nonce";
const MEASURER_CONTEXT: &str = "wisp/v1 measurer rendezvous";

fn hash(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn u64_le(b: &[u8; 32]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_le_bytes(x)
}

/// The node's beacon slot in `0..slot_count`: the first 8 bytes (little-endian) of
/// `BLAKE3-derive-key("wisp/v1 beacon slot", seed || node)`, modulo `slot_count`.
/// (The modulo bias is below 2⁻⁴⁰ for any slot count under 2²⁴.)
pub fn beacon_slot(seed: &[u8; 32], node: &NodeId, slot_count: u32) -> u32 {
    let count = u64::from(slot_count.max(1));
    // The remainder is < slot_count, which is a u32.
    u32::try_from(u64_le(&hash(SLOT_CONTEXT, &[seed, node.as_bytes()])) % count)
        .unwrap_or_else(|_| unreachable!("remainder below a u32"))
}

/// The beacon nonce: the first 16 bytes of `BLAKE3-derive-key("wisp/v1 beacon nonce",
/// seed || node)`. It proves the beacon was made after the seed was published.
pub fn beacon_nonce(seed: &[u8; 32], node: &NodeId) -> [u8; 16] {
    let h = hash(NONCE_CONTEXT, &[seed, node.as_bytes()]);
    let mut n = [0u8; 16];
    n.copy_from_slice(&h[..16]);
    n
}

/// The time window `[start, end)` in Unix ms of `slot` in an epoch: the epoch is cut into
/// `slot_count` equal slots (integer division; the remainder at the end of the epoch is unused).
pub fn slot_window(epoch: &EpochSeed, slot: u32) -> (u64, u64) {
    let len = epoch.duration_ms / u64::from(epoch.params.slot_count.max(1));
    let start = epoch.start_ms + u64::from(slot) * len;
    (start, start + len)
}

/// When a node transmits its beacon, in ms after its slot starts: a quarter of a second in (a
/// quarter of the slot if that is shorter), so that small clock errors on either side keep the
/// beacon inside the slot. Every node uses the same offset, so a receiver knows when each
/// slot's beacons go on air without knowing who beacons in it.
pub fn beacon_tx_offset_ms(slot_len_ms: u64) -> u64 {
    (slot_len_ms / 4).min(250)
}

/// The node's beacon window in this epoch.
pub fn beacon_window(epoch: &EpochSeed, node: &NodeId) -> (u64, u64) {
    slot_window(
        epoch,
        beacon_slot(&epoch.seed.0, node, epoch.params.slot_count),
    )
}

/// The rendezvous score of `candidate` measuring `prover`: the first 8 bytes (little-endian) of
/// `BLAKE3-derive-key("wisp/v1 measurer rendezvous", seed || prover || candidate)`.
pub fn measurer_score(seed: &[u8; 32], prover: &NodeId, candidate: &NodeId) -> u64 {
    u64_le(&hash(
        MEASURER_CONTEXT,
        &[seed, prover.as_bytes(), candidate.as_bytes()],
    ))
}

/// The `k` measurers assigned to `prover`: the eligible candidates (the prover itself excluded)
/// with the highest rendezvous scores, ties broken by the smaller node id. Highest-random-weight
/// hashing means adding or removing one candidate changes at most one assignment per prover, and
/// neither the prover nor a measurer can choose the outcome.
pub fn assign_measurers(
    seed: &[u8; 32],
    prover: &NodeId,
    eligible: &[NodeId],
    k: usize,
) -> Vec<NodeId> {
    let mut scored: Vec<(u64, NodeId)> = eligible
        .iter()
        .filter(|c| *c != prover)
        .map(|c| (measurer_score(seed, prover, c), *c))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Whether `measurer` is among the `k` assigned to `prover`.
pub fn is_assigned(
    seed: &[u8; 32],
    prover: &NodeId,
    measurer: &NodeId,
    eligible: &[NodeId],
    k: usize,
) -> bool {
    assign_measurers(seed, prover, eligible, k).contains(measurer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeKey;
    use crate::msg::{EpochParams, EpochSeed};

    fn ids(n: u8) -> Vec<NodeId> {
        (0..n).map(|i| NodeKey::from_seed(&[i; 32]).id()).collect()
    }

    #[test]
    fn slot_is_the_hash_modulo_the_count() {
        let seed = [7u8; 32];
        let node = ids(1)[0];
        let h = blake3::Hasher::new_derive_key(SLOT_CONTEXT)
            .update(&seed)
            .update(node.as_bytes())
            .finalize();
        let expected = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) % 60;
        assert_eq!(u64::from(beacon_slot(&seed, &node, 60)), expected);
        assert_eq!(
            beacon_slot(&seed, &node, 0),
            0,
            "a zero count is treated as one slot"
        );
    }

    #[test]
    fn slots_spread_evenly() {
        let seed = [3u8; 32];
        let mut counts = [0u32; 10];
        for id in ids(200) {
            counts[beacon_slot(&seed, &id, 10) as usize] += 1;
        }
        // 200 nodes over 10 slots: each slot gets some, none gets a third.
        assert!(counts.iter().all(|&c| (5..=60).contains(&c)), "{counts:?}");
    }

    #[test]
    fn nonce_depends_on_seed_and_node() {
        let [a, b] = [ids(2)[0], ids(2)[1]];
        assert_ne!(beacon_nonce(&[1; 32], &a), beacon_nonce(&[2; 32], &a));
        assert_ne!(beacon_nonce(&[1; 32], &a), beacon_nonce(&[1; 32], &b));
        assert_eq!(beacon_nonce(&[1; 32], &a), beacon_nonce(&[1; 32], &a));
    }

    #[test]
    fn windows_tile_the_epoch() {
        let e = EpochSeed {
            epoch: 4,
            start_ms: 1_000_000,
            duration_ms: 3_600_000,
            seed: [9u8; 32].into(),
            params: EpochParams {
                slot_count: 60,
                ..EpochParams::default()
            },
        };
        assert_eq!(slot_window(&e, 0), (1_000_000, 1_060_000));
        assert_eq!(slot_window(&e, 59), (1_000_000 + 59 * 60_000, 4_600_000));
        let (s, end) = beacon_window(&e, &ids(1)[0]);
        assert_eq!(end - s, 60_000);
        assert!(s >= e.start_ms && end <= e.start_ms + e.duration_ms);
    }

    #[test]
    fn rendezvous_excludes_prover_and_is_stable() {
        let all = ids(30);
        let seed = [5u8; 32];
        let prover = all[0];
        let chosen = assign_measurers(&seed, &prover, &all, 3);
        assert_eq!(chosen.len(), 3);
        assert!(!chosen.contains(&prover));
        // The chosen are exactly the top-3 scores.
        let mut scores: Vec<(u64, NodeId)> = all[1..]
            .iter()
            .map(|c| (measurer_score(&seed, &prover, c), *c))
            .collect();
        scores.sort_by_key(|s| std::cmp::Reverse(s.0));
        let top: Vec<NodeId> = scores.iter().take(3).map(|s| s.1).collect();
        assert_eq!(chosen, top);
        // Order of the candidate list does not matter.
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(assign_measurers(&seed, &prover, &rev, 3), chosen);
        // Removing a non-chosen candidate changes nothing; removing a chosen one shifts by one.
        let not_chosen = *all[1..].iter().find(|c| !chosen.contains(c)).unwrap();
        let fewer: Vec<NodeId> = all.iter().copied().filter(|c| *c != not_chosen).collect();
        assert_eq!(assign_measurers(&seed, &prover, &fewer, 3), chosen);
        let without_first: Vec<NodeId> = all.iter().copied().filter(|c| *c != chosen[0]).collect();
        let again = assign_measurers(&seed, &prover, &without_first, 3);
        assert_eq!(&again[..2], &chosen[1..]);
        assert!(is_assigned(&seed, &prover, &chosen[2], &all, 3));
        assert!(!is_assigned(&seed, &prover, &not_chosen, &all, 3));
        // Another seed gives another assignment.
        assert_ne!(assign_measurers(&[6u8; 32], &prover, &all, 3), chosen);
    }

    #[test]
    fn duplicates_in_the_candidate_list_count_once() {
        let all = ids(5);
        let mut dup = all.clone();
        dup.extend_from_slice(&all);
        assert_eq!(assign_measurers(&[1; 32], &all[0], &dup, 10).len(), 4);
    }
}
