//! `/wisp/usage/1`: a subscriber's client sends one usage receipt per request (the envelope it
//! signed, at most [`USAGE_REQUEST_MAX`] bytes) and reads the hotspot's [`UsageAnswer`]
//! (postcard, at most [`USAGE_ANSWER_MAX`] bytes). Each body travels as on every request-response
//! protocol of the agent: an unsigned LEB128 length, then the bytes ([`super::codec`]).
//!
//! The network task hands each receipt to the daemon as a [`UsageRequest`] on a channel of its
//! own ([`super::Network::usage`], bounded; a receipt that does not fit is dropped and counted
//! in `wisp_net_events_dropped_total`, and the client's request fails). The daemon judges it
//! with the core's `usage::Usage::handle_receipt` and answers with [`UsageRequest::answer`].
//! The protocol runs only with `usage.enabled` ([`super::NetConfig::usage`]).

use libp2p::PeerId;
use wisp_protocol::SubscriberId;
use wisp_protocol::envelope::{EnvelopeError, decode_canonical, encode_payload};
use wisp_protocol::msg::{USAGE_ANSWER_MAX, USAGE_REQUEST_MAX, UsageAnswer};

use super::{Command, NetError, NetHandle, Proto, Responder};

/// A receipt a peer sent, waiting for the daemon's answer.
#[derive(Debug)]
pub struct UsageRequest {
    /// Who sent it.
    pub peer: PeerId,
    /// The same key as a subscriber: the receipt must name it (the core checks).
    pub subscriber: SubscriberId,
    /// The remote address of the peer's connection, when known: the router counts traffic
    /// per client address, which the usage driver maps to this peer.
    pub remote: Option<libp2p::Multiaddr>,
    /// The receipt envelope as sent (at most [`USAGE_REQUEST_MAX`] bytes: the codec refused
    /// anything longer).
    pub body: Vec<u8>,
    /// Where the answer goes.
    pub responder: Responder,
}

impl UsageRequest {
    /// Sends `answer` without waiting (fails if the network task is overloaded).
    pub fn answer(self, answer: &UsageAnswer) -> Result<(), NetError> {
        self.responder.try_respond(encode_answer(answer))
    }
}

/// The answer's bytes: canonical postcard, at most [`USAGE_ANSWER_MAX`].
pub fn encode_answer(answer: &UsageAnswer) -> Vec<u8> {
    let bytes = encode_payload(answer);
    debug_assert!(bytes.len() <= USAGE_ANSWER_MAX, "{} bytes", bytes.len());
    bytes
}

/// Reads an answer: at most [`USAGE_ANSWER_MAX`] bytes, canonical postcard.
pub fn decode_answer(bytes: &[u8]) -> Result<UsageAnswer, EnvelopeError> {
    if bytes.len() > USAGE_ANSWER_MAX {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: USAGE_ANSWER_MAX,
        });
    }
    decode_canonical(bytes)
}

