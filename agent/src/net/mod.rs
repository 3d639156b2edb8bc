//! The agent's peer-to-peer network: one libp2p swarm per agent, driven by its own task.
//!
//! Layout:
//! - [`behaviour`]: the composed behaviour (identify, ping, Kademlia `/wisp/kad/1`, gossipsub,
//!   `/wisp/status/1`, `/wisp/bw/1`, autonat, relay client, dcutr, mdns, connection and memory
//!   limits), one field per concern.
//! - [`gossip`]: topics, the validator run before anything is forwarded, scoring.
//! - [`codec`]: size-limited request-response bodies.
//! - [`status`]: the `/wisp/status/1` response (a signed report and the witnesses of the
//!   node's beacon) and its verification.
//!
//! [`start`] builds the swarm (TCP and QUIC, noise + yamux on TCP) and spawns the task that
//! owns it. The daemon talks to the task through a [`NetHandle`] (a bounded command channel)
//! and receives [`NetEvent`]s (a bounded channel). The task never waits on the daemon: an
//! event that does not fit is dropped and counted, so a slow daemon cannot stall the swarm.

pub mod behaviour;
pub mod codec;
pub mod gossip;
pub mod status;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::StreamExt as _;
use libp2p::gossipsub::MessageAcceptance;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use wisp_protocol::{NodeId, NodeKey};

use crate::metrics::Metrics;
use behaviour::{Behaviour, BehaviourEvent};
pub use gossip::Topic;

/// Depth of the command channel to the network task.
const COMMAND_QUEUE: usize = 256;
/// Depth of the event channel to the daemon.
const EVENT_QUEUE: usize = 512;
/// Most outbound requests waiting for a response (or for a peer lookup).
const MAX_PENDING_OUTBOUND: usize = 128;
/// Most inbound requests waiting for the daemon's answer.
const MAX_PENDING_INBOUND: usize = 64;
/// Most messages held for a later publish because no peer was subscribed yet.
const MAX_UNPUBLISHED: usize = 64;
/// Most peers in the address book (filled from identify, Kademlia, mDNS and config).
const MAX_ADDRESS_BOOK: usize = 4096;
/// Most gossiped messages validated in one batch.
const GOSSIP_BATCH: usize = 256;
/// Most ready swarm events taken in while a validation batch fills.
const GOSSIP_DRAIN: usize = 1024;
/// Most signers' decompressed keys kept for gossip validation (about 200 bytes each).
const GOSSIP_KEYS: usize = 2048;
/// Most addresses kept per peer.
const MAX_ADDRS_PER_PEER: usize = 8;

/// Network settings, resolved (see `config.rs` for the keys and defaults).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Run the network at all.
    pub enabled: bool,
    /// Listen addresses (TCP and/or QUIC multiaddrs).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start, each `…/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses peers reach this node at, added as confirmed external addresses.
    pub external_addresses: Vec<Multiaddr>,
    /// Relay for nodes behind NAT (set on public nodes).
    pub relay_server: bool,
    /// LAN discovery with mDNS.
    pub mdns: bool,
    /// When the node answers DHT queries.
    pub kad_mode: KadMode,
    /// Most established connections.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Refuse new connections above this fraction of physical memory.
    pub max_memory_fraction: f64,
    /// Close a connection no protocol used for this long.
    pub idle_timeout: Duration,
    /// Request-response timeout.
    pub request_timeout: Duration,
    /// The H3 resolution of the asserted cell in the `/wisp/status/1` answer
    /// (at most [`wisp_protocol::geo::ASSERT_RESOLUTION`]; see [`status::for_anonymous_peer`]).
    pub status_cell_resolution: u8,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec![
                "/ip4/0.0.0.0/udp/9311/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/tcp/9311"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            relay_server: false,
            mdns: false,
            kad_mode: KadMode::Auto,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_memory_fraction: 0.9,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            // About 5 km² (edges of ~1.4 km): a town or a city district, enough to place a
            // node on a coverage map, not to find the building.
            status_cell_resolution: 7,
        }
    }
}

