//! The task that owns the swarm. Its loop takes commands from the daemon's
//! [`NetHandle`](super::NetHandle)s, swarm events and the answers to inbound requests, and sends
//! [`NetEvent`](super::NetEvent)s to the daemon without ever waiting on it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::FutureExt as _;
use futures::StreamExt as _;
use libp2p::gossipsub::MessageAcceptance;
#[cfg(feature = "mdns")]
use libp2p::mdns;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wisp_protocol::NodeId;

use super::behaviour::{self, Behaviour, BehaviourEvent};
use super::{
    Command, GOSSIP_BATCH, GOSSIP_DRAIN, MAX_ADDRESS_BOOK, MAX_ADDRS_PER_PEER, MAX_PENDING_INBOUND,
    MAX_PENDING_OUTBOUND, MAX_RELAYS, MAX_UNPUBLISHED, NetError, NetEvent, Proto, Responder, Topic,
    gossip, ip_of, peer_of,
};
use crate::metrics::Metrics;

/// Where a request's outcome goes.
pub(super) type Reply = oneshot::Sender<Result<Vec<u8>, NetError>>;

pub(super) struct Lookup {
    proto: Proto,
    body: Vec<u8>,
    reply: Reply,
}

pub(super) struct Task {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) oracle: NodeId,
    pub(super) resp_tx: mpsc::Sender<(u64, Vec<u8>)>,
    pub(super) events: mpsc::Sender<NetEvent>,
    pub(super) usage: mpsc::Sender<super::usage::UsageRequest>,
    /// The usage test endpoint, with `usage.enabled`.
    pub(super) endpoint: Option<Arc<super::usage_data::Endpoint>>,
    /// Peers whose last connection closed, to the usage driver, with `usage.enabled`.
    pub(super) usage_left: Option<mpsc::Sender<PeerId>>,
    /// Each connected peer's connections, oldest first (its remote address is the oldest's).
    pub(super) conns: super::conns::Connections,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) outbound: HashMap<OutboundRequestId, (PeerId, Reply)>,
    pub(super) lookups: HashMap<PeerId, Vec<Lookup>>,
    pub(super) inbound: HashMap<u64, (Proto, ResponseChannel<Vec<u8>>)>,
    pub(super) next_inbound: u64,
    pub(super) book: HashMap<PeerId, Vec<Multiaddr>>,
    pub(super) book_order: VecDeque<PeerId>,
    pub(super) peers: usize,
    /// Messages published before any peer subscribed to their topic (a node that just started,
    /// or lost its peers); retried when a peer subscribes.
    pub(super) unpublished: VecDeque<(Topic, Vec<u8>)>,
    /// Gossip waiting for a verdict (checked in a batch at the end of a run-loop turn).
    pub(super) to_validate: Vec<(Topic, PeerId, gossipsub::MessageId, gossipsub::Message)>,
    /// Decompressed keys of the signers seen in gossip.
    pub(super) keys: wisp_protocol::envelope::KeyCache,
    /// Peers that offer relaying, with an address to reach them at.
    pub(super) relays: HashMap<PeerId, Multiaddr>,
    /// Whether autonat found this node unreachable from outside.
    pub(super) private: bool,
    /// The relay this node listens through (and the listener), once it asked for one.
    pub(super) circuit: Option<(PeerId, libp2p::core::transport::ListenerId)>,
    /// When to answer DHT queries (only autonat's verdict changes it: feature `nat`).
    #[cfg(feature = "nat")]
    pub(super) kad_mode: super::KadMode,
    /// The last dial error of each peer a request waited for, so that a request failing for
    /// want of a connection says why; cleared by a connection to the peer (at most
    /// [`MAX_PENDING_OUTBOUND`] peers).
    pub(super) dial_errors: HashMap<PeerId, String>,
    /// The configured bootstrap peers, and whether their being unreachable was logged since
    /// the last connection to them.
    pub(super) bootstrap: HashMap<PeerId, bool>,
}

