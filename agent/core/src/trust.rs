//! Oracle trust: the agent pins the oracle's public key in its configuration and acts only on
//! epoch seeds and acks that key signed. A forged ack must never delete a proof from the
//! outbox, and a forged seed must never move the beacon schedule.

use wisp_protocol::NodeId;
use wisp_protocol::envelope::{self, EnvelopeError};
use wisp_protocol::msg::{Ack, EpochSeed, OracleClock, open_sealed_ack};

/// Why an oracle message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The envelope did not open (size, framing, signature, canonical form, structure).
    #[error("invalid oracle message: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A valid signature, but not by the pinned oracle key.
    #[error("signed by {signer}, not by the pinned oracle {pinned}")]
    NotOracle {
        /// Who signed it.
        signer: NodeId,
        /// The key the agent trusts.
        pinned: NodeId,
    },
    /// An ack addressed to another node.
    #[error("ack addressed to {addressed}, not to this node")]
    NotForMe {
        /// The node the ack names.
        addressed: NodeId,
    },
}

/// The pinned oracle key and this node's id.
#[derive(Debug, Clone)]
pub struct OracleTrust {
    oracle: NodeId,
    me: NodeId,
}

impl OracleTrust {
    /// Trusts `oracle` on behalf of node `me`.
    pub fn new(oracle: NodeId, me: NodeId) -> Self {
        Self { oracle, me }
    }

    /// Requires `signer` to be the pinned oracle.
    pub fn check_signer(&self, signer: NodeId) -> Result<(), TrustError> {
        if signer != self.oracle {
            return Err(TrustError::NotOracle {
                signer,
                pinned: self.oracle,
            });
        }
        Ok(())
    }

    /// Opens a sealed ack: under a root the pinned oracle signed, and addressed to this node.
    pub fn accept_ack(&self, bytes: &[u8]) -> Result<Ack, TrustError> {
        let opened = open_sealed_ack(bytes)?;
        self.check_signer(opened.signer)?;
        if opened.ack.node != self.me {
            return Err(TrustError::NotForMe {
                addressed: opened.ack.node,
            });
        }
        Ok(opened.ack)
    }

    /// Opens the oracle's clock: oracle-signed.
    pub fn accept_clock(&self, bytes: &[u8]) -> Result<OracleClock, TrustError> {
        let opened = envelope::open::<OracleClock>(bytes)?;
        self.check_signer(opened.signer)?;
        Ok(opened.msg)
    }

    /// Opens an epoch seed: oracle-signed.
    pub fn accept_seed(&self, bytes: &[u8]) -> Result<EpochSeed, TrustError> {
        let opened = envelope::open::<EpochSeed>(bytes)?;
        self.check_signer(opened.signer)?;
        Ok(opened.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::msg::{AckEntry, EpochParams, Verdict, seal_acks};
    use wisp_protocol::{NodeKey, ProofId};

    fn ack_for(node: NodeId) -> Ack {
        Ack {
            node,
            issued_ms: 10,
            entries: vec![AckEntry {
                proof_id: ProofId::of(b"p"),
                verdict: Verdict::Accepted,
            }],
        }
    }

    #[test]
    fn only_the_pinned_oracle_is_believed() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let forger = NodeKey::from_seed(&[2; 32]);
        let me = NodeKey::from_seed(&[3; 32]).id();
        let trust = OracleTrust::new(oracle.id(), me);

        let seal = |k: &NodeKey, a: Ack| seal_acks(k, 10, &[a]).remove(0);
        let good = seal(&oracle, ack_for(me));
        assert_eq!(trust.accept_ack(&good).unwrap(), ack_for(me));

        let forged = seal(&forger, ack_for(me));
        assert!(matches!(
            trust.accept_ack(&forged),
            Err(TrustError::NotOracle { .. })
        ));

        let other = NodeKey::from_seed(&[4; 32]).id();
        let misaddressed = seal(&oracle, ack_for(other));
        assert_eq!(
            trust.accept_ack(&misaddressed),
            Err(TrustError::NotForMe { addressed: other })
        );

        let mut tampered = good.clone();
        let n = tampered.len();
        tampered[n - 3] ^= 1;
        assert!(matches!(
            trust.accept_ack(&tampered),
            Err(TrustError::Envelope(_))
        ));
    }

    #[test]
    fn forged_seeds_are_refused() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let forger = NodeKey::from_seed(&[2; 32]);
        let trust = OracleTrust::new(oracle.id(), NodeKey::from_seed(&[3; 32]).id());
        let seed = EpochSeed {
            epoch: 3,
            start_ms: 0,
            duration_ms: 60_000,
            seed: [7; 32].into(),
            params: EpochParams::default(),
        };
        assert_eq!(
            trust
                .accept_seed(&Envelope::sign(&oracle, &seed).to_bytes())
                .unwrap(),
            seed
        );
        assert!(matches!(
            trust.accept_seed(&Envelope::sign(&forger, &seed).to_bytes()),
            Err(TrustError::NotOracle { .. })
        ));
    }
}