/// When a node answers DHT (`/wisp/kad/1`) queries, and so appears in its peers' routing
/// tables where others can find it (`net.kad_server`).
///
/// libp2p's own rule keeps a node a DHT client until an external address is confirmed, which
/// autonat does only between public IPs: on a LAN or loopback no node ever served, so nodes
/// bootstrapped to the same peer never found each other. A node is now a server unless autonat
/// finds it unreachable from outside; a node behind NAT would otherwise fill its peers' tables
/// with addresses nobody can dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KadMode {
    /// Serve, except while autonat reports the node private (`net.kad_server` unset). On a
    /// private or loopback network autonat never decides (it probes only public IPs), so every
    /// node there serves.
    #[default]
    Auto,
    /// Always serve (`net.kad_server = true`): public bootstrap nodes.
    Server,
    /// Serve only once an external address is confirmed, libp2p's own rule
    /// (`net.kad_server = false`).
    WhenConfirmed,
}

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The network task is not running.
    #[error("the network task has stopped")]
    Stopped,
    /// The command queue is full (the task is overloaded).
    #[error("the network is busy")]
    Busy,
    /// Too many requests are already waiting for responses.
    #[error("too many requests in flight")]
    TooManyRequests,
    /// No address is known for the peer: it is not connected, not in the address book, and a
    /// DHT lookup did not find it.
    #[error("no address known for {0}: not connected, and the DHT lookup did not find it")]
    NotFound(PeerId),
    /// Every address of the peer failed to connect.
    #[error("dialling {peer} failed: {why}")]
    DialFailed {
        /// The peer.
        peer: PeerId,
        /// The dial error (each address tried, with its error).
        why: String,
    },
    /// The peer did not answer within the protocol's request timeout.
    #[error("request to {0} timed out")]
    Timeout(PeerId),
    /// The request failed (connection closed, unsupported protocol, I/O).
    #[error("request to {peer} failed: {why}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What happened.
        why: String,
    },
    /// A body exceeds the protocol's size limit.
    #[error("body of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Publishing a gossip message failed.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The swarm could not be built or could not listen.
    #[error("network setup: {0}")]
    Setup(String),
}

/// Which request-response protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Status,
    Bw,
}

enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Request {
        proto: Proto,
        peer: PeerId,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Dial {
        addr: Multiaddr,
    },
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    ExternalAddrs(oneshot::Sender<Vec<Multiaddr>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    PeerAddrs(PeerId, oneshot::Sender<Vec<Multiaddr>>),
    DhtServing(oneshot::Sender<bool>),
}

/// Answers one inbound request. Dropping it without answering lets the request time out on
/// the requester's side.
#[derive(Debug)]
pub struct Responder {
    id: u64,
    tx: mpsc::Sender<(u64, Vec<u8>)>,
}

impl Responder {
    /// Sends the response body without waiting (fails if the network task is overloaded).
    pub fn try_respond(self, body: Vec<u8>) -> Result<(), NetError> {
        self.tx.try_send((self.id, body)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::Busy,
            mpsc::error::TrySendError::Closed(_) => NetError::Stopped,
        })
    }

    /// Sends the response body.
    pub async fn respond(self, body: Vec<u8>) -> Result<(), NetError> {
        self.tx
            .send((self.id, body))
            .await
            .map_err(|_| NetError::Stopped)
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Publish { .. } => "Publish",
            Command::Request { .. } => "Request",
            Command::AddAddress { .. } => "AddAddress",
            Command::Dial { .. } => "Dial",
            Command::ListenAddrs(_) => "ListenAddrs",
            Command::ExternalAddrs(_) => "ExternalAddrs",
            Command::ConnectedPeers(_) => "ConnectedPeers",
            Command::PeerAddrs(..) => "PeerAddrs",
            Command::DhtServing(_) => "DhtServing",
        })
    }
}

/// What the network tells the daemon.
#[derive(Debug)]
pub enum NetEvent {
    /// A validated witness arrived by gossip.
    Witness {
        /// The witness envelope bytes (signatures already verified).
        bytes: Vec<u8>,
        /// Who signed the witness.
        witness: NodeId,
        /// Whose beacon it witnesses.
        beaconer: NodeId,
    },
    /// A seed signed by the pinned oracle arrived by gossip.
    Seed {
        /// The seed envelope bytes.
        bytes: Vec<u8>,
    },
    /// A peer asks for our signed status; answer with [`status::encode_response`].
    StatusRequest {
        /// Who asks.
        peer: PeerId,
        /// Where the answer goes.
        responder: Responder,
    },
    /// A peer sent a `/wisp/bw/1` request (an opaque body of at most 4 KiB).
    BwRequest {
        /// Who asks.
        peer: PeerId,
        /// The request body.
        body: Vec<u8>,
        /// Where the answer (at most 4 KiB) goes.
        responder: Responder,
    },
    /// The number of connected peers changed.
    Peers(usize),
}

