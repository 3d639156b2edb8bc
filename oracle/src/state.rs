//! What the service shares with its HTTP API: the worker's snapshot, a read connection to the
//! database, the metrics and the broker's state. The service writes it, the API reads it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wisp_protocol::msg::Verdict;
use wisp_protocol::{Reason, SubscriberId};
use wisp_shell::broker_health::BrokerHealth;

use crate::Rules;
use crate::carrier_limit::CarrierLimit;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::usage::{Balance, Ledger};

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
    /// Subscribers' data credits (`/v1/subscribers/{peer_id}`).
    #[serde(skip)]
    pub credits: Credits,
}

/// Subscribers' data credits as the API reads them: the engine's ledger as of the snapshot,
/// shared (not copied) by the API's readers.
#[derive(Debug, Clone, Default)]
pub struct Credits {
    ledger: Arc<Ledger>,
    /// The rules the pending credits are priced with; `None` only in an empty snapshot.
    rules: Option<Arc<Rules>>,
}

impl Credits {
    /// The credits of `ledger`, priced with `rules`.
    pub fn new(ledger: Ledger, rules: Rules) -> Credits {
        Credits {
            ledger: Arc::new(ledger),
            rules: Some(Arc::new(rules)),
        }
    }

    /// The rules the snapshot's engine judges with; `None` only in an empty snapshot.
    pub fn rules(&self) -> Option<&Rules> {
        self.rules.as_deref()
    }

    /// A subscriber's balance; `None` for one never granted credits.
    pub fn balance(&self, subscriber: &SubscriberId) -> Option<Balance> {
        self.ledger.balance(subscriber, self.rules.as_deref()?)
    }
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
            // A copy of the ledger each second, as of the node list: one account per funded
            // subscriber and their live sessions, a small fraction of the nodes' views.
            credits: Self::credits_of(engine),
        }
    }

    /// The credits part of [`Snapshot::of`].
    pub fn credits_of(engine: &Engine) -> Credits {
        Credits::new(engine.ledger().clone(), engine.registry().rules().clone())
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
    /// To the ingest worker: the operator's credit grants (`POST /v1/credits`) and carriers'
    /// usage reports (`POST /v1/usage/carrier`), judged and stored there like a proof. Nobody
    /// takes them while this process stands by.
    pub grants: mpsc::Sender<GrantRequest>,
    /// The per-carrier rate limit of carriers' reports (`[http] carrier_reports_per_s`,
    /// `carrier_burst`).
    pub carrier_limit: CarrierLimit,
    /// A cluster's process stopping on purpose has left (or is leaving) the shared
    /// subscription: it must not subscribe again, whatever (re)connection it sees.
    pub leaving: AtomicBool,
    /// Told of every `UNSUBACK` the broker sends this process's connection.
    pub unsubacked: tokio::sync::Notify,
}

/// Credit grants and carrier reports waiting for the ingest worker: the API waits for each
/// answer, so a few requests at once are all this holds.
pub const GRANT_QUEUE: usize = 16;

/// An operator's credit grant or a carrier's usage report for the ingest worker (which tells
/// them apart by the envelope's kind), with where its answer goes.
#[derive(Debug)]
pub struct GrantRequest {
    /// The envelope bytes as posted (at most the kind's envelope size).
    pub envelope: Vec<u8>,
    /// The worker's answer.
    pub reply: oneshot::Sender<GrantAnswer>,
}

/// What the ingest worker made of a grant or a carrier report.
#[derive(Debug, Clone)]
pub enum GrantAnswer {
    /// Judged, and stored if new: for a grant `accepted` (credited), or `usage_grant_reused`
    /// (another envelope with its grant id was applied before: nothing changed); for a
    /// carrier report the verdict of the usage rules. A repeat of an envelope already judged
    /// gets that verdict again.
    Judged {
        /// The verdict.
        verdict: Verdict,
        /// Whom it credits, or the carrier's account that pays.
        subscriber: SubscriberId,
        /// The subscriber's balance after it.
        balance: Option<Balance>,
        /// This envelope was judged before: nothing was stored or changed now.
        duplicate: bool,
    },
    /// Not a credit grant signed by this oracle's key, or not a carrier report signed by an
    /// allow-listed carrier: the reason and why (nothing stored).
    Refused {
        /// The reason code.
        reason: Reason,
        /// What is wrong, for the operator.
        why: String,
    },
}

impl Shared {
    /// A process's shared state for the service's unit tests: `reader` as the API's
    /// connection, nothing published yet, not connected, with `role`.
    #[cfg(test)]
    pub(crate) fn for_tests(reader: Store, role: Role) -> (Shared, mpsc::Receiver<GrantRequest>) {
        let (grants, grant_rx) = mpsc::channel(1);
        let shared = Shared {
            snapshot: RwLock::new(Snapshot::default()),
            reader,
            metrics: Metrics::new(),
            connected: AtomicBool::new(false),
            broker: Mutex::new(BrokerHealth::new("mqtt://test", 30_000)),
            retained: Mutex::new(HashMap::new()),
            role: Mutex::new(role),
            grants,
            carrier_limit: CarrierLimit::default(),
            leaving: AtomicBool::new(false),
            unsubacked: tokio::sync::Notify::new(),
        };
        (shared, grant_rx)
    }

    /// Makes `snap` the one the API serves, and counts its nodes in the metrics.
    pub fn publish(&self, snap: Snapshot) {
        self.metrics
            .nodes
            .set(i64::try_from(snap.nodes.len()).unwrap_or(i64::MAX));
        if let Ok(mut s) = self.snapshot.write() {
            *s = snap;
        }
    }

    /// Replaces the snapshot's credits alone.
    pub fn publish_credits(&self, credits: Credits) {
        if let Ok(mut s) = self.snapshot.write() {
            s.credits = credits;
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
