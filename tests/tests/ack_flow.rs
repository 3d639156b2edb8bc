//! The oracle's batched acks are exactly what the agent's pinned-key check accepts, and
//! nothing another key signs is.

use wisp_agent::trust::{OracleTrust, TrustError};
use wisp_oracle::acks::AckBatcher;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Heartbeat, Verdict, Versions};
use wisp_protocol::{NodeKey, Reason};

#[test]
fn agent_accepts_the_oracles_acks_for_its_own_proofs_only() {
    let oracle = NodeKey::from_seed(&[10; 32]);
    let node = NodeKey::from_seed(&[11; 32]);
    let neighbour = NodeKey::from_seed(&[12; 32]);
    let trust = OracleTrust::new(oracle.id(), node.id());

    let proofs: Vec<Envelope> = (0..200)
        .map(|seq| {
            Envelope::sign(
                &node,
                &Heartbeat {
                    epoch: 1,
                    seq,
                    uptime_s: seq * 300,
                    sent_ms: 1_000 + seq,
                    fix: None,
                    cell: None,
                    versions: Versions::new("0.1.0", "sim"),
                    peers: 0,
                },
            )
        })
        .collect();
    let mut batcher = AckBatcher::new();
    for (i, p) in proofs.iter().enumerate() {
        let verdict = if i % 50 == 0 {
            Verdict::Rejected(Reason::HeartbeatTooFrequent)
        } else {
            Verdict::Accepted
        };
        batcher.push(node.id(), p.proof_id(), verdict);
    }
    batcher.push(neighbour.id(), proofs[0].proof_id(), Verdict::Accepted);

    let mut acked = Vec::new();
    for (addressee, bytes) in batcher.flush(&oracle, 5_000) {
        match trust.accept_ack(&bytes) {
            Ok(ack) => {
                assert_eq!(addressee, node.id());
                acked.extend(ack.entries);
            }
            Err(TrustError::NotForMe { addressed }) => assert_eq!(addressed, neighbour.id()),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(acked.len(), 200);
    for (p, e) in proofs.iter().zip(&acked) {
        assert_eq!(e.proof_id, p.proof_id());
    }
    assert_eq!(
        acked
            .iter()
            .filter(|e| e.verdict != Verdict::Accepted)
            .count(),
        4
    );

    // The same acks signed by anyone else are refused.
    let mut forged = AckBatcher::new();
    forged.push(node.id(), proofs[1].proof_id(), Verdict::Accepted);
    for (_, bytes) in forged.flush(&neighbour, 5_000) {
        assert!(matches!(
            trust.accept_ack(&bytes),
            Err(TrustError::NotOracle { .. })
        ));
    }
}
