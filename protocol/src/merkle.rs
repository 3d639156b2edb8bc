//! The reward manifest's Merkle tree.
//!
//! Leaves are `BLAKE3-derive-key("wisp/v1 reward leaf", postcard(entry))`; an inner node is
//! `BLAKE3-derive-key("wisp/v1 reward node", left || right)`. Distinct contexts for leaves and
//! nodes stop a node hash from being passed off as a leaf. An odd node at the end of a level is
//! promoted unchanged (not paired with itself, which would let two different entry lists share
//! a root). The root of zero leaves is 32 zero bytes.

use alloc::vec::Vec;

const LEAF_CONTEXT: &str = "wisp/v1 reward leaf";
const NODE_CONTEXT: &str = "wisp/v1 reward node";

/// A leaf hash over an entry's canonical bytes.
pub fn leaf_hash(entry_bytes: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(LEAF_CONTEXT)
        .update(entry_bytes)
        .finalize()
        .as_bytes()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(NODE_CONTEXT)
        .update(left)
        .update(right)
        .finalize()
        .as_bytes()
}

fn next_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [single] => *single,
            _ => unreachable!("chunks(2) yields 1 or 2"),
        })
        .collect()
}

/// The root over `leaves` (in order).
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return [0u8; 32];
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// The inclusion proof of leaf `index`: sibling hashes from the bottom up, skipping levels where
/// the node had no sibling (it was promoted). `None` if `index` is out of range.
pub fn proof(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            out.push(level[sibling]);
        }
        level = next_level(&level);
        i /= 2;
    }
    Some(out)
}

/// Checks that `leaf` sits at `index` of a tree of `count` leaves with root `root`.
///
/// The root does not commit to `count` by itself; the signed manifest carries it
/// (`entry_count`), so take `count` from there.
pub fn verify(
    leaf: &[u8; 32],
    index: usize,
    count: usize,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= count {
        return false;
    }
    let mut acc = *leaf;
    let mut i = index;
    let mut width = count;
    let mut siblings = proof.iter();
    while width > 1 {
        let sibling = i ^ 1;
        if sibling < width {
            let Some(s) = siblings.next() else {
                return false;
            };
            acc = if i.is_multiple_of(2) {
                node_hash(&acc, s)
            } else {
                node_hash(s, &acc)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && acc == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_by_hand() {
        assert_eq!(root(&[]), [0; 32]);
        let l = leaves(3);
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node_hash(&l[0], &l[1]));
        // Three leaves: the third is promoted, then paired with the first pair's node.
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn every_proof_verifies_and_nothing_else_does() {
        for n in 1..=33 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i).unwrap();
                assert!(verify(&l[i], i, n, &p, &r), "n={n} i={i}");
                // Wrong index, wrong leaf, wrong count, truncated or extended proof: all fail.
                if n > 1 {
                    assert!(!verify(&l[i], (i + 1) % n, n, &p, &r), "n={n} i={i}");
                    assert!(!verify(&l[(i + 1) % n], i, n, &p, &r));
                }
                let mut longer = p.clone();
                longer.push([0; 32]);
                assert!(!verify(&l[i], i, n, &longer, &r));
                if let Some((_, shorter)) = p.split_last() {
                    assert!(!verify(&l[i], i, n, shorter, &r));
                }
            }
            assert!(proof(&l, n).is_none());
            assert!(!verify(&l[0], n, n, &[], &r));
        }
    }

    #[test]
    fn duplicating_the_last_leaf_changes_the_root() {
        let l = leaves(3);
        let mut dup = l.clone();
        dup.push(l[2]);
        assert_ne!(root(&l), root(&dup));
    }

    #[test]
    fn leaves_and_nodes_do_not_collide() {
        let l = leaves(2);
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&l[0]);
        both[32..].copy_from_slice(&l[1]);
        assert_ne!(leaf_hash(&both), node_hash(&l[0], &l[1]));
    }
}
