//! Batching verdicts into signed acks.
//!
//! One ed25519 signature per ack, up to [`ACK_MAX_ENTRIES`] verdicts each: at tens of thousands
//! of proofs per second, signing one ack per proof would cost as much as verifying the proofs.

use std::collections::BTreeMap;

use wisp_protocol::envelope::{Envelope, ProofId};
use wisp_protocol::msg::{ACK_MAX_ENTRIES, Ack, AckEntry, Verdict};
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
    /// batch replaces nothing: the first one stands (verdicts are final).
    pub fn push(&mut self, node: NodeId, proof_id: ProofId, verdict: Verdict) {
        let entries = self.pending.entry(node).or_default();
        if entries.iter().all(|e| e.proof_id != proof_id) {
            entries.push(AckEntry { proof_id, verdict });
            self.len += 1;
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

    /// Signs everything queued: per node, acks of at most [`ACK_MAX_ENTRIES`] verdicts, in
    /// queue order. Returns `(node, envelope bytes)` pairs, nodes in id order.
    pub fn flush(&mut self, oracle: &NodeKey, now_ms: u64) -> Vec<(NodeId, Vec<u8>)> {
        let mut out = Vec::new();
        for (node, entries) in std::mem::take(&mut self.pending) {
            for chunk in entries.chunks(ACK_MAX_ENTRIES) {
                let ack = Ack {
                    node,
                    issued_ms: now_ms,
                    entries: chunk.to_vec(),
                };
                out.push((node, Envelope::sign(oracle, &ack).to_bytes()));
            }
        }
        self.len = 0;
        out
    }

    /// [`AckBatcher::flush`], signing on two threads when there are many acks (at ingest rates
    /// most nodes have one proof per batch, so there is about one signature per proof).
    pub fn flush_parallel(&mut self, oracle: &NodeKey, now_ms: u64) -> Vec<(NodeId, Vec<u8>)> {
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
        let sign = |a: &[Ack]| -> Vec<(NodeId, Vec<u8>)> {
            a.iter()
                .map(|ack| (ack.node, Envelope::sign(oracle, ack).to_bytes()))
                .collect()
        };
        if acks.len() < 64 {
            return sign(&acks);
        }
        let (a, b) = acks.split_at(acks.len() / 2);
        std::thread::scope(|s| {
            let h = s.spawn(|| sign(b));
            let mut out = sign(a);
            out.extend(h.join().unwrap_or_else(|_| sign(b)));
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::Reason;
    use wisp_protocol::envelope;

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
        assert_eq!(batcher.len(), 301);
        let acks = batcher.flush(&oracle, 99);
        assert!(batcher.is_empty());
        let mut sizes = Vec::new();
        for (node, bytes) in &acks {
            let opened = envelope::open::<Ack>(bytes).unwrap();
            assert_eq!(opened.signer, oracle.id());
            assert_eq!(opened.msg.node, *node);
            sizes.push((*node == a, opened.msg.entries.len()));
            if *node == b {
                // The first verdict stands.
                assert_eq!(
                    opened.msg.entries[0].verdict,
                    Verdict::Rejected(Reason::RssiTooStrong)
                );
            }
        }
        sizes.sort();
        assert_eq!(
            sizes,
            vec![(false, 1), (true, 44), (true, 128), (true, 128)]
        );
    }

    #[test]
    fn parallel_flush_signs_the_same_acks() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let fill = |b: &mut AckBatcher| {
            for n in 0..200u8 {
                let node = NodeKey::from_seed(&[n; 32]).id();
                b.push(node, ProofId::of(&[n]), Verdict::Accepted);
            }
        };
        let (mut a, mut b) = (AckBatcher::new(), AckBatcher::new());
        fill(&mut a);
        fill(&mut b);
        assert_eq!(a.flush(&oracle, 5), b.flush_parallel(&oracle, 5));
    }
}