impl Task {
    /// A node autonat found private listens through one relay (a reservation), so peers can
    /// dial it through the relay and dcutr can try to upgrade to a direct connection.
    fn reserve_relay(&mut self) {
        if !self.private || self.circuit.is_some() {
            return;
        }
        let Some((relay, addr)) = self
            .relays
            .iter()
            .min_by_key(|(p, _)| **p)
            .map(|(p, a)| (*p, a.clone()))
        else {
            return;
        };
        // Identify may give the address with the relay's /p2p already on it.
        let Ok(circuit) = addr.with_p2p(relay).map(|a| a.with(Protocol::P2pCircuit)) else {
            self.relays.remove(&relay);
            return;
        };
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                info!(%circuit, "behind NAT: listening through a relay");
                self.circuit = Some((relay, id));
            }
            Err(e) => warn!(%circuit, "relay reservation: {e}"),
        }
    }

    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut responses: mpsc::Receiver<(u64, Vec<u8>)>,
    ) {
        loop {
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                // Never closed: the task holds a sender for new responders.
                Some((id, body)) = responses.recv() => self.respond(id, body),
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
            }
            if !self.to_validate.is_empty() {
                // Take in what else is ready now (bounded), then check all the gossip waiting
                // for a verdict in one batch: under load the batches grow, and a batched
                // signature costs about half a single one.
                for _ in 0..GOSSIP_DRAIN {
                    if self.to_validate.len() >= GOSSIP_BATCH {
                        break;
                    }
                    match self.swarm.next().now_or_never() {
                        Some(Some(ev)) => self.on_swarm(ev),
                        _ => break,
                    }
                }
                self.flush_gossip();
            }
        }
        debug!("network task stopped");
    }

    fn respond(&mut self, id: u64, body: Vec<u8>) {
        let Some((proto, ch)) = self.inbound.remove(&id) else {
            return;
        };
        let b = self.swarm.behaviour_mut();
        let r = match proto {
            Proto::Status => b.status.send_response(ch, body),
            Proto::Bw => b.bw.send_response(ch, body),
            Proto::Usage => match b.usage.as_mut() {
                Some(u) => u.send_response(ch, body),
                None => Err(body),
            },
            Proto::UsageData => match b.usage_data.as_mut() {
                Some(u) => u.send_response(ch, body),
                None => Err(body),
            },
        };
        if r.is_err() {
            debug!(?proto, "response not sent: the requester left");
        }
    }

    fn pending(&self) -> usize {
        self.outbound.len() + self.lookups.values().map(Vec::len).sum::<usize>()
    }

    /// Adds an address to the book and to Kademlia's routing table.
    pub(super) fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
        if let Some(addr) = self.remember(peer, addr) {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
    }

    /// Adds an address to the book (bounded: the oldest peer is forgotten first), without the
    /// `/p2p/` suffix; returns it unless it was unusable.
    fn remember(&mut self, peer: PeerId, addr: Multiaddr) -> Option<Multiaddr> {
        let addr: Multiaddr = addr
            .into_iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        if addr.is_empty() || peer == *self.swarm.local_peer_id() {
            return None;
        }
        if !self.book.contains_key(&peer) {
            if self.book.len() >= MAX_ADDRESS_BOOK
                && let Some(old) = self.book_order.pop_front()
            {
                self.book.remove(&old);
            }
            self.book_order.push_back(peer);
        }
        let addrs = self.book.entry(peer).or_default();
        if !addrs.contains(&addr) {
            if addrs.len() >= MAX_ADDRS_PER_PEER {
                addrs.remove(0);
            }
            addrs.push(addr.clone());
        }
        self.swarm.add_peer_address(peer, addr.clone());
        Some(addr)
    }

    fn send_request(
        &mut self,
        proto: Proto,
        peer: PeerId,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    ) {
        let mut dial_error = None;
        if !self.swarm.is_connected(&peer)
            && let Some(addrs) = self.book.get(&peer)
        {
            // Dial with every address we know; the request waits for the connection.
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs.clone())
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, "dial: {e}");
                dial_error = Some(e.to_string());
            }
        }
        let b = self.swarm.behaviour_mut();
        let id = match proto {
            Proto::Status => b.status.send_request(&peer, body),
            Proto::Bw => b.bw.send_request(&peer, body),
            Proto::Usage => match b.usage.as_mut() {
                Some(u) => u.send_request(&peer, body),
                None => {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        why: "usage.enabled is false: /wisp/usage/1 is off".into(),
                    }));
                    return;
                }
            },
            Proto::UsageData => match b.usage_data.as_mut() {
                Some(u) => u.send_request(&peer, body),
                None => {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        why: "usage.enabled is false: /wisp/usage-data/1 is off".into(),
                    }));
                    return;
                }
            },
        };
        self.outbound.insert(id, (peer, reply));
        if let Some(e) = dial_error {
            self.note_dial_error(peer, e);
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Publish { topic, data } => self.publish(topic, data),
            Command::Request {
                proto,
                peer,
                body,
                reply,
            } => {
                if self.pending() >= MAX_PENDING_OUTBOUND {
                    let _ = reply.send(Err(NetError::TooManyRequests));
                    return;
                }
                if self.swarm.is_connected(&peer) || self.book.contains_key(&peer) {
                    self.send_request(proto, peer, body, reply);
                } else {
                    // Unknown peer: find it in the DHT first.
                    let first = !self.lookups.contains_key(&peer);
                    self.lookups
                        .entry(peer)
                        .or_default()
                        .push(Lookup { proto, body, reply });
                    if first {
                        self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                    }
                }
            }
            Command::AddAddress { peer, addr } => self.learn(peer, addr),
            Command::Dial { addr } => {
                if let Some(peer) = peer_of(&addr) {
                    self.learn(peer, addr.clone());
                }
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!("dialling {addr}: {e}");
                }
            }
            Command::ListenAddrs(r) => {
                let _ = r.send(self.swarm.listeners().cloned().collect());
            }
            Command::ExternalAddrs(r) => {
                let _ = r.send(self.swarm.external_addresses().cloned().collect());
            }
            Command::ConnectedPeers(r) => {
                let _ = r.send(self.swarm.connected_peers().copied().collect());
            }
            Command::PeerAddrs(peer, r) => {
                let _ = r.send(self.book.get(&peer).cloned().unwrap_or_default());
            }
            Command::RemoteAddrs(r) => {
                let _ = r.send(self.conns.remotes().map(|(p, a)| (p, a.clone())).collect());
            }
            Command::DhtServing(r) => {
                let _ = r.send(self.swarm.behaviour().kad.mode() == kad::Mode::Server);
            }
        }
    }

    /// Keeps `peer`'s dial error while a request waits for it (bounded).
    fn note_dial_error(&mut self, peer: PeerId, error: String) {
        if !self.outbound.values().any(|(p, _)| *p == peer) {
            return;
        }
        if self.dial_errors.len() >= MAX_PENDING_OUTBOUND && !self.dial_errors.contains_key(&peer) {
            self.dial_errors.clear();
        }
        self.dial_errors.insert(peer, error);
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let r = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.ident(), data.clone());
        match r {
            Ok(_) => self.count_published(topic, "ok"),
            // Another node already published these exact bytes (a re-gossiped seed).
            Err(gossipsub::PublishError::Duplicate) => self.count_published(topic, "duplicate"),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                if self.unpublished.len() >= MAX_UNPUBLISHED {
                    self.unpublished.pop_front();
                    self.count_published(topic, "failed");
                }
                self.unpublished.push_back((topic, data));
            }
            Err(e) => {
                debug!(topic = topic.name(), "publish failed: {e}");
                self.count_published(topic, "failed");
            }
        }
    }

    fn count_published(&self, topic: Topic, outcome: &'static str) {
        if let Some(m) = &self.metrics {
            m.gossip_published
                .get_or_create(&crate::metrics::GossipLabel {
                    topic: topic.name(),
                    outcome,
                })
                .inc();
        }
    }

    fn count_received(&self, topic: &'static str, outcome: &'static str) {
        if let Some(m) = &self.metrics {
            m.gossip_received
                .get_or_create(&crate::metrics::GossipLabel { topic, outcome })
                .inc();
        }
    }

    fn emit(&mut self, ev: NetEvent) {
        if let Err(e) = self.events.try_send(ev) {
            warn!("the daemon is behind: a network event was dropped ({e})");
            if let Some(m) = &self.metrics {
                m.net_events_dropped.inc();
            }
        }
    }

    fn update_peers(&mut self) {
        let n = self.swarm.connected_peers().count();
        if n != self.peers {
            self.peers = n;
            self.emit(NetEvent::Peers(n));
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ListenerClosed { listener_id, .. }
                if self.circuit.is_some_and(|(_, id)| id == listener_id) =>
            {
                // The relay went away or refused: try another one, if one is known.
                if let Some((relay, _)) = self.circuit.take() {
                    self.relays.remove(&relay);
                }
                self.reserve_relay();
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "p2p listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.conns
                    .handle_established(peer_id, connection_id, endpoint);
                self.dial_errors.remove(&peer_id);
                if let Some(warned) = self.bootstrap.get_mut(&peer_id) {
                    *warned = false;
                }
                self.update_peers();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some((id, endpoint)) = self.conns.handle_closed(peer_id, connection_id) {
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    super::conns::announce_subscriptions(gossipsub, peer_id, id, &endpoint);
                }
                if num_established == 0 {
                    if let Some(e) = &self.endpoint {
                        e.forget(&peer_id);
                    }
                    if let Some(left) = &self.usage_left
                        && left.try_send(peer_id).is_err()
                    {
                        // The driver finds it gone at its next counter read anyway.
                        debug!(peer = %peer_id, "usage driver behind: a peer's leaving not handed over");
                        if let Some(m) = &self.metrics {
                            m.net_events_dropped.inc();
                        }
                    }
                }
                self.update_peers();
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour(b),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, "dial failed: {error}");
                if let Some(peer) = peer_id {
                    if self.bootstrap.get(&peer) == Some(&false) && !self.swarm.is_connected(&peer)
                    {
                        // Once until it is reached: without a bootstrap peer a node finds nobody.
                        warn!(%peer, "bootstrap peer unreachable: {error}");
                        self.bootstrap.insert(peer, true);
                    }
                    self.note_dial_error(peer, error.to_string());
                }
            }
            _ => {}
        }
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { .. }) => {
                for (topic, data) in std::mem::take(&mut self.unpublished) {
                    self.publish(topic, data);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocols.contains(&behaviour::RELAY_HOP_PROTOCOL)
                    && (self.relays.len() < MAX_RELAYS || self.relays.contains_key(&peer_id))
                    && let Some(a) = info.listen_addrs.iter().find(|a| {
                        ip_of(a).is_some_and(|ip| !ip.is_unspecified() && !ip.is_loopback())
                    })
                {
                    self.relays.insert(peer_id, a.clone());
                    self.reserve_relay();
                }
                // Only peers serving our DHT go into the routing table; every peer's
                // addresses go into the book (for requests).
                let dht = info.protocols.contains(&behaviour::KAD_PROTOCOL);
                for a in info.listen_addrs {
                    if dht {
                        self.learn(peer_id, a);
                    } else {
                        self.remember(peer_id, a);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(r),
                step,
                ..
            }) => {
                let (key, peers) = match r {
                    Ok(ok) => (ok.key, ok.peers),
                    Err(kad::GetClosestPeersError::Timeout { key, peers }) => (key, peers),
                };
                for p in &peers {
                    for a in &p.addrs {
                        self.learn(p.peer_id, a.clone());
                    }
                }
                if step.last
                    && let Ok(target) = PeerId::from_bytes(&key)
                    && let Some(waiting) = self.lookups.remove(&target)
                {
                    let found = self.book.contains_key(&target) || self.swarm.is_connected(&target);
                    for l in waiting {
                        if found {
                            self.send_request(l.proto, target, l.body, l.reply);
                        } else {
                            let _ = l.reply.send(Err(NetError::NotFound(target)));
                        }
                    }
                }
            }
            #[cfg(feature = "nat")]
            BehaviourEvent::Autonat(libp2p::autonat::Event::StatusChanged { new, .. }) => {
                self.private = matches!(new, libp2p::autonat::NatStatus::Private);
                info!(status = ?new, "reachability");
                if self.kad_mode == super::KadMode::Auto {
                    let mode = if self.private {
                        kad::Mode::Client
                    } else {
                        kad::Mode::Server
                    };
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    if kad.mode() != mode {
                        info!(%mode, "DHT mode changed (behind NAT a node does not answer DHT queries)");
                        kad.set_mode(Some(mode));
                    }
                }
                self.reserve_relay();
            }
            #[cfg(feature = "mdns")]
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.learn(peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Status(e) => self.on_request_response(Proto::Status, e),
            BehaviourEvent::Bw(e) => self.on_request_response(Proto::Bw, e),
            BehaviourEvent::Usage(e) => self.on_request_response(Proto::Usage, e),
            BehaviourEvent::UsageData(e) => self.on_request_response(Proto::UsageData, e),
            _ => {}
        }
    }

    /// Queues a gossiped message for validation: the run loop checks the queue in one batch
    /// with whatever else arrived at the same time ([`gossip::validate_batch`]).
    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, m: gossipsub::Message) {
        match Topic::from_hash(&m.topic) {
            Some(t) => self.to_validate.push((t, source, id, m)),
            None => self.on_verdict(None, source, id, m, Err(gossip::Invalid::UnknownTopic)),
        }
    }

    /// Validates the queued gossip and reports each verdict to gossipsub.
    fn flush_gossip(&mut self) {
        let batch = std::mem::take(&mut self.to_validate);
        let items: Vec<(Topic, &[u8])> = batch
            .iter()
            .map(|(t, _, _, m)| (*t, m.data.as_slice()))
            .collect();
        let results = gossip::validate_batch(&items, &self.oracle, &mut self.keys);
        drop(items);
        let graylist = gossip::score_thresholds().graylist_threshold;
        // Senders penalised earlier in this batch: only their scores can have crossed the
        // graylist since these messages arrived (gossipsub drops a graylisted peer's messages
        // on receipt).
        let mut rejected: Vec<PeerId> = Vec::new();
        for ((topic, source, id, m), result) in batch.into_iter().zip(results) {
            // Verdicts go in arrival order: a message that came in the same batch as its
            // sender's invalid one, after it, is ignored once that sender is graylisted, as
            // gossipsub would have dropped it had it arrived a moment later.
            if gossip::acceptance(&result) == MessageAcceptance::Reject
                && !rejected.contains(&source)
            {
                rejected.push(source);
            }
            let graylisted = result.is_ok()
                && rejected.contains(&source)
                && self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .peer_score(&source)
                    .is_some_and(|s| s < graylist);
            if graylisted {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
                self.count_received(topic.name(), "ignored");
                continue;
            }
            self.on_verdict(Some(topic), source, id, m, result);
        }
    }

    fn on_verdict(
        &mut self,
        topic: Option<Topic>,
        source: PeerId,
        id: gossipsub::MessageId,
        m: gossipsub::Message,
        result: Result<gossip::Valid, gossip::Invalid>,
    ) {
        let verdict = gossip::acceptance(&result);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, verdict);
        let topic_name = topic.map_or("unknown", Topic::name);
        match result {
            Ok(gossip::Valid::Witness { witness, beaconer }) => {
                self.count_received(topic_name, "accepted");
                self.emit(NetEvent::Witness {
                    bytes: m.data,
                    witness,
                    beaconer,
                });
            }
            Ok(gossip::Valid::Seed { .. }) => {
                self.count_received(topic_name, "accepted");
                self.emit(NetEvent::Seed { bytes: m.data });
            }
            Err(gossip::Invalid::UnknownTopic) => self.count_received(topic_name, "ignored"),
            Err(e) => {
                warn!(peer = %source, topic = topic_name, "rejected a gossiped message: {e}");
                self.count_received(topic_name, "rejected");
            }
        }
    }

    /// A usage receipt goes to the daemon on its own channel; one from a peer whose id is no
    /// Ed25519 key (so no subscriber) is refused here, and one that does not fit is dropped,
    /// so the requester's stream fails.
    fn on_usage_request(&mut self, id: u64, peer: PeerId, body: Vec<u8>, responder: Responder) {
        let Ok(subscriber) = NodeId::from_peer_id(&peer) else {
            let refused = super::usage::encode_answer(&wisp_protocol::msg::UsageAnswer::Refused {
                reason: wisp_protocol::Reason::UsageRoleMismatch.code(),
            });
            self.respond(id, refused);
            return;
        };
        let req = super::usage::UsageRequest {
            peer,
            subscriber: wisp_protocol::SubscriberId(subscriber),
            remote: self.conns.remote(&peer).cloned(),
            body,
            responder,
        };
        if self.usage.try_send(req).is_err() {
            self.inbound.remove(&id);
            debug!(%peer, "usage receipt dropped: the daemon is behind");
            if let Some(m) = &self.metrics {
                m.net_events_dropped.inc();
            }
        }
    }

    fn on_request_response(&mut self, proto: Proto, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if proto == Proto::UsageData {
                        // Answered here at once: the endpoint counts and refuses by itself.
                        if let (Some(e), Some(b)) = (
                            self.endpoint.clone(),
                            self.swarm.behaviour_mut().usage_data.as_mut(),
                        ) && b.send_response(channel, e.serve(peer, &request)).is_err()
                        {
                            debug!(%peer, "usage data not sent: the requester left");
                        }
                        return;
                    }
                    if self.inbound.len() >= MAX_PENDING_INBOUND {
                        // Dropping the channel fails the request on the requester's side.
                        warn!(%peer, "too many unanswered requests; one dropped");
                        return;
                    }
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(id, (proto, channel));
                    let responder = Responder {
                        id,
                        tx: self.resp_tx.clone(),
                    };
                    if matches!(proto, Proto::Usage) {
                        self.on_usage_request(id, peer, request, responder);
                        return;
                    }
                    self.emit(match proto {
                        Proto::Status => NetEvent::StatusRequest { peer, responder },
                        Proto::Bw => NetEvent::BwRequest {
                            peer,
                            body: request,
                            responder,
                        },
                        Proto::Usage | Proto::UsageData => unreachable!("handled above"),
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.outbound.remove(&request_id) {
                        self.dial_errors.remove(&peer);
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.outbound.remove(&request_id) {
                    // Kept for other requests waiting for the same peer.
                    let dial_error = self.dial_errors.get(&peer).cloned();
                    let e = match error {
                        request_response::OutboundFailure::Timeout => NetError::Timeout(peer),
                        request_response::OutboundFailure::DialFailure => NetError::DialFailed {
                            peer,
                            why: dial_error.unwrap_or_else(|| "no address worked".into()),
                        },
                        other => NetError::Request {
                            peer,
                            why: other.to_string(),
                        },
                    };
                    let _ = reply.send(Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, ?proto, "inbound request failed: {error}");
                // The channel is gone with the connection; forget unanswerable entries.
                self.inbound.retain(|_, (_, ch)| ch.is_open());
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
