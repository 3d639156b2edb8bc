//! The composed libp2p behaviour: one field per concern, composed with the derive.
//!
//! Four concerns are cargo features of wisp-agent (all in the default build, none in the
//! router build; `agent/Cargo.toml`): `nat` (autonat, the relay client and dcutr), `mdns`
//! and `relay-server`. A configuration that asks for one a build lacks is refused
//! (`config::resolve`), and so is a [`NetConfig`] that does here.
// The derive generates `BehaviourEvent` with one undocumented variant per field.
#![allow(missing_docs)]

use std::time::Duration;

#[cfg(feature = "mdns")]
use libp2p::mdns;
#[cfg(any(feature = "nat", feature = "relay-server"))]
use libp2p::relay;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, connection_limits, gossipsub, identify, identity, kad,
    memory_connection_limits, ping, request_response,
};
#[cfg(feature = "nat")]
use libp2p::{autonat, dcutr};

use super::NetConfig;
use super::codec::{BytesCodec, Limits};
use super::gossip;

/// Our Kademlia protocol: a private DHT, never the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/wisp/kad/1");
/// Signed status reports for monitors.
pub const STATUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/wisp/status/1");
/// Bandwidth-test negotiation.
pub const BW_PROTOCOL: StreamProtocol = StreamProtocol::new("/wisp/bw/1");
/// Subscribers' usage receipts, answered by the hotspot that serves them
/// ([`wisp_protocol::msg::USAGE_PROTOCOL`]).
pub const USAGE_PROTOCOL: StreamProtocol = StreamProtocol::new(wisp_protocol::msg::USAGE_PROTOCOL);
/// The test endpoint for proof of usage ([`wisp_protocol::msg::USAGE_DATA_PROTOCOL`]).
pub const USAGE_DATA_PROTOCOL: StreamProtocol =
    StreamProtocol::new(wisp_protocol::msg::USAGE_DATA_PROTOCOL);
/// Identify's protocol version string: peers of other networks are told apart by it.
pub const IDENTIFY_VERSION: &str = "/wisp/1";

/// The largest `/wisp/bw/1` request or response body.
pub const BW_MAX_BODY: usize = 4 * 1024;
/// The largest `/wisp/status/1` request (it carries nothing today).
pub const STATUS_MAX_REQUEST: usize = 64;
/// The largest `/wisp/status/1` response: a status report (≤ 4 KiB) and up to 32 witness
/// envelopes (≤ 640 B each), with framing.
pub const STATUS_MAX_RESPONSE: usize = 32 * 1024;

/// Every behaviour of a wisp node.
// Not every libp2p behaviour implements Debug (the derive's event enum does).
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Caps on connection counts (checked first, so denied connections cost nothing more).
    pub limits: connection_limits::Behaviour,
    /// Refuses new connections when the process uses too much memory.
    pub memory: memory_connection_limits::Behaviour,
    /// Exchanges listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness and RTT.
    pub ping: ping::Behaviour,
    /// Peer discovery and routing (`/wisp/kad/1`).
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Witnesses and seeds.
    pub gossipsub: gossipsub::Behaviour,
    /// `/wisp/status/1`.
    pub status: request_response::Behaviour<BytesCodec>,
    /// `/wisp/bw/1`.
    pub bw: request_response::Behaviour<BytesCodec>,
    /// `/wisp/usage/1`, when proof of usage is enabled (`usage.enabled`).
    pub usage: Toggle<request_response::Behaviour<BytesCodec>>,
    /// `/wisp/usage-data/1`, the usage test endpoint, with `usage.enabled`.
    pub usage_data: Toggle<request_response::Behaviour<BytesCodec>>,
    /// Learns whether we are reachable (feature `nat`).
    #[cfg(feature = "nat")]
    pub autonat: autonat::Behaviour,
    /// Reach peers behind NAT through relays (feature `nat`).
    #[cfg(feature = "nat")]
    pub relay: relay::client::Behaviour,
    /// Upgrade relayed connections to direct ones (hole punching; feature `nat`).
    #[cfg(feature = "nat")]
    pub dcutr: dcutr::Behaviour,
    /// LAN discovery, when enabled (feature `mdns`).
    #[cfg(feature = "mdns")]
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Relaying for nodes behind NAT, on public nodes that offer it (`net.relay_server`;
    /// feature `relay-server`).
    #[cfg(feature = "relay-server")]
    pub relay_server: Toggle<relay::Behaviour>,
}