/// The daemon's side of the network: cheap to clone.
#[derive(Debug, Clone)]
pub struct NetHandle {
    cmd: mpsc::Sender<Command>,
    local: PeerId,
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    fn try_cmd(&self, c: Command) -> Result<(), NetError> {
        self.cmd.try_send(c).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::Busy,
            mpsc::error::TrySendError::Closed(_) => NetError::Stopped,
        })
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(f(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Queues `data` for gossip on `topic` without waiting. The data is published as is (our
    /// own messages are not validated on the way out).
    pub fn try_publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > gossip::MAX_GOSSIP_PAYLOAD {
            return Err(NetError::TooLarge {
                len: data.len(),
                max: gossip::MAX_GOSSIP_PAYLOAD,
            });
        }
        self.try_cmd(Command::Publish { topic, data })
    }

    /// Sends a `/wisp/bw/1` request (≤ 4 KiB) and waits for the response (≤ 4 KiB).
    pub async fn bw_request(&self, peer: PeerId, body: Vec<u8>) -> Result<Vec<u8>, NetError> {
        if body.len() > behaviour::BW_MAX_BODY {
            return Err(NetError::TooLarge {
                len: body.len(),
                max: behaviour::BW_MAX_BODY,
            });
        }
        self.ask(|reply| Command::Request {
            proto: Proto::Bw,
            peer,
            body,
            reply,
        })
        .await?
    }

    /// Asks `peer` for its status over `/wisp/status/1` and verifies the answer: the report
    /// must be signed by `peer`'s key.
    pub async fn status_request(&self, peer: PeerId) -> Result<status::RemoteStatus, NetError> {
        let bytes = self
            .ask(|reply| Command::Request {
                proto: Proto::Status,
                peer,
                body: Vec::new(),
                reply,
            })
            .await??;
        status::verify_response(&peer, &bytes).map_err(|e| NetError::Request {
            peer,
            why: e.to_string(),
        })
    }

    /// Remembers an address of a peer (used when dialling it).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), NetError> {
        self.cmd
            .send(Command::AddAddress { peer, addr })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Dials an address (with or without a `/p2p/` suffix).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.cmd
            .send(Command::Dial { addr })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// The addresses the swarm listens on (empty until the listeners are up).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ListenAddrs).await
    }

    /// The node's confirmed external addresses (configured, or confirmed by autonat).
    pub async fn external_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ExternalAddrs).await
    }

    /// The IP peers reach this node at: the first confirmed external address's, IPv4 first.
    pub async fn public_ip(&self) -> Option<std::net::IpAddr> {
        pick_public_ip(&self.external_addrs().await.ok()?)
    }

    /// The peers with an established connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(Command::ConnectedPeers).await
    }

    /// The addresses known for `peer` (connections, identify, Kademlia, mDNS, config).
    pub async fn peer_addrs(&self, peer: PeerId) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(|r| Command::PeerAddrs(peer, r)).await
    }

    /// Whether the node answers DHT queries now (see [`KadMode`]).
    pub async fn dht_serving(&self) -> Result<bool, NetError> {
        self.ask(Command::DhtServing).await
    }
}

/// The IP an address starts with (`/ip4/…` or `/ip6/…`).
pub fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

/// The first specific IP among `addrs`, IPv4 before IPv6.
pub fn pick_public_ip(addrs: &[Multiaddr]) -> Option<std::net::IpAddr> {
    let ips = || {
        addrs
            .iter()
            .filter_map(ip_of)
            .filter(|ip| !ip.is_unspecified())
    };
    ips()
        .find(std::net::IpAddr::is_ipv4)
        .or_else(|| ips().next())
}

/// Most relays remembered (peers whose identify lists the hop protocol).
const MAX_RELAYS: usize = 64;