impl NetHandle {
    /// Sends a usage receipt to the hotspot `peer` over `/wisp/usage/1` and waits for its
    /// answer (a subscriber's side; the agent itself only answers, and tests use this).
    pub async fn usage_request(
        &self,
        peer: PeerId,
        receipt: Vec<u8>,
    ) -> Result<UsageAnswer, NetError> {
        if receipt.len() > USAGE_REQUEST_MAX {
            return Err(NetError::TooLarge {
                len: receipt.len(),
                max: USAGE_REQUEST_MAX,
            });
        }
        let bytes = self
            .ask(|reply| Command::Request {
                proto: Proto::Usage,
                peer,
                body: receipt,
                reply,
            })
            .await??;
        decode_answer(&bytes).map_err(|e| NetError::Request {
            peer,
            why: format!("usage answer: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wisp_protocol::NodeKey;
    use wisp_protocol::bytes::ByteArray;
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::msg::UsageReceipt;

    use super::*;
    use crate::net::{self, NetConfig, Network};

    const HANG: Duration = Duration::from_secs(60);

    #[test]
    fn every_answer_fits_its_limit_and_round_trips() {
        for a in [
            UsageAnswer::Agreed { seq: u64::MAX },
            UsageAnswer::Disputed {
                seq: u64::MAX,
                bytes_down: u64::MAX,
                bytes_up: u64::MAX,
            },
            UsageAnswer::Refused { reason: u16::MAX },
        ] {
            let b = encode_answer(&a);
            assert!(b.len() <= USAGE_ANSWER_MAX, "{a:?}: {} bytes", b.len());
            assert_eq!(decode_answer(&b).unwrap(), a);
        }
        assert!(decode_answer(&[0; USAGE_ANSWER_MAX + 1]).is_err());
        // An over-long varint is not canonical.
        assert!(decode_answer(&[0, 0x81, 0x00]).is_err());
    }

    fn node(seed: u8, port: u64, usage: bool) -> Network {
        let cfg = NetConfig {
            listen: vec![format!("/memory/{port}").parse().unwrap()],
            mdns: false,
            usage,
            ..NetConfig::default()
        };
        let oracle = NodeKey::from_seed(&[0x0a; 32]).id();
        net::start(&NodeKey::from_seed(&[seed; 32]), &cfg, oracle, None).unwrap()
    }

    fn receipt(sub: &NodeKey, hot: &NodeKey) -> Vec<u8> {
        let r = UsageReceipt {
            session: ByteArray([9; 16]),
            hotspot: hot.id(),
            subscriber: SubscriberId::of(sub),
            epoch: 7,
            seq: 1,
            bytes_down: 1_000,
            bytes_up: 100,
            signed_ms: 1_795_000_000_000,
            start_ms: None,
        };
        Envelope::sign(sub, &r).to_bytes()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receipt_reaches_the_daemon_with_its_sender_and_the_answer_comes_back() {
        // In-process links: unique ports per test binary run.
        let port = 7_300_000 + u64::from(std::process::id() % 10_000) * 10;
        let mut hot = node(1, port, true);
        let sub = node(2, port + 1, true);
        let hot_addr: libp2p::Multiaddr = format!("/memory/{port}").parse().unwrap();
        let hot_peer = hot.handle.local_peer_id();
        sub.handle
            .add_address(hot_peer, hot_addr.clone())
            .await
            .unwrap();
        let (hot_key, sub_key) = (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]));
        let body = receipt(&sub_key, &hot_key);
        let sent = body.clone();
        let daemon = tokio::spawn(async move {
            let req = hot.usage.recv().await.unwrap();
            assert_eq!(
                req.subscriber,
                SubscriberId::of(&NodeKey::from_seed(&[2; 32]))
            );
            assert_eq!(req.body, sent);
            req.answer(&UsageAnswer::Agreed { seq: 1 }).unwrap();
            hot
        });
        let answer = tokio::time::timeout(HANG, sub.handle.usage_request(hot_peer, body))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, UsageAnswer::Agreed { seq: 1 });
        let hot = daemon.await.unwrap();
        // Too large for the protocol: refused before anything is sent.
        let big = vec![0; USAGE_REQUEST_MAX + 1];
        assert!(matches!(
            sub.handle.usage_request(hot_peer, big).await,
            Err(NetError::TooLarge { .. })
        ));
        // A node without `usage.enabled` does not speak the protocol.
        let off = node(3, port + 2, false);
        let off_peer = off.handle.local_peer_id();
        sub.handle
            .add_address(off_peer, format!("/memory/{}", port + 2).parse().unwrap())
            .await
            .unwrap();
        let r = tokio::time::timeout(
            HANG,
            sub.handle
                .usage_request(off_peer, receipt(&sub_key, &hot_key)),
        )
        .await
        .unwrap();
        assert!(r.is_err(), "{r:?}");
        drop((hot, off));
    }
}
