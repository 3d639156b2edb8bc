//! The status server for operators and monitors: `/status` (JSON), `/metrics` (Prometheus),
//! `/healthz` (the daemon's loop is turning) and `/readyz` (it can deliver proofs; when not, the
//! body says why, e.g. the broker's URL and the last connection error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use wisp_protocol::msg::{BackhaulSummary, DeviceHealth, GnssFix};

use crate::metrics::Metrics;

/// The `/status` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// This node's peer id.
    pub peer_id: String,
    /// The pinned oracle's peer id.
    pub oracle: String,
    /// Agent version.
    pub agent_version: String,
    /// Device backend and version.
    pub firmware_version: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Milliseconds added to the system clock to get the oracle's time (from the oracle's
    /// signed clock; 0 when in step).
    pub clock_offset_ms: i64,
    /// The current epoch, once a seed arrived.
    pub epoch: Option<u64>,
    /// The asserted H3 cell.
    pub cell: Option<String>,
    /// The latest GNSS fix.
    pub fix: Option<GnssFix>,
    /// Proofs waiting for an ack.
    pub outbox_depth: usize,
    /// Their bytes.
    pub outbox_bytes: usize,
    /// Sent and not acked.
    pub outbox_in_flight: usize,
    /// Age of the oldest unacked proof, seconds.
    pub oldest_unacked_age_s: Option<f64>,
    /// Last valid oracle ack (Unix ms).
    pub last_ack_ms: Option<u64>,
    /// Last beacon (Unix ms).
    pub last_beacon_ms: Option<u64>,
    /// Last witness (Unix ms).
    pub last_witness_ms: Option<u64>,
    /// Last heartbeat (Unix ms).
    pub last_heartbeat_ms: Option<u64>,
    /// The last heartbeat sequence number.
    pub heartbeat_seq: u64,
    /// Broker connection up.
    pub broker_connected: bool,
    /// The broker, `host:port`.
    pub broker: String,
    /// Why the broker is not connected (its URL, the last error, the failed attempts); absent
    /// while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_error: Option<String>,
    /// Device health.
    pub device: DeviceStatus,
    /// Connected libp2p peers.
    pub p2p_peers: usize,
    /// The libp2p listen addresses, with `/p2p/<peer id>`.
    pub p2p_listen: Vec<String>,
    /// Who witnessed this node's beacon in the current epoch (gossiped witnesses, at most 32).
    pub witnessed_by: Vec<crate::net::status::WitnessView>,
    /// This node's latest bandwidth test as prover (whichever measurer ran it), once one ended
    /// since the start.
    #[serde(default)]
    pub backhaul: Option<BackhaulStatus>,
}

/// The latest bandwidth test as prover, in `/status`: the summary the signed status report
/// carries (rates in bit/s, RTTs in µs, `outcome` `"ok"`, `{"failed": reason}` or
/// `"incomplete"`), and why the session broke off, when it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackhaulStatus {
    /// The summary.
    #[serde(flatten)]
    pub summary: BackhaulSummary,
    /// Why the prover's session ended early (the prover's own account), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Device health in the status: what was checked, part by part, and the same as the signed
/// status report's flags (each `true` only when its part's last check passed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceStatus {
    /// The GNSS receiver's last check passed: it delivered a fix.
    pub gnss_ok: bool,
    /// The radio's last check passed: its last transmission went out.
    pub radio_ok: bool,
    /// The secure element's last check passed: its last attestation was signed.
    pub secure_element_ok: bool,
    /// Each part's last check, `"not_checked"` for a part nothing has exercised since the
    /// start (or that the device does not have).
    #[serde(default)]
    pub checks: DeviceChecks,
}

impl From<DeviceChecks> for DeviceStatus {
    fn from(checks: DeviceChecks) -> Self {
        let h = checks.health();
        DeviceStatus {
            gnss_ok: h.gnss_ok,
            radio_ok: h.radio_ok,
            secure_element_ok: h.secure_element_ok,
            checks,
        }
    }
}

/// How a part of the device fared when it was last used: the only evidence of its health the
/// agent has (nothing probes the parts on a schedule).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Not exercised since the agent started, or not on this device.
    #[default]
    NotChecked,
    /// It worked the last time it was used.
    Passed,
    /// It failed the last time it was used.
    Failed,
}

