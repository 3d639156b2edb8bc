//! The subscriber's key: an ed25519 key like a node's, named by its PeerId string.

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{USAGE_REQUEST_MAX, UsageReceipt};
use wisp_protocol::{EnvelopeError, NodeId, NodeKey, SubscriberId};

/// A subscriber's secret signing key (zeroized on drop, never printed).
///
/// It is a [`NodeKey`] in a type of its own, so that code cannot sign a receipt with a
/// hotspot's key by mistake. The key is also the client's libp2p identity when it talks to a
/// hotspot ([`NodeKey::to_libp2p_keypair`] through [`SubscriberKey::node_key`]).
#[derive(Clone, Debug)]
pub struct SubscriberKey(NodeKey);

/// Why a receipt was not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The receipt names another subscriber than this key.
    #[error("the receipt names subscriber {named}, not this key ({key})")]
    NotOurs {
        /// The subscriber the receipt names.
        named: SubscriberId,
        /// This key's id.
        key: SubscriberId,
    },
    /// The receipt breaks a rule of §5.10 (roles, sequence, byte or time bounds).
    #[error("the receipt is not valid: {0}")]
    Invalid(EnvelopeError),
}

impl SubscriberKey {
    /// The key for a 32-byte secret seed. The caller draws the seed from a CSPRNG (the CLI from
    /// the operating system; a browser from `crypto.getRandomValues`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(NodeKey::from_seed(seed))
    }

    /// The subscriber's public identity.
    pub fn id(&self) -> SubscriberId {
        SubscriberId::of(&self.0)
    }

    /// The public key as an envelope signer id.
    pub fn node_id(&self) -> NodeId {
        self.0.id()
    }

    /// The PeerId string of the key, which the oracle's API and hotspots name it by.
    pub fn peer_id(&self) -> String {
        self.id().to_string()
    }

    /// The underlying key (for its libp2p identity, or a key file).
    pub fn node_key(&self) -> &NodeKey {
        &self.0
    }

    /// Signs `receipt` after checking it as the hotspot will before co-signing (the roles and
    /// the field bounds of §5.10): the envelope bytes to send on the usage protocol, not yet
    /// co-signed.
    pub fn sign_receipt(&self, receipt: &UsageReceipt) -> Result<Vec<u8>, SignError> {
        if receipt.subscriber != self.id() {
            return Err(SignError::NotOurs {
                named: receipt.subscriber,
                key: self.id(),
            });
        }
        receipt
            .check_roles(&self.node_id(), &[])
            .and_then(|()| receipt.check_fields())
            .map_err(SignError::Invalid)?;
        let bytes = Envelope::sign(&self.0, receipt).to_bytes();
        // At most 236 bytes: every integer at its largest, the start time stated (§5.10 gives
        // 332 with the co-signature's 96).
        debug_assert!(bytes.len() <= USAGE_REQUEST_MAX, "{} bytes", bytes.len());
        Ok(bytes)
    }
}

impl From<NodeKey> for SubscriberKey {
    fn from(k: NodeKey) -> Self {
        Self(k)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use wisp_protocol::bytes::ByteArray;

    use super::*;

    fn receipt(sub: SubscriberId, hotspot: NodeId) -> UsageReceipt {
        UsageReceipt {
            session: ByteArray([7; 16]),
            hotspot,
            subscriber: sub,
            epoch: 3,
            seq: 1,
            bytes_down: 10,
            bytes_up: 5,
            signed_ms: 2_000,
            start_ms: Some(1_000),
        }
    }

    #[test]
    fn signs_only_valid_receipts_of_its_own() {
        let key = SubscriberKey::from_seed(&[1; 32]);
        let hot = NodeKey::from_seed(&[2; 32]).id();
        let other = SubscriberKey::from_seed(&[3; 32]);
        assert_eq!(key.peer_id(), key.node_id().to_string());
        assert!(key.peer_id().starts_with("12D3KooW"), "{}", key.peer_id());

        let ok = key.sign_receipt(&receipt(key.id(), hot)).unwrap();
        let opened = UsageReceipt::open_for_cosigning(&ok).unwrap();
        assert_eq!(opened.signer, key.node_id());

        let e = key.sign_receipt(&receipt(other.id(), hot)).unwrap_err();
        assert!(matches!(e, SignError::NotOurs { .. }), "{e}");
        let e = key
            .sign_receipt(&receipt(key.id(), key.node_id()))
            .unwrap_err();
        assert!(matches!(e, SignError::Invalid(_)), "{e}");
        let mut r = receipt(key.id(), hot);
        r.seq = 0;
        assert!(matches!(key.sign_receipt(&r), Err(SignError::Invalid(_))));
    }
}
