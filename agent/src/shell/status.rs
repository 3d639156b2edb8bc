//! The status this node shows. [`Daemon::snapshot`] reads every field once into a
//! [`Snapshot`]; the `/status` document, the gauges (both refreshed every turn), the retained
//! MQTT status and the signed `/wisp/status/1` answer are all made from one, so no field is
//! filled two ways.

use rumqttc::QoS;
use wisp_protocol::NodeId;
use wisp_protocol::geo::Cell;
use wisp_protocol::msg::{BackhaulOutcome, GnssFix, StatusReport, Versions};
use wisp_protocol::topics;
use wisp_protocol::units::EpochNo;

use super::Daemon;
use crate::VERSION;
use crate::core::{Activity, WitnessSeen};
use crate::metrics::{DirectionLabel, Metrics, RttLabel};
use crate::net;
use crate::status::{BackhaulStatus, DeviceChecks, Status};

/// What this node says about itself at one moment, read from the daemon once.
pub(super) struct Snapshot<'a> {
    /// When it was taken (Unix ms, the oracle's clock).
    now: u64,
    peer_id: NodeId,
    oracle: NodeId,
    firmware_version: String,
    uptime_s: u64,
    clock_offset_ms: i64,
    epoch: Option<EpochNo>,
    /// The asserted cell, at its full resolution.
    cell: Option<Cell>,
    fix: Option<GnssFix>,
    outbox_depth: usize,
    outbox_bytes: usize,
    outbox_in_flight: usize,
    /// When the oldest unacked proof was signed (Unix ms).
    oldest_unacked_ms: Option<u64>,
    activity: Activity,
    heartbeat_seq: u64,
    broker_connected: bool,
    /// The broker, `host:port`.
    broker: String,
    broker_error: Option<String>,
    device: DeviceChecks,
    p2p_peers: usize,
    p2p_listen: &'a [String],
    witnessed_by: &'a [WitnessSeen],
    backhaul: Option<&'a BackhaulStatus>,
}

impl Snapshot<'_> {
    /// The age of the oldest unacked proof, seconds.
    fn oldest_unacked_age_s(&self) -> Option<f64> {
        self.oldest_unacked_ms
            .map(|t| self.now.saturating_sub(t) as f64 / 1000.0)
    }

    /// The `/status` document, for this node's operator (the full fix and cell).
    fn status(&self) -> Status {
        let a = self.activity;
        Status {
            peer_id: self.peer_id.to_string(),
            oracle: self.oracle.to_string(),
            agent_version: VERSION.into(),
            firmware_version: self.firmware_version.clone(),
            uptime_s: self.uptime_s,
            clock_offset_ms: self.clock_offset_ms,
            epoch: self.epoch,
            cell: self.cell.map(|c| c.to_string()),
            fix: self.fix,
            outbox_depth: self.outbox_depth,
            outbox_bytes: self.outbox_bytes,
            outbox_in_flight: self.outbox_in_flight,
            oldest_unacked_age_s: self.oldest_unacked_age_s(),
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            heartbeat_seq: self.heartbeat_seq,
            broker_connected: self.broker_connected,
            broker: self.broker.clone(),
            broker_error: self.broker_error.clone(),
            device: self.device.into(),
            p2p_peers: self.p2p_peers,
            p2p_listen: self.p2p_listen.to_vec(),
            witnessed_by: self
                .witnessed_by
                .iter()
                .map(|w| {
                    net::status::WitnessView::new(&w.witness, w.rssi, w.snr, w.freq_khz, w.rx_ms)
                })
                .collect(),
            backhaul: self.backhaul.cloned(),
        }
    }

    /// The status report to sign, with the witnesses of our beacon (their envelopes), before
    /// [`net::status::for_anonymous_peer`] makes them fit for a peer.
    fn report(&self) -> (StatusReport, Vec<Vec<u8>>) {
        let a = self.activity;
        let report = StatusReport {
            epoch: self.epoch,
            sent_ms: self.now,
            uptime_s: self.uptime_s,
            versions: Versions::new(VERSION, &self.firmware_version),
            cell: self.cell,
            fix: self.fix,
            outbox_depth: u32::try_from(self.outbox_depth).unwrap_or(u32::MAX),
            oldest_unacked_ms: self.oldest_unacked_ms,
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            broker_connected: self.broker_connected,
            peers: u16::try_from(self.p2p_peers).unwrap_or(u16::MAX),
            health: self.device.health(),
            witnessed_by: self.witnessed_by.iter().map(|w| w.witness).collect(),
            backhaul: self.backhaul.map(|b| b.summary),
        };
        let envelopes = self
            .witnessed_by
            .iter()
            .map(|w| w.envelope.clone())
            .collect();
        (report, envelopes)
    }

    /// Sets the gauges: the outbox's, the uptime, and the `wisp_backhaul_*` ones to the latest
    /// test of this node as prover, once there is one (a direction without a figure reads 0).
    fn set_gauges(&self, m: &Metrics) {
        m.outbox_entries
            .set(i64::try_from(self.outbox_depth).unwrap_or(i64::MAX));
        m.outbox_bytes
            .set(i64::try_from(self.outbox_bytes).unwrap_or(i64::MAX));
        m.outbox_in_flight
            .set(i64::try_from(self.outbox_in_flight).unwrap_or(i64::MAX));
        m.outbox_oldest_age_seconds
            .set(self.oldest_unacked_age_s().unwrap_or(0.0));
        m.uptime_seconds
            .set(i64::try_from(self.uptime_s).unwrap_or(i64::MAX));
        let Some(b) = self.backhaul else { return };
        let s = &b.summary;
        for (direction, bps) in [("down", s.down_bps), ("up", s.up_bps)] {
            m.backhaul_rate
                .get_or_create(&DirectionLabel { direction })
                .set(bps.map_or(0.0, |b| b as f64 / 8.0));
        }
        for (rtt, us) in [("idle", s.rtt_idle_us), ("loaded", s.rtt_loaded_us)] {
            m.backhaul_rtt
                .get_or_create(&RttLabel { rtt })
                .set(us.map_or(0.0, |u| f64::from(u) / 1e6));
        }
        m.backhaul_ok
            .set(i64::from(s.outcome == BackhaulOutcome::Ok));
        m.backhaul_last_test
            .set(i64::try_from(s.measured_ms / 1000).unwrap_or(i64::MAX));
    }
}

