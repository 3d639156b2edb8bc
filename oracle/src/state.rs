//! What the service shares with its HTTP API: the worker's snapshot, a read connection to the
//! database, the metrics and the broker's state. The service writes it, the API reads it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, RwLock};

use serde::Serialize;
use wisp_shell::broker_health::BrokerHealth;

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::store::Store;

/// A node as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Peer id.
    pub peer_id: String,
    /// Payout address.
    pub owner: String,
    /// Asserted H3 cell.
    pub cell: String,
    /// Cell centre latitude.
    pub lat: f64,
    /// Cell centre longitude.
    pub lon: f64,
    /// Last heartbeat, Unix ms.
    pub last_heartbeat_ms: Option<u64>,
    /// Location trust in basis points, once established.
    pub location_trust_bps: Option<u16>,
    /// Backhaul as last rated (lower median of its measurers), bits/s towards the node.
    pub down_bps: Option<u64>,
    /// Backhaul as last rated, bits/s from the node.
    pub up_bps: Option<u64>,
    /// The last epoch of its penalty, if it was caught cheating (it earns nothing through it).
    pub penalized_through: Option<u64>,
    /// What it was caught at within the strike window, most recent first.
    pub marks: Vec<MarkView>,
}

/// One thing a node was caught at.
#[derive(Debug, Clone, Serialize)]
pub struct MarkView {
    /// The epoch.
    pub epoch: u64,
    /// The reason code's name.
    pub reason: &'static str,
}

/// What the worker shares with the HTTP API.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    /// The oracle's peer id.
    pub oracle: String,
    /// The current epoch.
    pub epoch: Option<u64>,
    /// Epochs open (current and settling), with proofs queued in each.
    pub open_epochs: Vec<(u64, usize)>,
    /// Onboarded nodes.
    pub nodes: Vec<NodeView>,
    /// Proofs stored.
    pub proofs_stored: u64,
}

impl Snapshot {
    /// The API's view of an engine: the leader's, or the one a standby keeps by following
    /// the database.
    pub fn of(engine: &Engine, proofs_stored: u64) -> Snapshot {
        let nodes = engine
            .registry()
            .iter()
            .map(|n| {
                let (lat, lon) = n.cell.center();
                NodeView {
                    peer_id: n.id.to_string(),
                    owner: n.owner.clone(),
                    cell: n.cell.to_string(),
                    lat,
                    lon,
                    last_heartbeat_ms: n.heartbeats.latest().map(|h| h.sent_ms),
                    location_trust_bps: n.location_trust_bps,
                    down_bps: n.capacity.down_bps,
                    up_bps: n.capacity.up_bps,
                    penalized_through: n.penalized_through,
                    marks: n
                        .marks
                        .iter()
                        .map(|m| MarkView {
                            epoch: m.epoch,
                            reason: m.reason.name(),
                        })
                        .collect(),
                }
            })
            .collect();
        Snapshot {
            oracle: engine.key().id().to_string(),
            epoch: engine.open_epochs().map(|(e, _)| *e).max(),
            open_epochs: engine.open_epochs().map(|(e, s)| (*e, s.len())).collect(),
            nodes,
            proofs_stored,
        }
    }
}

/// State shared with the HTTP server.
#[derive(Debug)]
pub struct Shared {
    /// Refreshed by the worker.
    pub snapshot: RwLock<Snapshot>,
    /// A read connection to the database (its reads take `&self`: PostgreSQL pipelines
    /// concurrent queries, SQLite runs them one at a time off the runtime).
    pub reader: Store,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether the MQTT connection is up.
    pub connected: AtomicBool,
    /// The broker as operators see it (`/readyz` reads why it is not connected).
    pub broker: Mutex<BrokerHealth>,
    /// What the oracle last published, retained, on each of its topics (seed, clock, measurer
    /// set parts): anything else that arrives there is put right at once.
    pub retained: Mutex<HashMap<String, Vec<u8>>>,
    /// Alone, or one of several processes on one database: leading or standing by.
    pub role: Mutex<Role>,
}

impl Shared {
    /// Makes `snap` the one the API serves, and counts its nodes in the metrics.
    pub fn publish(&self, snap: Snapshot) {
        self.metrics
            .nodes
            .set(i64::try_from(snap.nodes.len()).unwrap_or(i64::MAX));
        if let Ok(mut s) = self.snapshot.write() {
            *s = snap;
        }
    }
}

/// What this process does among the oracle processes of one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only oracle process of its database.
    Alone,
    /// Holds the leader lease: judges, opens and closes epochs, publishes.
    Leader,
    /// Waits for the lease; serves the API from the database meanwhile.
    Standby,
}

impl Role {
    /// The role's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Role::Alone => "alone",
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}
