//! Each connected peer's connections, oldest first, and what the network task does when one
//! opens or closes, so that gossip follows a peer that came back with the same identity.
//!
//! Why: gossipsub (libp2p-gossipsub 0.50) tells a peer our subscriptions once, when the first
//! connection to it is established, and every connection to a peer drains one shared queue of
//! what we send it. A node that crashed and came back with the same key (a router rebooting)
//! before we noticed that its old connection is dead (QUIC's idle timeout, 10 s) is, to
//! gossipsub, a second connection to a peer it knows: nothing is announced on it, so the node
//! never learns that we subscribe and never publishes to us, and the dead connection takes its
//! share of what we send. The rule, applied by the task (`task.rs`): **when a connection to a
//! peer closes and another remains, our subscriptions are announced again over what remains**
//! ([`Connections::handle_closed`], [`announce_subscriptions`]). A live peer knew them already
//! and changes nothing; a peer that came back learns them once the dead connection times out
//! (QUIC's idle timeout, 10 s), and gossip flows again.
//!
//! Closing a peer's older connection as soon as it dials us again would make that immediate,
//! but it also closes a live peer's connection when it dials back for autonat, and with it the
//! autonat exchange under way on it: the node then never confirms its external address
//! (`agent/tests/netns.rs`). So older connections are left to time out.
//!
//! Bounded: one entry per established connection, which the swarm caps (`net.max_connections`),
//! removed when the connection closes. Sans-IO: the task passes in the swarm's events and
//! applies the answers.

use std::collections::HashMap;

use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::{ConnectionEstablished, FromSwarm};
use libp2p::swarm::{ConnectionId, NetworkBehaviour as _};
use libp2p::{Multiaddr, PeerId, gossipsub};
use tracing::debug;

/// Each connected peer's live connections, oldest first.
#[derive(Debug, Default)]
pub(super) struct Connections {
    peers: HashMap<PeerId, Vec<(ConnectionId, ConnectedPoint)>>,
}

impl Connections {
    /// Records a connection the swarm established (call on every `ConnectionEstablished`).
    pub(super) fn handle_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
    ) {
        self.peers.entry(peer).or_default().push((id, endpoint));
    }

    /// Forgets a closed connection (call on every `ConnectionClosed`). Returns the peer's oldest
    /// remaining connection, over which our subscriptions are to be announced again (rule 2),
    /// or `None` when none remains.
    pub(super) fn handle_closed(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
    ) -> Option<(ConnectionId, ConnectedPoint)> {
        let conns = self.peers.get_mut(&peer)?;
        conns.retain(|(c, _)| *c != id);
        match conns.first() {
            Some(first) => Some(first.clone()),
            None => {
                self.peers.remove(&peer);
                None
            }
        }
    }

    /// The remote address of each connected peer's oldest live connection.
    pub(super) fn remotes(&self) -> impl Iterator<Item = (PeerId, &Multiaddr)> {
        self.peers
            .iter()
            .filter_map(|(p, c)| c.first().map(|(_, e)| (*p, e.get_remote_address())))
    }

    /// The remote address of the peer's oldest live connection.
    pub(super) fn remote(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.peers
            .get(peer)
            .and_then(|c| c.first())
            .map(|(_, e)| e.get_remote_address())
    }
}

/// Has gossipsub announce our subscriptions to `peer` again over `id`, what remains after one of
/// its connections closed (rule 2): the connection is handed to gossipsub as the peer's first,
/// which in libp2p-gossipsub 0.50 sends them, and otherwise re-adds only what it already holds
/// (the peer and its IP in the score table, both sets). The p2p_net tests of a node back after a
/// crash fail without it; check them when gossipsub is upgraded.
pub(super) fn announce_subscriptions(
    gossipsub: &mut gossipsub::Behaviour,
    peer: PeerId,
    id: ConnectionId,
    endpoint: &ConnectedPoint,
) {
    debug!(%peer, "announcing our subscriptions again over its remaining connection");
    gossipsub.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: peer,
        connection_id: id,
        endpoint,
        failed_addresses: &[],
        other_established: 0,
    }));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;

    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
            .parse()
            .unwrap()
    }

    /// The peer dialled us from `port`.
    fn accepted(port: u16) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr(9311),
            send_back_addr: addr(port),
        }
    }

    /// We dialled the peer at `port`.
    fn dialled(port: u16) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr(port),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn subscriptions_go_again_over_what_remains_when_a_connection_closes() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut c = Connections::default();
        c.handle_established(a, id(1), accepted(5000));
        assert_eq!(c.remote(&a), Some(&addr(5000)));
        c.handle_established(a, id(2), accepted(5001));
        c.handle_established(b, id(3), dialled(6000));
        // The stale connection closes: the new one gets the subscriptions and is the remote.
        assert_eq!(c.handle_closed(a, id(1)), Some((id(2), accepted(5001))));
        assert_eq!(c.remote(&a), Some(&addr(5001)));
        // The last one closes: the peer is forgotten.
        assert_eq!(c.handle_closed(a, id(2)), None);
        assert_eq!(c.remote(&a), None);
        assert_eq!(c.handle_closed(a, id(2)), None);
        let remotes: Vec<_> = c.remotes().collect();
        assert_eq!(remotes, vec![(b, &addr(6000))]);
        assert_eq!(c.handle_closed(b, id(3)), None);
        assert!(c.peers.is_empty());
    }
}
