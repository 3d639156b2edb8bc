//! Prometheus metrics (prometheus-client, OpenMetrics text). Names carry the `wisp_` prefix,
//! counters end in `_total`, units in `_seconds` and `_bytes`; labels are bounded sets (kinds,
//! reasons, verdicts), never peer ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// A label with one bounded string value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A message kind.
    pub kind: &'static str,
}

/// A rejection reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason's stable name.
    pub reason: &'static str,
}

/// Why something was refused or ignored.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhyLabel {
    /// A short fixed identifier.
    pub why: &'static str,
}

/// What became of something (a usage receipt).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// A short fixed identifier.
    pub outcome: &'static str,
}

/// A direction of a bandwidth test, seen from this node as prover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `down` (measurer → this node) or `up`.
    pub direction: &'static str,
}

/// Which round-trip time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RttLabel {
    /// `idle` (before the load) or `loaded`.
    pub rtt: &'static str,
}

/// A gossip topic and what happened to a message on it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabel {
    /// The topic name.
    pub topic: &'static str,
    /// `accepted`, `rejected`, `ignored` (received) or `ok`, `duplicate`, `failed` (published).
    pub outcome: &'static str,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Proofs signed, by kind.
    pub proofs_signed: Family<KindLabel, Counter>,
    /// Proofs handed to the MQTT client (first sends and resends).
    pub proofs_published: Counter,
    /// Resends among them.
    pub proofs_resent: Counter,
    /// Proofs the oracle accepted.
    pub proofs_accepted: Counter,
    /// Proofs the oracle rejected, by reason.
    pub proofs_rejected: Family<ReasonLabel, Counter>,
    /// Transient rejections (not judged now: the proof is kept and resent), by reason.
    pub proofs_deferred: Family<ReasonLabel, Counter>,
    /// Proofs waiting for an ack.
    pub outbox_entries: Gauge,
    /// Their bytes.
    pub outbox_bytes: Gauge,
    /// Proofs sent and not yet acked.
    pub outbox_in_flight: Gauge,
    /// Age of the oldest unacked proof.
    pub outbox_oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Proofs evicted to make room, by kind.
    pub outbox_evicted: Family<KindLabel, Counter>,
    /// Proofs refused because the outbox was full of unevictable proofs.
    pub outbox_refused: Counter,
    /// Durable commits.
    pub outbox_commits: Counter,
    /// Commit latency (fsync included).
    pub outbox_commit_seconds: Histogram,
    /// Whether the broker connection is up.
    pub mqtt_connected: Gauge,
    /// Successful connections (reconnects included).
    pub mqtt_connections: Counter,
    /// Oracle messages refused (bad signature, wrong key, wrong node), by message.
    pub oracle_messages_refused: Family<WhyLabel, Counter>,
    /// Radio frames heard but not witnessed, by reason.
    pub radio_frames_ignored: Family<WhyLabel, Counter>,
    /// Beacons transmitted.
    pub beacons_transmitted: Counter,
    /// Seeds whose time disagreed with our clock.
    pub clock_skew_warnings: Counter,
    /// What is added to the system clock to get the oracle's time, seconds.
    pub clock_offset: Gauge<f64, AtomicU64>,
    /// The current epoch.
    pub epoch: Gauge,
    /// Seconds since start.
    pub uptime_seconds: Gauge,
    /// Connected libp2p peers.
    pub p2p_peers: Gauge,
    /// Gossip messages received, by topic and verdict.
    pub gossip_received: Family<GossipLabel, Counter>,
    /// Gossip messages published, by topic and outcome.
    pub gossip_published: Family<GossipLabel, Counter>,
    /// Network events dropped because the daemon was behind.
    pub net_events_dropped: Counter,
    /// `/wisp/status/1` queries answered.
    pub status_queries_served: Counter,
    /// `/wisp/bw/1` requests received, by outcome.
    pub bw_requests: Family<WhyLabel, Counter>,
    /// Bandwidth tests finished, by role and outcome.
    pub bw_tests: Family<WhyLabel, Counter>,
    /// Invitations sent to this node's measurers, by outcome.
    pub bw_invites: Family<WhyLabel, Counter>,
    /// Witnesses of this node's beacon heard about by gossip.
    pub own_beacon_witnesses: Counter,
    /// The latest bandwidth test as prover: the median rate of each direction, bytes per
    /// second (0 when that direction has no figure).
    pub backhaul_rate: Family<DirectionLabel, Gauge<f64, AtomicU64>>,
    /// Its round-trip times, seconds (0 when not measured).
    pub backhaul_rtt: Family<RttLabel, Gauge<f64, AtomicU64>>,
    /// 1 when it measured every direction, else 0.
    pub backhaul_ok: Gauge,
    /// When it ended, Unix seconds.
    pub backhaul_last_test: Gauge,
    /// Subscribers' usage receipts answered, by outcome (`agreed`, `disputed`, `refused`).
    pub usage_receipts: Family<OutcomeLabel, Counter>,
    /// Usage receipts refused, by reason.
    pub usage_refused: Family<ReasonLabel, Counter>,
    /// Clients tracked, each with at most one session.
    pub usage_sessions: Gauge,
    /// Decisions to block a client, by why (`uncovered`, `unsigned`, `refused`).
    pub usage_blocks: Family<WhyLabel, Counter>,
    /// Clients evicted to make room for a new one.
    pub usage_sessions_evicted: Counter,
    /// Co-signed usage receipts handed to the outbox (one per session per epoch).
    pub usage_receipts_sent: Counter,
    /// Counter reads that failed, by why (`bad_line`, `exit_status`, `timeout`, `too_long`,
    /// `run`).
    pub usage_counter_errors: Family<WhyLabel, Counter>,
    /// Enforcement hook runs, by outcome (`ok`, `failed`, `dropped`).
    pub usage_hook_runs: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::with_prefix("wisp");
        let m = Metrics {
            proofs_signed: Family::default(),
            proofs_published: Counter::default(),
            proofs_resent: Counter::default(),
            proofs_accepted: Counter::default(),
            proofs_rejected: Family::default(),
            proofs_deferred: Family::default(),
            outbox_entries: Gauge::default(),
            outbox_bytes: Gauge::default(),
            outbox_in_flight: Gauge::default(),
            outbox_oldest_age_seconds: Gauge::default(),
            outbox_evicted: Family::default(),
            outbox_refused: Counter::default(),
            outbox_commits: Counter::default(),
            outbox_commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            mqtt_connected: Gauge::default(),
            mqtt_connections: Counter::default(),
            oracle_messages_refused: Family::default(),
            radio_frames_ignored: Family::default(),
            beacons_transmitted: Counter::default(),
            clock_skew_warnings: Counter::default(),
            clock_offset: Gauge::default(),
            epoch: Gauge::default(),
            uptime_seconds: Gauge::default(),
            p2p_peers: Gauge::default(),
            gossip_received: Family::default(),
            gossip_published: Family::default(),
            net_events_dropped: Counter::default(),
            status_queries_served: Counter::default(),
            bw_requests: Family::default(),
            bw_tests: Family::default(),
            bw_invites: Family::default(),
            own_beacon_witnesses: Counter::default(),
            backhaul_rate: Family::default(),
            backhaul_rtt: Family::default(),
            backhaul_ok: Gauge::default(),
            backhaul_last_test: Gauge::default(),
            usage_receipts: Family::default(),
            usage_refused: Family::default(),
            usage_sessions: Gauge::default(),
            usage_blocks: Family::default(),
            usage_sessions_evicted: Counter::default(),
            usage_receipts_sent: Counter::default(),
            usage_counter_errors: Family::default(),
            usage_hook_runs: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "proofs_signed",
            "Proofs signed, by kind",
            m.proofs_signed.clone(),
        );
        registry.register(
            "proofs_published",
            "Proof publishes handed to the MQTT client, resends included",
            m.proofs_published.clone(),
        );
        registry.register(
            "proofs_resent",
            "Proofs published again for want of an ack",
            m.proofs_resent.clone(),
        );
        registry.register(
            "proofs_accepted",
            "Proofs the oracle acked as accepted",
            m.proofs_accepted.clone(),
        );
        registry.register(
            "proofs_rejected",
            "Proofs the oracle rejected, by reason",
            m.proofs_rejected.clone(),
        );
        registry.register(
            "proofs_deferred",
            "Transient rejections (rate_limited): the proof is kept and resent, by reason",
            m.proofs_deferred.clone(),
        );
        registry.register(
            "outbox_entries",
            "Proofs waiting in the outbox for an oracle ack",
            m.outbox_entries.clone(),
        );
        registry.register_with_unit(
            "outbox",
            "Envelope bytes waiting in the outbox",
            Unit::Bytes,
            m.outbox_bytes.clone(),
        );
        registry.register(
            "outbox_in_flight",
            "Proofs sent and not yet acked",
            m.outbox_in_flight.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest proof waiting for an ack",
            Unit::Seconds,
            m.outbox_oldest_age_seconds.clone(),
        );
        registry.register(
            "outbox_evicted",
            "Proofs evicted from a full outbox, by kind",
            m.outbox_evicted.clone(),
        );
        registry.register(
            "outbox_refused",
            "New proofs refused because the outbox was full",
            m.outbox_refused.clone(),
        );
        registry.register(
            "outbox_commits",
            "Durable outbox transactions",
            m.outbox_commits.clone(),
        );
        registry.register_with_unit(
            "outbox_commit",
            "Outbox commit latency, fsync included",
            Unit::Seconds,
            m.outbox_commit_seconds.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_connections",
            "Successful broker connections",
            m.mqtt_connections.clone(),
        );
        registry.register(
            "oracle_messages_refused",
            "Acks or seeds refused (invalid, not signed by the pinned oracle, not for this node)",
            m.oracle_messages_refused.clone(),
        );
        registry.register(
            "radio_frames_ignored",
            "Radio frames heard but not witnessed, by reason",
            m.radio_frames_ignored.clone(),
        );
        registry.register(
            "beacons_transmitted",
            "Beacons handed to the radio",
            m.beacons_transmitted.clone(),
        );
        registry.register(
            "clock_skew_warnings",
            "Epoch seeds whose start disagreed with the local clock",
            m.clock_skew_warnings.clone(),
        );
        registry.register_with_unit(
            "clock_offset",
            "Correction applied to the system clock, from the oracle's signed clock",
            Unit::Seconds,
            m.clock_offset.clone(),
        );
        registry.register("epoch", "The current epoch number", m.epoch.clone());
        registry.register_with_unit(
            "uptime",
            "Time since the agent started",
            Unit::Seconds,
            m.uptime_seconds.clone(),
        );
        registry.register("p2p_peers", "Connected libp2p peers", m.p2p_peers.clone());
        registry.register(
            "gossip_received",
            "Gossip messages received, by topic and verdict (rejected ones penalise the sender)",
            m.gossip_received.clone(),
        );
        registry.register(
            "gossip_published",
            "Gossip messages published, by topic and outcome",
            m.gossip_published.clone(),
        );
        registry.register(
            "net_events_dropped",
            "Network events dropped because the daemon loop was behind",
            m.net_events_dropped.clone(),
        );
        registry.register(
            "status_queries_served",
            "Signed status reports served over /wisp/status/1",
            m.status_queries_served.clone(),
        );
        registry.register(
            "bw_requests",
            "Bandwidth-test messages received over /wisp/bw/1 (invitations and requests), by outcome",
            m.bw_requests.clone(),
        );
        registry.register(
            "bw_tests",
            "Bandwidth tests finished, by role and outcome",
            m.bw_tests.clone(),
        );
        registry.register(
            "bw_invites",
            "Invitations sent to this node's assigned measurers, by outcome",
            m.bw_invites.clone(),
        );
        registry.register(
            "own_beacon_witnesses",
            "Witnesses of this node's beacon received by gossip",
            m.own_beacon_witnesses.clone(),
        );
        registry.register(
            "backhaul_rate_bytes_per_second",
            "This node's latest bandwidth test as prover: the median IP-layer rate of each direction (0: no figure)",
            m.backhaul_rate.clone(),
        );
        registry.register_with_unit(
            "backhaul_rtt",
            "This node's latest bandwidth test as prover: idle and loaded round-trip times (0: not measured)",
            Unit::Seconds,
            m.backhaul_rtt.clone(),
        );
        registry.register(
            "backhaul_ok",
            "1 when this node's latest bandwidth test as prover measured every direction",
            m.backhaul_ok.clone(),
        );
        registry.register(
            "backhaul_last_test_timestamp_seconds",
            "When this node's latest bandwidth test as prover ended (Unix time)",
            m.backhaul_last_test.clone(),
        );
        registry.register(
            "usage_receipts",
            "Subscribers' usage receipts answered over /wisp/usage/1, by outcome (agreed ones are co-signed)",
            m.usage_receipts.clone(),
        );
        registry.register(
            "usage_refused",
            "Usage receipts refused, by reason",
            m.usage_refused.clone(),
        );
        registry.register(
            "usage_sessions",
            "Clients whose usage is tracked, each with at most one session",
            m.usage_sessions.clone(),
        );
        registry.register(
            "usage_blocks",
            "Decisions to stop serving a client, by why",
            m.usage_blocks.clone(),
        );
        registry.register(
            "usage_sessions_evicted",
            "Clients evicted from the usage table to make room for a new one",
            m.usage_sessions_evicted.clone(),
        );
        registry.register(
            "usage_receipts_sent",
            "Co-signed usage receipts handed to the outbox (one per session per epoch)",
            m.usage_receipts_sent.clone(),
        );
        registry.register(
            "usage_counter_errors",
            "Failed reads of the per-client usage counters, by why (a bad line of the counter program's output, its exit status, ...)",
            m.usage_counter_errors.clone(),
        );
        registry.register(
            "usage_hook_runs",
            "Runs of the usage enforcement hook, by outcome (failed ones are retried with the next decision)",
            m.usage_hook_runs.clone(),
        );
        let info: Family<BuildLabel, Gauge> = Family::default();
        info.get_or_create(&BuildLabel {
            version: version.to_string(),
        })
        .set(1);
        registry.register("build_info", "Agent version", info);
        Metrics { registry, ..m }
    }

    /// Counts the answer to a usage receipt.
    pub fn record_usage_answer(&self, answer: &wisp_protocol::msg::UsageAnswer) {
        use wisp_protocol::msg::UsageAnswer;
        let outcome = match answer {
            UsageAnswer::Agreed { .. } => "agreed",
            UsageAnswer::Disputed { .. } => "disputed",
            UsageAnswer::Refused { reason } => {
                let reason = wisp_protocol::Reason::from_code(*reason).name();
                self.usage_refused
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
                "refused"
            }
        };
        self.usage_receipts
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a decision of the usage core (only blocks are counted).
    pub fn record_usage_decision(&self, decision: &wisp_agent_core::usage::Decision) {
        if let wisp_agent_core::usage::Decision::Block(_, why) = decision {
            self.usage_blocks
                .get_or_create(&WhyLabel { why: why.name() })
                .inc();
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format 0.0.4 (what `promtool check metrics` and older scrapers read):
    /// the OpenMetrics output with counter families named with their `_total` suffix, and
    /// without the `# UNIT` and `# EOF` lines that format lacks.
    pub fn encode_prometheus(&self) -> String {
        wisp_shell::exposition::openmetrics_to_prometheus(&self.encode())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_conventions() {
        let m = Metrics::new("0.1.0");
        m.proofs_signed
            .get_or_create(&KindLabel { kind: "heartbeat" })
            .inc();
        m.outbox_bytes.set(123);
        let text = m.encode();
        assert!(
            text.contains("wisp_proofs_signed_total{kind=\"heartbeat\"} 1"),
            "{text}"
        );
        assert!(text.contains("wisp_outbox_bytes 123"), "{text}");
        assert!(text.contains("wisp_outbox_commit_seconds_bucket"), "{text}");
        assert!(text.contains("wisp_uptime_seconds"), "{text}");
        assert!(
            text.contains("wisp_build_info{version=\"0.1.0\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    /// Writes the exposition, with every family populated, for `promtool check metrics` (run by
    /// .ci/run): `WISP_METRICS_SAMPLE=path cargo test -p wisp-agent metrics_sample`.
    #[test]
    fn metrics_sample() {
        let m = Metrics::new("0.1.0");
        m.proofs_signed
            .get_or_create(&KindLabel { kind: "heartbeat" })
            .inc();
        m.proofs_rejected
            .get_or_create(&ReasonLabel {
                reason: "rssi_too_strong",
            })
            .inc();
        m.proofs_deferred
            .get_or_create(&ReasonLabel {
                reason: "rate_limited",
            })
            .inc();
        m.outbox_evicted
            .get_or_create(&KindLabel { kind: "heartbeat" })
            .inc();
        m.oracle_messages_refused
            .get_or_create(&WhyLabel { why: "ack" })
            .inc();
        m.radio_frames_ignored
            .get_or_create(&WhyLabel { why: "duplicate" })
            .inc();
        m.outbox_commit_seconds.observe(0.002);
        m.outbox_oldest_age_seconds.set(1.5);
        for label in [
            GossipLabel {
                topic: "wisp/poc/1",
                outcome: "accepted",
            },
            GossipLabel {
                topic: "wisp/poc/1",
                outcome: "rejected",
            },
        ] {
            m.gossip_received.get_or_create(&label).inc();
            m.gossip_published.get_or_create(&label).inc();
        }
        m.bw_requests
            .get_or_create(&WhyLabel { why: "refused" })
            .inc();
        m.backhaul_rate
            .get_or_create(&DirectionLabel { direction: "down" })
            .set(11_750_000.0);
        m.backhaul_rtt
            .get_or_create(&RttLabel { rtt: "loaded" })
            .set(0.041);
        m.backhaul_ok.set(1);
        m.backhaul_last_test.set(1_790_000_090);
        m.record_usage_answer(&wisp_protocol::msg::UsageAnswer::Agreed { seq: 1 });
        m.record_usage_answer(&wisp_protocol::msg::UsageAnswer::Refused {
            reason: wisp_protocol::Reason::UsageRoleMismatch.code(),
        });
        m.record_usage_decision(&wisp_agent_core::usage::Decision::Block(
            wisp_protocol::SubscriberId(wisp_protocol::NodeId([7; 32])),
            wisp_agent_core::usage::BlockWhy::Uncovered { bytes: 1 },
        ));
        m.usage_sessions.set(1);
        m.usage_sessions_evicted.inc();
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE wisp_proofs_signed_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP wisp_proofs_signed_total Proofs signed"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE wisp_outbox_commit_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(
            text.contains("wisp_backhaul_rate_bytes_per_second{direction=\"down\"} 11750000"),
            "{text}"
        );
        assert!(
            text.contains("wisp_backhaul_rtt_seconds{rtt=\"loaded\"} 0.041"),
            "{text}"
        );
        for line in [
            "wisp_usage_receipts_total{outcome=\"agreed\"} 1",
            "wisp_usage_receipts_total{outcome=\"refused\"} 1",
            "wisp_usage_refused_total{reason=\"usage_role_mismatch\"} 1",
            "wisp_usage_blocks_total{why=\"uncovered\"} 1",
            "wisp_usage_sessions 1",
            "wisp_usage_sessions_evicted_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        if let Ok(path) = std::env::var("WISP_METRICS_SAMPLE") {
            std::fs::write(path, text).unwrap();
        }
    }
}