/// The circuit relay v2 hop protocol: a peer that speaks it relays for others.
pub const RELAY_HOP_PROTOCOL: StreamProtocol =
    StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");

impl Behaviour {
    /// Builds the behaviours for `key` with the relay client the transport was built with
    /// (feature `nat`). Refuses `cfg.mdns` or `cfg.relay_server` in a build without them.
    pub fn new(
        key: &identity::Keypair,
        #[cfg(feature = "nat")] relay: relay::client::Behaviour,
        cfg: &NetConfig,
    ) -> Result<Self, String> {
        let id = key.public().to_peer_id();
        for (wanted, built, feature) in [
            (cfg.mdns, cfg!(feature = "mdns"), "mdns"),
            (
                cfg.relay_server,
                cfg!(feature = "relay-server"),
                "relay-server",
            ),
        ] {
            if wanted && !built {
                return Err(format!("this build has no `{feature}` (a cargo feature)"));
            }
        }
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(cfg.max_connections))
            .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
            .with_max_pending_incoming(Some(cfg.max_connections / 2 + 1))
            .with_max_pending_outgoing(Some(cfg.max_connections / 2 + 1));
        let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        // Records are not used (only routing); keep the store tiny.
        let store = kad::store::MemoryStore::with_config(
            id,
            kad::store::MemoryStoreConfig {
                max_records: 16,
                max_value_bytes: 1024,
                max_providers_per_key: 4,
                max_provided_keys: 16,
            },
        );
        let mut kad = kad::Behaviour::with_config(id, store, kad_cfg);
        match cfg.kad_mode {
            // Auto starts serving; the network task turns it into a client if autonat finds
            // the node private.
            super::KadMode::Auto | super::KadMode::Server => kad.set_mode(Some(kad::Mode::Server)),
            // libp2p's rule: a client until an external address is confirmed.
            super::KadMode::WhenConfirmed => {}
        }
        let mut gs =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip::config()?)
                .map_err(|e| e.to_string())?;
        gs.with_peer_score(gossip::score_params(), gossip::score_thresholds())
            .map_err(|e| e.to_string())?;
        for t in [gossip::Topic::Poc, gossip::Topic::Seed] {
            gs.subscribe(&t.ident()).map_err(|e| e.to_string())?;
        }
        let rr = |proto: StreamProtocol, limits: Limits| {
            request_response::Behaviour::with_codec(
                BytesCodec::new(limits),
                [(proto, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(cfg.request_timeout)
                    .with_max_concurrent_streams(32),
            )
        };
        #[cfg(feature = "mdns")]
        let mdns = if cfg.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), id)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            memory: memory_connection_limits::Behaviour::with_max_percentage(
                cfg.max_memory_fraction,
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    .with_agent_version(format!("wisp-agent/{}", crate::VERSION)),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub: gs,
            status: rr(
                STATUS_PROTOCOL,
                Limits {
                    request: STATUS_MAX_REQUEST,
                    response: STATUS_MAX_RESPONSE,
                },
            ),
            bw: rr(
                BW_PROTOCOL,
                Limits {
                    request: BW_MAX_BODY,
                    response: BW_MAX_BODY,
                },
            ),
            usage: Toggle::from(cfg.usage.then(|| {
                rr(
                    USAGE_PROTOCOL,
                    Limits {
                        request: wisp_protocol::msg::USAGE_REQUEST_MAX,
                        response: wisp_protocol::msg::USAGE_ANSWER_MAX,
                    },
                )
            })),
            usage_data: Toggle::from(cfg.usage.then(|| {
                rr(
                    USAGE_DATA_PROTOCOL,
                    Limits {
                        request: super::usage_data::REQUEST_MAX,
                        response: super::usage_data::RESPONSE_MAX,
                    },
                )
            })),
            #[cfg(feature = "nat")]
            autonat: autonat::Behaviour::new(id, autonat::Config::default()),
            #[cfg(feature = "nat")]
            relay,
            #[cfg(feature = "nat")]
            dcutr: dcutr::Behaviour::new(id),
            #[cfg(feature = "mdns")]
            mdns: Toggle::from(mdns),
            #[cfg(feature = "relay-server")]
            relay_server: Toggle::from(
                cfg.relay_server
                    .then(|| relay::Behaviour::new(id, relay::Config::default())),
            ),
        })
    }
}