impl Daemon {
    /// Reads what this node says about itself, once.
    pub(super) fn snapshot(&self, now: u64) -> Snapshot<'_> {
        Snapshot {
            now,
            peer_id: self.key.id(),
            oracle: self.cfg.oracle,
            firmware_version: self.device.firmware_version(),
            uptime_s: self.core.uptime_s(now),
            clock_offset_ms: self.clock.offset_ms(),
            epoch: self.core.epoch().map(|e| e.epoch),
            cell: self.core.cell(),
            fix: self.core.fix(),
            outbox_depth: self.outbox.len(),
            outbox_bytes: self.outbox.bytes(),
            outbox_in_flight: self.outbox.in_flight(),
            oldest_unacked_ms: self.outbox.oldest_created_ms(),
            activity: self.core.activity(),
            heartbeat_seq: self.core.heartbeat_seq(),
            broker_connected: self.connected,
            broker: format!(
                "{}:{}",
                self.cfg.mqtt.broker.host, self.cfg.mqtt.broker.port
            ),
            broker_error: self.broker.reason(),
            device: self.device.health(),
            p2p_peers: self.p2p_peers,
            p2p_listen: &self.p2p_listen,
            witnessed_by: self.core.witnessed_by(),
            backhaul: self.last_backhaul.as_ref(),
        }
    }

    /// The `/wisp/status/1` answer: a freshly signed report and the witnesses of our beacon,
    /// as an anonymous peer may see them (no GNSS fix, the cell at
    /// `net.status_cell_resolution`; [`net::status::for_anonymous_peer`]).
    pub(super) fn status_response(&self, now: u64) -> Vec<u8> {
        let (mut report, mut envelopes) = self.snapshot(now).report();
        net::status::for_anonymous_peer(
            &mut report,
            &mut envelopes,
            self.cfg.net.status_cell_resolution,
        );
        net::status::encode_response(self.core.sign(&report).to_bytes(), &envelopes)
    }

    /// Sets the gauges and the `/status` document from a fresh snapshot.
    pub(super) fn refresh_gauges(&self, now: u64) {
        self.show(&self.snapshot(now));
    }

    fn show(&self, snapshot: &Snapshot<'_>) {
        snapshot.set_gauges(&self.metrics);
        let status = snapshot.status();
        if let Ok(mut s) = self.shared.status.write() {
            *s = status;
        }
    }

    pub(super) async fn refresh_status(&mut self, now: u64) {
        let snapshot = self.snapshot(now);
        self.show(&snapshot);
        if !self.connected {
            return;
        }
        // The retained status is for whoever the broker lets read it, not only this node's
        // operator: no GNSS fix, and the cell as coarse as in the `/wisp/status/1` answer.
        let mut status = snapshot.status();
        status.fix = None;
        status.cell = snapshot
            .cell
            .map(|c| c.parent(self.cfg.net.status_cell_resolution).to_string());
        let mut doc = serde_json::to_value(status).unwrap_or_default();
        if let Some(o) = doc.as_object_mut() {
            o.insert("state".into(), "online".into());
        }
        let _ = self.client.try_publish(
            topics::status(&self.key.id()),
            QoS::AtLeastOnce,
            true,
            doc.to_string().into_bytes(),
        );
    }
}
