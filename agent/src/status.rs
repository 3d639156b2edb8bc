//! The status server for operators and monitors: `/status` (JSON), `/metrics` (Prometheus),
//! `/healthz` (the daemon's loop is turning) and `/readyz` (it can deliver proofs; when not, the
//! body says why, e.g. the broker's URL and the last connection error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use wisp_protocol::msg::{BackhaulSummary, DeviceHealth, GnssFix};

use crate::http::{Request, Response};
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

/// A route's handler.
type Handler = fn(&Shared, &Request) -> Response;

/// The paths served, each with its handler.
const ROUTES: [(&str, Handler); 4] = [
    ("/status", status),
    ("/metrics", metrics),
    ("/healthz", healthz),
    ("/readyz", readyz),
];

/// Answers a request to the status server ([`crate::http::serve`]): 404 for an unknown path,
/// 405 for a method other than GET or HEAD.
pub fn respond(shared: &Shared, req: &Request) -> Response {
    let Some((_, route)) = ROUTES.iter().find(|(path, _)| *path == req.path) else {
        return Response::not_found();
    };
    if !req.is_read() {
        return Response::method_not_allowed();
    }
    route(shared, req)
}

fn status(s: &Shared, _: &Request) -> Response {
    match serde_json::to_vec(&s.snapshot()) {
        Ok(body) => Response::new(200, "application/json", body),
        Err(e) => Response::text(500, format!("cannot encode the status: {e}\n")),
    }
}

/// OpenMetrics for scrapers that ask for it, the Prometheus text format otherwise.
fn metrics(s: &Shared, req: &Request) -> Response {
    let wants_openmetrics = req
        .header("accept")
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        Response::new(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            s.metrics.encode(),
        )
    } else {
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            s.metrics.encode_prometheus(),
        )
    }
}

/// Healthy while the daemon loop turned within the last 10 s (it turns at least every second).
fn healthz(s: &Shared, _: &Request) -> Response {
    let age = s
        .mono_ms()
        .saturating_sub(s.last_tick_ms.load(Ordering::Relaxed));
    if age <= 10_000 {
        Response::text(200, "ok\n")
    } else {
        Response::text(503, format!("daemon loop stalled for {age} ms\n"))
    }
}

/// Ready when proofs can be delivered: connected to the broker with an epoch seed.
fn readyz(s: &Shared, _: &Request) -> Response {
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
        Response::text(200, "ready\n")
    } else {
        Response::text(503, format!("not ready: {}\n", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One request to the server at `addr`: the status line, the `Content-Type` and the body.
    async fn ask(addr: std::net::SocketAddr, request: &str) -> (String, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().to_string();
        let content_type = lines
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or_default()
            .to_string();
        (status, content_type, body.to_string())
    }

    #[tokio::test]
    async fn the_routes_answer_over_tcp() {
        let shared = Shared::new(Arc::new(Metrics::new("test")));
        shared.tick();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = shared.clone();
        tokio::spawn(crate::http::serve(listener, move |r| respond(&s, r)));
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");

        let (status, ty, body) = ask(addr, &get("/status")).await;
        assert_eq!(
            (status.as_str(), ty.as_str()),
            ("HTTP/1.1 200 OK", "application/json")
        );
        assert_eq!(
            serde_json::from_str::<Status>(&body).unwrap(),
            Status::default()
        );

        let (status, ty, body) = ask(addr, &get("/metrics")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(ty, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!body.contains("# EOF"), "{body}");
        let openmetrics = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; \
                           version=1.0.0\r\n\r\n";
        let (status, ty, body) = ask(addr, openmetrics).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            ty,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");

        let text = "text/plain; charset=utf-8".to_string();
        let ok = |b: &str| ("HTTP/1.1 200 OK".to_string(), text.clone(), b.to_string());
        assert_eq!(ask(addr, &get("/healthz")).await, ok("ok\n"));
        let (status, ty, body) = ask(addr, &get("/readyz")).await;
        assert_eq!(
            (status.as_str(), &ty),
            ("HTTP/1.1 503 Service Unavailable", &text)
        );
        assert!(body.contains("no epoch seed"), "{body}");
        {
            let mut st = shared.status.write().unwrap();
            st.broker_connected = true;
            st.epoch = Some(7);
        }
        assert_eq!(ask(addr, &get("/readyz")).await, ok("ready\n"));

        let (status, ..) = ask(addr, "POST /status HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        let (status, ..) = ask(addr, &get("/")).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    }

    #[test]
    fn a_stalled_loop_is_unhealthy() {
        let shared = Shared::new(Arc::new(Metrics::new("test")));
        let req = crate::http::parse_head(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        // The origin 11 s in the past: the last turn (at 0) is 11 s old.
        let stalled = Shared {
            origin: std::time::Instant::now() - std::time::Duration::from_secs(11),
            status: RwLock::new(Status::default()),
            metrics: shared.metrics.clone(),
            last_tick_ms: AtomicU64::new(0),
        };
        assert_eq!(respond(&stalled, &req).status, 503);
        shared.tick();
        assert_eq!(respond(&shared, &req).status, 200);
    }

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
