//! Each connected peer's connections, oldest first, and what the network task does when one
//! opens or closes, so that gossip follows a peer that came back with the same identity.
//!
//! Why: gossipsub (libp2p-gossipsub 0.50) tells a peer our subscriptions once, when the first
//! connection to it is established, and every connection to a peer drains one shared queue of
//! what we send it. A node that crashed and came back with the same key (a router rebooting)
//! before we noticed that its old connection is dead (QUIC's idle timeout, 10 s) is, to
//! gossipsub, a second connection to a peer it knows: nothing is announced on it, so the node
//! never learns that we subscribe and never publishes to us, and the dead connection takes its
//! share of what we send. Two rules, applied by the task (`task.rs`):
//!
//! 1. **A peer that dials us while a connection it dialled earlier is still open gets the older
//!    ones closed** ([`Connections::handle_established`]): a live wisp node dials no peer it is
//!    connected to, so the older connection is most likely dead. A live peer that does dial
//!    again (an autonat dial-back, an operator's `dial`) only sees one good connection
//!    replaced by another. Connections we dialled are left alone: when both ends dial each
//!    other at once, each holds one connection it dialled and one it accepted, and closing by
//!    age could close both.
//! 2. **When a connection to a peer closes and another remains, our subscriptions are
//!    announced again over what remains** ([`Connections::handle_closed`],
//!    [`announce_subscriptions`]). A live peer knew them already and changes nothing; a peer
//!    that came back learns them. Rule 1 makes this immediate for a peer that dials us again;
//!    a peer we had dialled learns them when the dead connection times out.
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
    /// Returns the peer's older connections to close (rule 1 of the module docs): those it
    /// dialled, when it dialled this one too, directly.
    pub(super) fn handle_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: ConnectedPoint,
    ) -> Vec<ConnectionId> {
        let conns = self.peers.entry(peer).or_default();
        let stale = if endpoint.is_listener() && !endpoint.is_relayed() {
            conns
                .iter()
                .filter(|(_, e)| e.is_listener())
                .map(|(c, _)| *c)
                .collect()
        } else {
            Vec::new()
        };
        conns.push((id, endpoint));
        stale
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

    fn relayed() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: "/ip4/10.0.0.1/udp/9311/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap(),
            send_back_addr: addr(1),
        }
    }

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    /// Feeds `opened` (connection number, endpoint) for one peer in order; `closes` is what
    /// each is to ask to close.
    fn check(opened: Vec<(usize, ConnectedPoint)>, closes: Vec<Vec<usize>>) {
        let peer = PeerId::random();
        let mut c = Connections::default();
        assert_eq!(opened.len(), closes.len());
        for ((n, e), want) in opened.into_iter().zip(closes) {
            let want: Vec<ConnectionId> = want.into_iter().map(id).collect();
            assert_eq!(c.handle_established(peer, id(n), e), want, "connection {n}");
        }
    }

    #[test]
    fn a_peer_that_dials_again_has_its_older_connections_it_dialled_closed() {
        // It came back (a reboot) and dialled us again.
        check(
            vec![(1, accepted(5000)), (2, accepted(5001))],
            vec![vec![], vec![1]],
        );
        // The same socket (a fixed listen port) makes no difference.
        check(
            vec![(1, accepted(5000)), (2, accepted(5000))],
            vec![vec![], vec![1]],
        );
        // A connection we dialled stays: both ends dialling at once must keep one.
        check(
            vec![(1, dialled(5000)), (2, accepted(5000))],
            vec![vec![], vec![]],
        );
        check(
            vec![(1, accepted(5000)), (2, dialled(5000))],
            vec![vec![], vec![]],
        );
        // A relayed connection replaces no direct one.
        check(
            vec![(1, accepted(5000)), (2, relayed())],
            vec![vec![], vec![]],
        );
        // A direct one replaces a relayed one.
        check(
            vec![(1, relayed()), (2, accepted(5000))],
            vec![vec![], vec![1]],
        );
    }

    #[test]
    fn subscriptions_go_again_over_what_remains_when_a_connection_closes() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut c = Connections::default();
        assert!(c.handle_established(a, id(1), accepted(5000)).is_empty());
        assert_eq!(c.remote(&a), Some(&addr(5000)));
        assert_eq!(c.handle_established(a, id(2), accepted(5001)), vec![id(1)]);
        assert!(c.handle_established(b, id(3), dialled(6000)).is_empty());
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
