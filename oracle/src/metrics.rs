//! The oracle's Prometheus metrics (prefix `wisp_oracle_`; bounded labels only).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use wisp_protocol::Reason;

/// A verdict label: `accepted` or a reason name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// The verdict.
    pub verdict: &'static str,
}

/// A reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason's stable name.
    pub reason: &'static str,
}

/// Every oracle metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Proofs judged, by verdict (ingest and epoch close).
    pub proofs: Family<VerdictLabel, Counter>,
    /// Publishes that repeated a stored proof (acked again with the original verdict).
    pub duplicates: Counter,
    /// Publishes on topics that name no node.
    pub bad_topic: Counter,
    /// Publishes refused before their signatures verified (dropped, never acked), by reason.
    pub unverified: Family<ReasonLabel, Counter>,
    /// Acks published.
    pub acks_sent: Counter,
    /// Retained messages of the oracle's topics that someone else replaced, put back.
    pub retained_restored: Counter,
    /// Proofs this standby verified and handed to the leader (a cluster's intake).
    pub handed: Counter,
    /// Handed proofs the leader took from the intake.
    pub taken: Counter,
    /// Publishes the leader took from dead members' broker sessions (`service/reaper.rs`).
    pub reaped: Counter,
    /// Dead members' broker sessions the leader reaped.
    pub members_reaped: Counter,
    /// Time to judge and store a batch.
    pub batch_seconds: Histogram,
    /// Epochs closed.
    pub epochs_closed: Counter,
    /// The current epoch.
    pub epoch: Gauge,
    /// Onboarded nodes.
    pub nodes: Gauge,
    /// The embedded broker's refusals, by reason (the broker front).
    pub broker_refused: Family<ReasonLabel, Counter>,
    /// Client connections to the embedded broker open now.
    pub broker_connections: Gauge,
    /// Publishes read from the broker and not yet taken by the precheck stage.
    pub mqtt_backlog: Gauge,
    /// Carriers' usage reports answered at `POST /v1/usage/carrier`, by verdict.
    pub carrier_reports: Family<VerdictLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wisp_oracle");
        let m = Metrics {
            registry: Registry::default(),
            proofs: Family::default(),
            duplicates: Counter::default(),
            bad_topic: Counter::default(),
            unverified: Family::default(),
            acks_sent: Counter::default(),
            retained_restored: Counter::default(),
            handed: Counter::default(),
            taken: Counter::default(),
            reaped: Counter::default(),
            members_reaped: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            epochs_closed: Counter::default(),
            epoch: Gauge::default(),
            nodes: Gauge::default(),
            broker_refused: Family::default(),
            broker_connections: Gauge::default(),
            mqtt_backlog: Gauge::default(),
            carrier_reports: Family::default(),
        };
        registry.register(
            "proofs",
            "Proofs judged, by verdict (accepted or the rejection reason)",
            m.proofs.clone(),
        );
        registry.register(
            "duplicates",
            "Publishes repeating a stored proof",
            m.duplicates.clone(),
        );
        registry.register(
            "bad_topic",
            "Publishes on topics naming no node",
            m.bad_topic.clone(),
        );
        registry.register(
            "unverified",
            "Publishes dropped without an ack because their signatures did not verify (or the cheap checks before them failed), by reason",
            m.unverified.clone(),
        );
        registry.register("acks_sent", "Signed acks published", m.acks_sent.clone());
        registry.register(
            "retained_restored",
            "Messages on the oracle's retained topics (seed, clock, measurer sets) published by anyone else, answered by publishing the oracle's own again",
            m.retained_restored.clone(),
        );
        registry.register(
            "handed",
            "Proofs whose signatures this standby verified, handed to the leader through the database",
            m.handed.clone(),
        );
        registry.register(
            "taken",
            "Proofs verified by standbys that this leader took from the database to judge",
            m.taken.clone(),
        );
        registry.register(
            "reaped",
            "Publishes this leader took from the broker sessions of cluster members not seen for cluster.reap_after_s, to judge as its own",
            m.reaped.clone(),
        );
        registry.register(
            "members_reaped",
            "Broker sessions of dead cluster members this leader emptied and discarded",
            m.members_reaped.clone(),
        );
        registry.register_with_unit(
            "batch",
            "Time to judge and store one batch",
            Unit::Seconds,
            m.batch_seconds.clone(),
        );
        registry.register(
            "epochs_closed",
            "Epochs closed and paid",
            m.epochs_closed.clone(),
        );
        registry.register("epoch", "The current epoch", m.epoch.clone());
        registry.register("nodes", "Onboarded nodes", m.nodes.clone());
        registry.register(
            "broker_refused",
            "Connections the embedded broker refused or closed, by reason (login, client_id, publish, subscribe, will, onboard_rate, connections_per_ip, frame, connect, protocol)",
            m.broker_refused.clone(),
        );
        registry.register(
            "broker_connections",
            "Client connections to the embedded broker open now",
            m.broker_connections.clone(),
        );
        registry.register(
            "mqtt_backlog",
            "Publishes read from the broker and not yet taken by the precheck stage (at most what the broker holds for the oracle's session)",
            m.mqtt_backlog.clone(),
        );
        registry.register(
            "carrier_reports",
            "Carriers' usage reports answered at POST /v1/usage/carrier, by verdict: accepted, the reason of a refusal or rejection, or handed (a standby passed it to the leader)",
            m.carrier_reports.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The counter for a verdict (`None` = accepted).
    pub fn verdict(&self, reason: Option<Reason>) -> Counter {
        let verdict = reason.map_or("accepted", Reason::name);
        self.proofs.get_or_create(&VerdictLabel { verdict }).clone()
    }

    /// The embedded broker's share of these metrics.
    pub fn front(&self) -> FrontMetrics {
        FrontMetrics {
            refused: self.broker_refused.clone(),
            connections: self.broker_connections.clone(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        wisp_shell::exposition::openmetrics_to_prometheus(&out)
    }
}

/// Counters the embedded broker's front keeps (`crate::broker`).
#[derive(Debug, Clone, Default)]
pub struct FrontMetrics {
    /// Connections refused or closed, by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// Client connections open now.
    pub connections: Gauge,
}

impl FrontMetrics {
    pub(crate) fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}