impl Check {
    /// The outcome of one use of the part.
    pub fn of<T, E>(result: &Result<T, E>) -> Check {
        if result.is_ok() {
            Check::Passed
        } else {
            Check::Failed
        }
    }

    /// Whether the last check passed (not checked is not passed).
    pub fn passed(self) -> bool {
        self == Check::Passed
    }
}

/// The last check of each part of the device ([`crate::device::DeviceIo::health`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceChecks {
    /// The GNSS receiver: passed on a fix, failed on a read error.
    pub gnss: Check,
    /// The radio: passed on a transmission that went out (on the Linux device also when
    /// hostapd answered at start), failed on one that did not or on a receive error.
    pub radio: Check,
    /// The secure element: passed on an attestation signed, failed when the element did not
    /// sign.
    pub secure_element: Check,
    /// The radio's receive path, on devices that scan for beacons (`device.kind = "linux"`):
    /// passed on a completed nl80211 scan, failed on one the kernel refused or did not finish.
    /// Not in the signed report's flags (`radio_ok` is the transmit side).
    #[serde(default)]
    pub receive: Check,
    /// The button, on devices with one (`device.button_gpiochip`): passed on a read of its
    /// line, failed on a read error. Not in the signed report's flags.
    #[serde(default)]
    pub button: Check,
}

impl DeviceChecks {
    /// The flags of the signed status report: `true` only for a part whose last check passed,
    /// so a part never checked reads as not ok, as one that is absent or failing does.
    pub fn health(&self) -> DeviceHealth {
        DeviceHealth {
            gnss_ok: self.gnss.passed(),
            radio_ok: self.radio.passed(),
            secure_element_ok: self.secure_element.passed(),
        }
    }
}

/// What the server reads; the daemon writes it.
#[derive(Debug)]
pub struct Shared {
    /// The latest status.
    pub status: RwLock<Status>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Monotonic ms of the daemon loop's last turn.
    pub last_tick_ms: AtomicU64,
    /// Monotonic clock origin.
    pub origin: std::time::Instant,
}

impl Shared {
    /// New shared state.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Shared> {
        Arc::new(Shared {
            status: RwLock::new(Status::default()),
            metrics,
            last_tick_ms: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        })
    }

    /// Marks a loop turn.
    pub fn tick(&self) {
        self.last_tick_ms.store(self.mono_ms(), Ordering::Relaxed);
    }

    fn mono_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A copy of the status.
    pub fn snapshot(&self) -> Status {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The HTTP routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

async fn status(State(s): State<Arc<Shared>>) -> Json<Status> {
    Json(s.snapshot())
}

/// OpenMetrics for scrapers that ask for it, the Prometheus text format otherwise.
async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.encode_prometheus(),
        )
            .into_response()
    }
}

/// Healthy while the daemon loop turned within the last 10 s (it turns at least every second).
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let age = s
        .mono_ms()
        .saturating_sub(s.last_tick_ms.load(Ordering::Relaxed));
    if age <= 10_000 {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("daemon loop stalled for {age} ms\n"),
        )
            .into_response()
    }
}

/// Ready when proofs can be delivered: connected to the broker with an epoch seed.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let st = s.snapshot();
    let mut missing = Vec::new();
    if !st.broker_connected {
        missing.push(
            st.broker_error
                .unwrap_or_else(|| format!("MQTT broker {} not connected", st.broker)),
        );
    }
    if st.epoch.is_none() {
        missing.push("no epoch seed from the oracle yet".into());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_from_before_the_checks_still_reads() {
        let old = r#"{"gnss_ok":true,"radio_ok":true,"secure_element_ok":false}"#;
        let s: DeviceStatus = serde_json::from_str(old).unwrap();
        assert!(s.gnss_ok && s.radio_ok && !s.secure_element_ok);
        assert_eq!(s.checks, DeviceChecks::default());
    }

    #[test]
    fn only_a_passed_check_is_ok() {
        for (check, ok) in [
            (Check::NotChecked, false),
            (Check::Failed, false),
            (Check::Passed, true),
        ] {
            let h = DeviceChecks {
                gnss: check,
                radio: check,
                secure_element: check,
                receive: check,
                button: check,
            }
            .health();
            assert_eq!(
                (h.gnss_ok, h.radio_ok, h.secure_element_ok),
                (ok, ok, ok),
                "{check:?}"
            );
        }
    }
}
