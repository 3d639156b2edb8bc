//! Broker credentials a node derives from its own key.
//!
//! A node logs in to the network's MQTT broker with username = its peer id and password =
//! `wisp1.` followed by the hex of its ed25519 signature over
//! `"wisp/v1/mqtt-login\0" || oracle key || node key`. Anyone holding the node's public key
//! and the oracle's can check it, so the oracle's embedded broker needs no password list, and
//! a password for one network (oracle key) is worthless on another. The signature is
//! deterministic: the node computes the same password on every start, which an operator of an
//! external broker can put in a password file once (`wisp-agent credentials`).
//!
//! The password is a bearer secret like any password: on a network path it needs TLS
//! (`mqtts://`). It never expires; a node whose key is replaced gets a new peer id.

use alloc::string::String;
use core::fmt::Write as _;

use crate::id::{NodeId, NodeKey};

/// The domain tag the login signature covers first.
const DOMAIN: &[u8] = b"wisp/v1/mqtt-login\0";

/// Every login password starts with this (the scheme's version).
pub const PREFIX: &str = "wisp1.";

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The username is not a node's peer id.
    #[error("the username is not a wisp node's peer id")]
    NotANode,
    /// The password is not `wisp1.` and 128 hex digits.
    #[error("the password is not a wisp login token")]
    Malformed,
    /// The signature does not verify for this node and oracle.
    #[error("the login token was not signed by this node for this network")]
    BadSignature,
}

fn signed(oracle: &NodeId, node: &NodeId) -> [u8; 83] {
    let mut m = [0u8; 83];
    m[..19].copy_from_slice(DOMAIN);
    m[19..51].copy_from_slice(oracle.as_bytes());
    m[51..].copy_from_slice(node.as_bytes());
    m
}

/// The login password of `key` on the network whose oracle key is `oracle`.
pub fn password(key: &NodeKey, oracle: &NodeId) -> String {
    let sig = key.sign_raw(&signed(oracle, &key.id()));
    let mut s = String::with_capacity(PREFIX.len() + 128);
    s.push_str(PREFIX);
    for b in sig {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The node a username and password log in as, on the network of `oracle`.
pub fn check(username: &str, password: &str, oracle: &NodeId) -> Result<NodeId, LoginError> {
    let node: NodeId = username.parse().map_err(|_| LoginError::NotANode)?;
    let hex = password.strip_prefix(PREFIX).ok_or(LoginError::Malformed)?;
    let raw = hex.as_bytes();
    if raw.len() != 128 {
        return Err(LoginError::Malformed);
    }
    let mut sig = [0u8; 64];
    for (i, out) in sig.iter_mut().enumerate() {
        let hi = hex_val(raw[2 * i]).ok_or(LoginError::Malformed)?;
        let lo = hex_val(raw[2 * i + 1]).ok_or(LoginError::Malformed)?;
        *out = hi << 4 | lo;
    }
    crate::envelope::verify_signature(node.as_bytes(), &signed(oracle, &node), &sig).map_err(
        |e| match e {
            crate::envelope::SignatureError::InvalidKey => LoginError::NotANode,
            _ => LoginError::BadSignature,
        },
    )?;
    Ok(node)
}

/// Lowercase hex only: one password has one spelling.
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_node_logs_in_as_itself_on_its_network_only() {
        let oracle = NodeKey::from_seed(&[1; 32]).id();
        let other_oracle = NodeKey::from_seed(&[2; 32]).id();
        let key = NodeKey::from_seed(&[3; 32]);
        let other = NodeKey::from_seed(&[4; 32]);
        let p = password(&key, &oracle);
        assert_eq!(p.len(), PREFIX.len() + 128);
        // Deterministic: the same password on every start.
        assert_eq!(p, password(&key, &oracle));
        let user = key.id().to_string();
        assert_eq!(check(&user, &p, &oracle), Ok(key.id()));
        // Another network's oracle, another node's name, another node's password.
        assert_eq!(
            check(&user, &p, &other_oracle),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            check(&other.id().to_string(), &p, &oracle),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            check(&user, &password(&other, &oracle), &oracle),
            Err(LoginError::BadSignature)
        );
    }

    #[test]
    fn malformed_logins_are_refused_with_their_reason() {
        let oracle = NodeKey::from_seed(&[1; 32]).id();
        let key = NodeKey::from_seed(&[3; 32]);
        let user = key.id().to_string();
        let p = password(&key, &oracle);
        assert_eq!(check("wisp-oracle", &p, &oracle), Err(LoginError::NotANode));
        assert_eq!(check("", &p, &oracle), Err(LoginError::NotANode));
        assert_eq!(check(&user, "", &oracle), Err(LoginError::Malformed));
        assert_eq!(check(&user, &p[1..], &oracle), Err(LoginError::Malformed));
        assert_eq!(
            check(&user, &p[..p.len() - 2], &oracle),
            Err(LoginError::Malformed)
        );
        let upper = alloc::format!("{PREFIX}{}", p[PREFIX.len()..].to_uppercase());
        assert_eq!(check(&user, &upper, &oracle), Err(LoginError::Malformed));
        let mut flipped = p.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert_eq!(
            check(&user, &flipped, &oracle),
            Err(LoginError::BadSignature)
        );
    }
}
