//! Merkle trees: the reward manifest's and the one an oracle signs over a batch of acks.
//!
//! Leaves are `BLAKE3-derive-key(<leaf context>, bytes)`; an inner node is
//! `BLAKE3-derive-key(<node context>, left || right)`. Distinct contexts for leaves and nodes
//! stop a node hash from being passed off as a leaf, and each tree ([`REWARDS`], [`ACKS`]) has
//! its own pair, so a proof from one never checks in the other. An odd node at the end of a
//! level is promoted unchanged (not paired with itself, which would let two different leaf
//! lists share a root). The root of zero leaves is 32 zero bytes.
//!
//! The free functions ([`leaf_hash`], [`root`], [`proof`], [`verify`]) are the reward tree's.

use alloc::vec::Vec;

/// The hashing contexts of one kind of tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    leaf: &'static str,
    node: &'static str,
}

/// The reward manifest's tree (leaves: canonical `RewardEntry` bytes).
pub const REWARDS: Domain = Domain {
    leaf: "wisp/v1 reward leaf",
    node: "wisp/v1 reward node",
};

/// The tree an oracle signs over one batch of acks (leaves: canonical `Ack` bytes).
pub const ACKS: Domain = Domain {
    leaf: "wisp/v1 ack leaf",
    node: "wisp/v1 ack node",
};

impl Domain {
    /// A leaf hash over an entry's canonical bytes.
    pub fn leaf_hash(&self, entry_bytes: &[u8]) -> [u8; 32] {
        *blake3::Hasher::new_derive_key(self.leaf)
            .update(entry_bytes)
            .finalize()
            .as_bytes()
    }

    fn node_hash(&self, left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        *blake3::Hasher::new_derive_key(self.node)
            .update(left)
            .update(right)
            .finalize()
            .as_bytes()
    }

    fn next_level(&self, level: &[[u8; 32]]) -> Vec<[u8; 32]> {
        level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => self.node_hash(l, r),
                [single] => *single,
                _ => unreachable!("chunks(2) yields 1 or 2"),
            })
            .collect()
    }

    /// Every level of the tree over `leaves`, built once, so that each leaf's proof is then a
    /// walk up (a batch of `n` proofs costs `O(n)` hashes, not `O(n²)`).
    pub fn tree(&self, leaves: Vec<[u8; 32]>) -> Tree {
        let mut levels = alloc::vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let next = self.next_level(levels.last().expect("not empty"));
            levels.push(next);
        }
        Tree { levels }
    }

    /// Checks that `leaf` sits at `index` of a tree of `count` leaves with root `root`.
    ///
    /// The root does not commit to `count` by itself; the signed message carries it, so take
    /// `count` from there.
    pub fn verify(
        &self,
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
                    self.node_hash(&acc, s)
                } else {
                    self.node_hash(s, &acc)
                };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        siblings.next().is_none() && acc == *root
    }
}

/// A built tree: its levels, leaves first.
#[derive(Clone, Debug)]
pub struct Tree {
    levels: Vec<Vec<[u8; 32]>>,
}

impl Tree {
    /// Leaves in the tree.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root (32 zero bytes for no leaves).
    pub fn root(&self) -> [u8; 32] {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) if !self.is_empty() => *r,
            _ => [0u8; 32],
        }
    }

    /// The inclusion proof of leaf `index`: sibling hashes from the bottom up, skipping levels
    /// where the node had no sibling (it was promoted). `None` if `index` is out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.len() {
            return None;
        }
        let mut out = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(s) = level.get(i ^ 1) {
                out.push(*s);
            }
            i /= 2;
        }
        Some(out)
    }
}

/// A leaf hash of the reward tree.
pub fn leaf_hash(entry_bytes: &[u8]) -> [u8; 32] {
    REWARDS.leaf_hash(entry_bytes)
}

/// The reward tree's root over `leaves` (in order).
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    REWARDS.tree(leaves.to_vec()).root()
}

/// The reward tree's inclusion proof of leaf `index`; `None` if `index` is out of range.
pub fn proof(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    REWARDS.tree(leaves.to_vec()).proof(index)
}

/// Checks a reward-tree inclusion proof (see [`Domain::verify`]).
pub fn verify(
    leaf: &[u8; 32],
    index: usize,
    count: usize,
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    REWARDS.verify(leaf, index, count, proof, root)
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
        assert_eq!(root(&l[..2]), REWARDS.node_hash(&l[0], &l[1]));
        // Three leaves: the third is promoted, then paired with the first pair's node.
        assert_eq!(
            root(&l),
            REWARDS.node_hash(&REWARDS.node_hash(&l[0], &l[1]), &l[2])
        );
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
        assert_ne!(leaf_hash(&both), REWARDS.node_hash(&l[0], &l[1]));
    }

    #[test]
    fn the_two_trees_do_not_share_proofs() {
        let l = leaves(5);
        let a = ACKS.tree(l.clone());
        let r = REWARDS.tree(l.clone());
        assert_ne!(a.root(), r.root());
        for (i, leaf) in l.iter().enumerate() {
            let p = a.proof(i).unwrap();
            assert!(ACKS.verify(leaf, i, 5, &p, &a.root()));
            assert!(!REWARDS.verify(leaf, i, 5, &p, &a.root()));
            assert_eq!(r.proof(i).unwrap().len(), p.len());
        }
        assert_eq!(ACKS.tree(Vec::new()).root(), [0; 32]);
        assert!(ACKS.tree(Vec::new()).proof(0).is_none());
    }

    proptest::proptest! {
        /// For any tree size and any leaf, the leaf's proof verifies against the root, and the
        /// same proof with one bit of one sibling flipped, or for a leaf with one bit flipped,
        /// does not.
        #[test]
        fn every_leaf_proves_and_a_tampered_proof_does_not(
            n in 1usize..300,
            pick in proptest::prelude::any::<usize>(),
            bit in 0usize..256,
            salt in proptest::prelude::any::<u64>(),
        ) {
            let l: Vec<[u8; 32]> = (0..n)
                .map(|i| leaf_hash(&[salt.to_le_bytes(), (i as u64).to_le_bytes()].concat()))
                .collect();
            let tree = REWARDS.tree(l.clone());
            let root = tree.root();
            for (i, leaf) in l.iter().enumerate() {
                let p = tree.proof(i).unwrap();
                proptest::prop_assert!(verify(leaf, i, n, &p, &root), "n={} i={}", n, i);
            }
            let i = pick % n;
            let p = tree.proof(i).unwrap();
            let mut leaf = l[i];
            leaf[bit / 8] ^= 1 << (bit % 8);
            proptest::prop_assert!(!verify(&leaf, i, n, &p, &root));
            if !p.is_empty() {
                let mut bent = p.clone();
                let k = pick / n % bent.len();
                bent[k][bit / 8] ^= 1 << (bit % 8);
                proptest::prop_assert!(!verify(&l[i], i, n, &bent, &root));
            }
        }
    }
}
