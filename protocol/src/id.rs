//! Node identity: one ed25519 key per node, shown everywhere as its libp2p PeerId.
//!
//! The node key is the same `ed25519-dalek` 3 key type libp2p-identity 0.3 uses, so the agent's
//! swarm identity and the key that signs its proofs are one key, and a monitor that sees a peer
//! id on the network can check that node's proofs without another lookup.

use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bytes::ByteArray;

/// The prefix of a PeerId's bytes for an ed25519 key: identity multihash (code 0x00, length 36)
/// of the protobuf `PublicKey { Type = Ed25519 (1), Data = 32 bytes }` (fields 0x08 and 0x12).
const PEER_ID_ED25519_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A node's public identity: its 32-byte ed25519 public key.
///
/// Displayed and parsed as the libp2p PeerId string (`12D3KooW…`); on the wire it is the raw 32
/// bytes. Ordering is byte order, which the reward manifest and the measurer assignment use as a
/// tie-break, so it is stable across implementations.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

/// Errors from parsing or validating a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is not a valid libp2p PeerId.
    #[error("not a peer id: {0}")]
    PeerId(String),
    /// The PeerId is valid but is not an inline ed25519 key (wisp nodes use ed25519 only).
    #[error("peer id is not an ed25519 key")]
    NotEd25519,
    /// The 32 bytes are not a point on the curve, or not in canonical form.
    #[error("invalid ed25519 public key")]
    InvalidKey,
}

impl NodeId {
    /// The raw public key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The dalek verifying key, requiring canonical encoding: decompressing and re-compressing
    /// gives the same bytes, so one key has one id.
    pub fn verifying_key(&self) -> Result<VerifyingKey, IdError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| IdError::InvalidKey)?;
        if vk.to_edwards().compress().to_bytes() != self.0 {
            return Err(IdError::InvalidKey);
        }
        Ok(vk)
    }

    /// The libp2p peer id bytes (identity multihash of the protobuf-encoded public key).
    pub fn peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        out[..6].copy_from_slice(&PEER_ID_ED25519_PREFIX);
        out[6..].copy_from_slice(&self.0);
        out
    }

    /// The libp2p [`PeerId`](libp2p_identity::PeerId) of this node.
    pub fn to_peer_id(&self) -> libp2p_identity::PeerId {
        // The bytes are a well-formed identity multihash by construction.
        libp2p_identity::PeerId::from_bytes(&self.peer_id_bytes())
            .unwrap_or_else(|_| unreachable!("identity multihash of 36 bytes is always valid"))
    }

    /// The node id of a libp2p peer id, if it is an inline ed25519 key.
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Result<Self, IdError> {
        let bytes = peer.to_bytes();
        if bytes.len() != 38 || bytes[..6] != PEER_ID_ED25519_PREFIX {
            return Err(IdError::NotEd25519);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        Ok(Self(key))
    }

    /// A short form for logs: the last 8 characters of the peer id string.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s[s.len().saturating_sub(8)..].to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_peer_id().to_base58())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let peer =
            libp2p_identity::PeerId::from_str(s).map_err(|e| IdError::PeerId(e.to_string()))?;
        Self::from_peer_id(&peer)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            ByteArray(self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(Self(ByteArray::<32>::deserialize(d)?.0))
        }
    }
}

/// A subscriber's public identity: an ed25519 key like a node's, in its own type so that code
/// cannot pass a subscriber where a hotspot is meant (the two roles sign the same usage receipt,
/// [`crate::msg::UsageReceipt`], and must never be confused).
///
/// A subscriber signs with a [`NodeKey`] (its client's key, which is also its libp2p identity
/// when it talks to a hotspot), so it is displayed as the PeerId string of that key. On the
/// wire it is the raw 32 bytes, exactly as a [`NodeId`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriberId(pub NodeId);

impl SubscriberId {
    /// The subscriber whose client holds `key`.
    pub fn of(key: &NodeKey) -> Self {
        Self(key.id())
    }

    /// The key as an envelope signer id (envelopes name every signer as a [`NodeId`]).
    pub const fn key(&self) -> &NodeId {
        &self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubscriberId({})", self.0)
    }
}

impl FromStr for SubscriberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A node's (or the oracle's) secret signing key. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A new key from the caller's cryptographic RNG (the shells pass the OS RNG, tests and the
    /// simulator a seeded one).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The key for a 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed. Handle with care: this is the whole secret.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The public identity.
    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// Signs raw bytes. Protocol messages are signed through [`crate::envelope`], which adds the
    /// domain tag; this is for callers that build their own tagged message.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// The same key as a libp2p identity keypair, for the swarm.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let mut seed = self.0.to_bytes();
        let secret = libp2p_identity::ed25519::SecretKey::try_from_bytes(&mut seed)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid ed25519 secret"));
        libp2p_identity::ed25519::Keypair::from(secret).into()
    }

    /// The dalek signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl From<SigningKey> for NodeKey {
    fn from(k: SigningKey) -> Self {
        Self(k)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret material: only the public id.
        write!(f, "NodeKey({})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> NodeKey {
        NodeKey::from_seed(&[n; 32])
    }

    #[test]
    fn display_matches_libp2p_peer_id() {
        let k = key(1);
        let kp = k.to_libp2p_keypair();
        let expected = kp.public().to_peer_id();
        assert_eq!(k.id().to_string(), expected.to_base58());
        assert!(k.id().to_string().starts_with("12D3KooW"));
        assert_eq!(k.id().to_peer_id(), expected);
    }

    #[test]
    fn parse_round_trip() {
        let id = key(2).id();
        let s = id.to_string();
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert!(matches!(
            "not-a-peer".parse::<NodeId>(),
            Err(IdError::PeerId(_))
        ));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1: secret 9d61…7f60, public d75a…511a.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let k = NodeKey::from_seed(&seed);
        assert_eq!(
            hex::encode(k.id().0),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = k.sign_raw(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn non_canonical_key_bytes_rejected() {
        // y = p (2^255 - 19) encodes the same point as y = 0 but is not canonical.
        let mut y_eq_p = [0xffu8; 32];
        y_eq_p[0] = 0xed;
        y_eq_p[31] = 0x7f;
        assert_eq!(
            NodeId(y_eq_p).verifying_key().unwrap_err(),
            IdError::InvalidKey
        );
        assert!(key(3).id().verifying_key().is_ok());
    }

    #[test]
    fn debug_never_shows_secret() {
        let k = key(9);
        let dbg = alloc::format!("{k:?}");
        assert!(!dbg.contains(&hex::encode([9u8; 32])));
        assert!(dbg.contains(&k.id().to_string()));
    }

    #[test]
    fn other_key_types_are_not_node_ids() {
        // A SHA-256 multihash peer id (what RSA keys use) holds no inline ed25519 key.
        let mut mh = alloc::vec![0x12, 0x20];
        mh.extend_from_slice(&[7u8; 32]);
        let peer = libp2p_identity::PeerId::from_bytes(&mh).unwrap();
        assert_eq!(
            NodeId::from_peer_id(&peer).unwrap_err(),
            IdError::NotEd25519
        );
    }
}
