//! Batching verdicts into sealed acks.
//!
//! One ack per node and batch (up to [`ACK_MAX_ENTRIES`] verdicts each), and one ed25519
//! signature per batch over the Merkle root of its acks: at tens of thousands of proofs per
//! second, one signature per ack cost about as much as verifying the proofs.

use std::collections::BTreeMap;

use wisp_protocol::envelope::ProofId;
use wisp_protocol::msg::{ACK_BATCH_MAX, ACK_MAX_ENTRIES, Ack, AckEntry, Verdict, seal_acks};
use wisp_protocol::{NodeId, NodeKey};

/// Verdicts waiting to be signed, grouped by node. Bounded: the caller flushes when
/// [`AckBatcher::len`] reaches its limit or a timer fires.
#[derive(Debug, Default)]
pub struct AckBatcher {
    pending: BTreeMap<NodeId, Vec<AckEntry>>,
    len: usize,
}

impl AckBatcher {
    /// An empty batcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a verdict for `node`'s proof. A second verdict for the same proof id in the same
    /// batch replaces only a transient one (`rate_limited`, then the resend judged): a final
    /// verdict stands.
    pub fn push(&mut self, node: NodeId, proof_id: ProofId, verdict: Verdict) {
        let entries = self.pending.entry(node).or_default();
        match entries.iter_mut().find(|e| e.proof_id == proof_id) {
            None => {
                entries.push(AckEntry { proof_id, verdict });
                self.len += 1;
            }
            Some(e) if !e.verdict.is_final() => e.verdict = verdict,
            Some(_) => {}
        }
    }

    /// Verdicts queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Seals everything queued under one signature: per node, acks of at most
    /// [`ACK_MAX_ENTRIES`] verdicts, in queue order, under one signed root
    /// ([`seal_acks`]). Returns `(node, sealed ack)` pairs, nodes in id order.
    pub fn flush(&mut self, oracle: &NodeKey, now_ms: u64) -> Vec<(NodeId, Vec<u8>)> {
        let acks: Vec<Ack> = std::mem::take(&mut self.pending)
            .into_iter()
            .flat_map(|(node, entries)| {
                entries
                    .chunks(ACK_MAX_ENTRIES)
                    .map(|c| Ack {
                        node,
                        issued_ms: now_ms,
                        entries: c.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.len = 0;
        let mut out = Vec::with_capacity(acks.len());
        for chunk in acks.chunks(ACK_BATCH_MAX as usize) {
            let sealed = seal_acks(oracle, now_ms, chunk);
            out.extend(chunk.iter().map(|a| a.node).zip(sealed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::Reason;
    use wisp_protocol::msg::open_sealed_ack;

    #[test]
    fn batches_split_at_the_limit_and_verify() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let a = NodeKey::from_seed(&[2; 32]).id();
        let b = NodeKey::from_seed(&[3; 32]).id();
        let mut batcher = AckBatcher::new();
        for i in 0..300u32 {
            batcher.push(a, ProofId::of(&i.to_le_bytes()), Verdict::Accepted);
        }
        batcher.push(
            b,
            ProofId::of(b"x"),
            Verdict::Rejected(Reason::RssiTooStrong),
        );
        batcher.push(b, ProofId::of(b"x"), Verdict::Accepted);
        // A transient verdict gives way to the final one of a resend merged into the batch.
        let resent = ProofId::of(b"y");
        batcher.push(b, resent, Verdict::Rejected(Reason::RateLimited));
        batcher.push(b, resent, Verdict::Accepted);
        batcher.push(b, resent, Verdict::Rejected(Reason::RateLimited));
        assert_eq!(batcher.len(), 302);
        let acks = batcher.flush(&oracle, 99);
        assert!(batcher.is_empty());
        let mut sizes = Vec::new();
        for (node, bytes) in &acks {
            let opened = open_sealed_ack(bytes).unwrap();
            assert_eq!(opened.signer, oracle.id());
            assert_eq!(opened.root.leaves, 4);
            assert_eq!(opened.ack.node, *node);
            sizes.push((*node == a, opened.ack.entries.len()));
            if *node == b {
                // The first final verdict stands.
                assert_eq!(
                    opened.ack.entries[0].verdict,
                    Verdict::Rejected(Reason::RssiTooStrong)
                );
                assert_eq!(opened.ack.entries[1].verdict, Verdict::Accepted);
            }
        }
        sizes.sort();
        assert_eq!(
            sizes,
            vec![(false, 2), (true, 44), (true, 128), (true, 128)]
        );
    }
}
