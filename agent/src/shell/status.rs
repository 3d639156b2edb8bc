//! The status this node shows: the `/status` document and the gauges (refreshed every turn),
//! the retained MQTT status, and the signed `/wisp/status/1` answer.

use rumqttc::QoS;
use wisp_protocol::msg::{DeviceHealth, StatusReport, Versions};
use wisp_protocol::topics;

use super::Daemon;
use crate::VERSION;
use crate::net;
use crate::status::Status;

impl Daemon {
    /// The `/wisp/status/1` answer: a freshly signed report and the witnesses of our beacon,
    /// as an anonymous peer may see them (no GNSS fix, the cell at
    /// `net.status_cell_resolution`; [`net::status::for_anonymous_peer`]).
    pub(super) fn status_response(&self, now: u64) -> Vec<u8> {
        let a = self.core.activity();
        let h = self.device.health();
        let mut report = StatusReport {
            epoch: self.core.epoch().map(|e| e.epoch),
            sent_ms: now,
            uptime_s: self.core.uptime_s(now),
            versions: Versions::new(VERSION, &self.device.firmware_version()),
            cell: self.core.cell(),
            fix: self.core.fix(),
            outbox_depth: u32::try_from(self.outbox.len()).unwrap_or(u32::MAX),
            oldest_unacked_ms: self.outbox.oldest_created_ms(),
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            broker_connected: self.connected,
            peers: u16::try_from(self.p2p_peers).unwrap_or(u16::MAX),
            health: DeviceHealth {
                gnss_ok: h.gnss_ok,
                radio_ok: h.radio_ok,
                secure_element_ok: h.secure_element_ok,
            },
            witnessed_by: self.core.witnessed_by().iter().map(|w| w.witness).collect(),
            backhaul: self.last_backhaul.as_ref().map(|b| b.summary),
        };
        let mut envelopes: Vec<Vec<u8>> = self
            .core
            .witnessed_by()
            .iter()
            .map(|w| w.envelope.clone())
            .collect();
        net::status::for_anonymous_peer(
            &mut report,
            &mut envelopes,
            self.cfg.net.status_cell_resolution,
        );
        net::status::encode_response(self.core.sign(&report).to_bytes(), &envelopes)
    }

    pub(super) fn refresh_gauges(&self, now: u64) {
        let m = &self.metrics;
        m.outbox_entries
            .set(i64::try_from(self.outbox.len()).unwrap_or(i64::MAX));
        m.outbox_bytes
            .set(i64::try_from(self.outbox.bytes()).unwrap_or(i64::MAX));
        m.outbox_in_flight
            .set(i64::try_from(self.outbox.in_flight()).unwrap_or(i64::MAX));
        m.outbox_oldest_age_seconds.set(
            self.outbox
                .oldest_created_ms()
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
        );
        m.uptime_seconds
            .set(i64::try_from(self.core.uptime_s(now)).unwrap_or(i64::MAX));
        let a = self.core.activity();
        let status = Status {
            peer_id: self.key.id().to_string(),
            oracle: self.cfg.oracle.to_string(),
            agent_version: VERSION.into(),
            firmware_version: self.device.firmware_version(),
            uptime_s: self.core.uptime_s(now),
            clock_offset_ms: self.clock.offset_ms(),
            epoch: self.core.epoch().map(|e| e.epoch),
            cell: self.core.cell().map(|c| c.to_string()),
            fix: self.core.fix(),
            outbox_depth: self.outbox.len(),
            outbox_bytes: self.outbox.bytes(),
            outbox_in_flight: self.outbox.in_flight(),
            oldest_unacked_age_s: self
                .outbox
                .oldest_created_ms()
                .map(|t| now.saturating_sub(t) as f64 / 1000.0),
            last_ack_ms: a.last_ack_ms,
            last_beacon_ms: a.last_beacon_ms,
            last_witness_ms: a.last_witness_ms,
            last_heartbeat_ms: a.last_heartbeat_ms,
            heartbeat_seq: self.core.heartbeat_seq(),
            broker_connected: self.connected,
            broker: format!("{}:{}", self.cfg.mqtt.host, self.cfg.mqtt.port),
            broker_error: self.broker.reason(),
            device: self.device.health(),
            p2p_peers: self.p2p_peers,
            p2p_listen: self.p2p_listen.clone(),
            witnessed_by: self
                .core
                .witnessed_by()
                .iter()
                .map(|w| {
                    net::status::WitnessView::new(&w.witness, w.rssi, w.snr, w.freq_khz, w.rx_ms)
                })
                .collect(),
            backhaul: self.last_backhaul.clone(),
        };
        if let Ok(mut s) = self.shared.status.write() {
            *s = status;
        }
    }

    pub(super) async fn refresh_status(&mut self, now: u64) {
        self.refresh_gauges(now);
        if !self.connected {
            return;
        }
        // The retained status is for whoever the broker lets read it, not only this node's
        // operator: no GNSS fix, and the cell as coarse as in the `/wisp/status/1` answer.
        let mut snapshot = self.shared.snapshot();
        snapshot.fix = None;
        snapshot.cell = self
            .core
            .cell()
            .map(|c| c.parent(self.cfg.net.status_cell_resolution).to_string());
        let mut doc = serde_json::to_value(snapshot).unwrap_or_default();
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
