//! The agent's peer-to-peer network: one libp2p swarm per agent, driven by its own task.
//!
//! Layout:
//! - [`behaviour`]: the composed behaviour (identify, ping, Kademlia `/wisp/kad/1`, gossipsub,
//!   `/wisp/status/1`, `/wisp/bw/1`, autonat, relay client, dcutr, mdns, connection and memory
//!   limits), one field per concern; NAT traversal, mDNS and the relay server are cargo
//!   features.
//! - [`gossip`]: topics, the validator run before anything is forwarded, scoring.
//! - [`codec`]: size-limited request-response bodies.
//! - [`status`]: the `/wisp/status/1` response (a signed report and the witnesses of the
//!   node's beacon) and its verification.
//! - [`usage`]: `/wisp/usage/1`, subscribers' usage receipts in and the hotspot's answers out
//!   (a channel of its own, [`Network::usage`]).
//! - [`usage_data`]: `/wisp/usage-data/1`, the usage test endpoint, answered by the task itself
//!   and counted per peer ([`Network::usage_data`]); the peers whose last connection closed go
//!   to the usage driver on a channel of their own ([`Network::usage_left`]).
//! - `conns.rs`: each peer's connections, and the rules that keep gossip working with a peer
//!   that came back with the same identity before its old connection was found dead.
//! - `task.rs`: the task that owns the swarm, its event loop and what it keeps (pending
//!   requests, the address book, relays, gossip waiting for a verdict).
//!
//! [`start`] builds the swarm (TCP and QUIC, noise + yamux on TCP) and spawns the task that
//! owns it. The daemon talks to the task through a [`NetHandle`] (a bounded command channel)
//! and receives [`NetEvent`]s (a bounded channel). The task never waits on the daemon: an
//! event that does not fit is dropped and counted, so a slow daemon cannot stall the swarm.

pub mod behaviour;
pub mod codec;
mod conns;
pub mod gossip;
pub mod status;
mod task;
pub mod usage;
pub mod usage_data;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use wisp_protocol::{NodeId, NodeKey};

use crate::metrics::Metrics;
use behaviour::Behaviour;
pub use gossip::Topic;
use task::Task;

/// Depth of the command channel to the network task.
const COMMAND_QUEUE: usize = 256;
/// Depth of the event channel to the daemon.
const EVENT_QUEUE: usize = 512;
/// Depth of the channel of usage receipts to the daemon (each holds one request of at most
/// 512 bytes and counts against [`MAX_PENDING_INBOUND`] until answered).
const USAGE_QUEUE: usize = 64;
/// Depth of the channel of peers whose last connection closed, to the usage driver. One that
/// does not fit is dropped and counted; the driver also finds them at its next counter read.
const USAGE_LEFT_QUEUE: usize = 256;
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
    /// Answer subscribers' usage receipts on `/wisp/usage/1` (`usage.enabled`).
    pub usage: bool,
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
            usage: false,
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
    Usage,
    UsageData,
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
    RemoteAddrs(oneshot::Sender<Vec<(PeerId, Multiaddr)>>),
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
            Command::RemoteAddrs(_) => "RemoteAddrs",
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

    /// The connected peers with the remote address of their oldest live connection (bounded by
    /// `net.max_connections`): the usage driver maps a router's per-address counters to peers.
    pub async fn remote_addrs(&self) -> Result<Vec<(PeerId, Multiaddr)>, NetError> {
        self.ask(Command::RemoteAddrs).await
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
    /// Usage receipts out, for the daemon to judge and answer (nothing arrives unless
    /// [`NetConfig::usage`]).
    pub usage: mpsc::Receiver<usage::UsageRequest>,
    /// The usage test endpoint's counters and blocks (with [`NetConfig::usage`]).
    pub usage_data: Option<Arc<usage_data::Endpoint>>,
    /// Peers whose last connection closed, for the usage driver: a subscriber that leaves
    /// ends its session (nothing arrives unless [`NetConfig::usage`]).
    pub usage_left: mpsc::Receiver<PeerId>,
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
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
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
        .map_err(|e| setup(&e))?;
    let behaviour_error = |e: String| -> Box<dyn std::error::Error + Send + Sync> { e.into() };
    // With NAT traversal the transport gets a relay client too, and the behaviour its half.
    #[cfg(feature = "nat")]
    let mut swarm = swarm
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|k, relay| Behaviour::new(k, relay, &c).map_err(behaviour_error))
        .map_err(|e| setup(&e))?
        .with_swarm_config(|s| s.with_idle_connection_timeout(c.idle_timeout))
        .build();
    #[cfg(not(feature = "nat"))]
    let mut swarm = swarm
        .with_behaviour(|k| Behaviour::new(k, &c).map_err(behaviour_error))
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
    let (usage_tx, usage_rx) = mpsc::channel(USAGE_QUEUE);
    let (resp_tx, resp_rx) = mpsc::channel(MAX_PENDING_INBOUND);
    let endpoint = cfg.usage.then(|| Arc::new(usage_data::Endpoint::default()));
    let (left_tx, left_rx) = mpsc::channel(USAGE_LEFT_QUEUE);
    let mut task = Task {
        swarm,
        oracle,
        resp_tx,
        events: ev_tx,
        usage: usage_tx,
        endpoint: endpoint.clone(),
        usage_left: cfg.usage.then_some(left_tx),
        conns: conns::Connections::default(),
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
        #[cfg(feature = "nat")]
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
        usage: usage_rx,
        usage_data: endpoint,
        usage_left: left_rx,
        task,
    })
}