/// The running network task.
#[derive(Debug)]
pub struct Network {
    /// Commands in.
    pub handle: NetHandle,
    /// Events out.
    pub events: mpsc::Receiver<NetEvent>,
    /// The task; ends when every [`NetHandle`] is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// The peer id in a `…/p2p/<peer>` multiaddr.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Builds the swarm for `key`, starts listening and dialling the bootstrap peers, and spawns
/// the task that drives it. Gossiped seeds are accepted only when `oracle` signed them.
pub fn start(
    key: &NodeKey,
    cfg: &NetConfig,
    oracle: NodeId,
    metrics: Option<Arc<Metrics>>,
) -> Result<Network, NetError> {
    let keypair = key.to_libp2p_keypair();
    let local = keypair.public().to_peer_id();
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let c = cfg.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_quic()
        // In-process links (`/memory/N` addresses, with noise and yamux as over TCP), for tests
        // and benchmarks of many nodes in one process; nothing listens on one unless configured.
        .with_other_transport(|k| {
            use libp2p::core::Transport as _;
            use libp2p::core::upgrade::Version;
            let noise = noise::Config::new(k)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(libp2p::core::transport::MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|e| setup(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|k, relay| {
            Behaviour::new(k, relay, &c)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|s| s.with_idle_connection_timeout(c.idle_timeout))
        .build();
    for a in &cfg.listen {
        swarm
            .listen_on(a.clone())
            .map_err(|e| NetError::Setup(format!("listening on {a}: {e}")))?;
    }
    for a in &cfg.external_addresses {
        swarm.add_external_address(a.clone());
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let (resp_tx, resp_rx) = mpsc::channel(MAX_PENDING_INBOUND);
    let mut task = Task {
        swarm,
        oracle,
        resp_tx,
        events: ev_tx,
        metrics,
        outbound: HashMap::new(),
        lookups: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
        book: HashMap::new(),
        book_order: VecDeque::new(),
        peers: 0,
        unpublished: VecDeque::new(),
        to_validate: Vec::new(),
        relays: HashMap::new(),
        private: false,
        circuit: None,
        keys: wisp_protocol::envelope::KeyCache::new(GOSSIP_KEYS),
        kad_mode: cfg.kad_mode,
        dial_errors: HashMap::new(),
        bootstrap: HashMap::new(),
    };
    for a in &cfg.bootstrap {
        match peer_of(a) {
            Some(peer) => {
                task.bootstrap.insert(peer, false);
                task.learn(peer, a.clone());
                if let Err(e) = task.swarm.dial(a.clone()) {
                    warn!("bootstrap peer {a}: {e}");
                }
            }
            None => warn!("bootstrap address {a} has no /p2p/<peer id>; skipped"),
        }
    }
    if !cfg.bootstrap.is_empty() {
        let _ = task.swarm.behaviour_mut().kad.bootstrap();
    }
    // The task stops when every handle is gone (the command channel closes).
    let handle = NetHandle { cmd: cmd_tx, local };
    let task = tokio::spawn(task.run(cmd_rx, resp_rx));
    Ok(Network {
        handle,
        events: ev_rx,
        task,
    })
}

/// Where a request's outcome goes.
type Reply = oneshot::Sender<Result<Vec<u8>, NetError>>;

struct Lookup {
    proto: Proto,
    body: Vec<u8>,
    reply: Reply,
}

struct Task {
    swarm: Swarm<Behaviour>,
    oracle: NodeId,
    resp_tx: mpsc::Sender<(u64, Vec<u8>)>,
    events: mpsc::Sender<NetEvent>,
    metrics: Option<Arc<Metrics>>,
    outbound: HashMap<OutboundRequestId, (PeerId, Reply)>,
    lookups: HashMap<PeerId, Vec<Lookup>>,
    inbound: HashMap<u64, (Proto, ResponseChannel<Vec<u8>>)>,
    next_inbound: u64,
    book: HashMap<PeerId, Vec<Multiaddr>>,
    book_order: VecDeque<PeerId>,
    peers: usize,
    /// Messages published before any peer subscribed to their topic (a node that just started,
    /// or lost its peers); retried when a peer subscribes.
    unpublished: VecDeque<(Topic, Vec<u8>)>,
    /// Gossip waiting for a verdict (checked in a batch at the end of a run-loop turn).
    to_validate: Vec<(Topic, PeerId, gossipsub::MessageId, gossipsub::Message)>,
    /// Decompressed keys of the signers seen in gossip.
    keys: wisp_protocol::envelope::KeyCache,
    /// Peers that offer relaying, with an address to reach them at.
    relays: HashMap<PeerId, Multiaddr>,
    /// Whether autonat found this node unreachable from outside.
    private: bool,
    /// The relay this node listens through (and the listener), once it asked for one.
    circuit: Option<(PeerId, libp2p::core::transport::ListenerId)>,
    /// When to answer DHT queries.
    kad_mode: KadMode,
    /// The last dial error of each peer a request waited for, so that a request failing for
    /// want of a connection says why; cleared by a connection to the peer (at most
    /// [`MAX_PENDING_OUTBOUND`] peers).
    dial_errors: HashMap<PeerId, String>,
    /// The configured bootstrap peers, and whether their being unreachable was logged since
    /// the last connection to them.
    bootstrap: HashMap<PeerId, bool>,
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

    async fn run(
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
        };
        if r.is_err() {
            debug!(?proto, "response not sent: the requester left");
        }
    }

    fn pending(&self) -> usize {
        self.outbound.len() + self.lookups.values().map(Vec::len).sum::<usize>()
    }

    /// Adds an address to the book and to Kademlia's routing table.
    fn learn(&mut self, peer: PeerId, addr: Multiaddr) {
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
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.dial_errors.remove(&peer_id);
                if let Some(warned) = self.bootstrap.get_mut(&peer_id) {
                    *warned = false;
                }
                self.update_peers();
            }
            SwarmEvent::ConnectionClosed { .. } => self.update_peers(),
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
            BehaviourEvent::Autonat(libp2p::autonat::Event::StatusChanged { new, .. }) => {
                self.private = matches!(new, libp2p::autonat::NatStatus::Private);
                info!(status = ?new, "reachability");
                if self.kad_mode == KadMode::Auto {
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

    fn on_request_response(&mut self, proto: Proto, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
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
                    self.emit(match proto {
                        Proto::Status => NetEvent::StatusRequest { peer, responder },
                        Proto::Bw => NetEvent::BwRequest {
                            peer,
                            body: request,
                            responder,
                        },
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
