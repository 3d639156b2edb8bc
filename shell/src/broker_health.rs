//! What an operator is told when the MQTT broker cannot be reached (sans-IO: time is an
//! argument, the shell logs the lines).
//!
//! An unreachable host, a closed port, a name that does not resolve or TLS against a plain
//! broker all look alike from outside: the agent (or the oracle) starts and nothing arrives. So every failed
//! connection attempt is reported at WARN with the broker's URL and the error, at most one line
//! per [`REPORT_EVERY_MS`] (with the number of attempts since the last line, so a broker down
//! for a day costs a few thousand lines, not one per retry), and `/readyz` gives the same
//! reason.

/// At most one WARN line per this long.
pub const REPORT_EVERY_MS: u64 = 30_000;

/// The broker connection as operators see it.
#[derive(Debug, Clone)]
pub struct BrokerHealth {
    url: String,
    every_ms: u64,
    connected: bool,
    /// Failed attempts since the last successful connection.
    failures: u64,
    /// Failed attempts not yet counted in a logged line.
    unreported: u64,
    last_report_ms: Option<u64>,
    last_error: Option<String>,
}

impl BrokerHealth {
    /// The broker at `url` (as configured, e.g. `mqtts://broker.example:8883`), reported at
    /// most once per `every_ms`.
    pub fn new(url: impl Into<String>, every_ms: u64) -> Self {
        Self {
            url: url.into(),
            every_ms,
            connected: false,
            failures: 0,
            unreported: 0,
            last_report_ms: None,
            last_error: None,
        }
    }

    /// The broker's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection attempt failed, or the connection broke, with `error`. Returns the line to
    /// log at WARN, if one is due: the first failure at once, later ones at most once per
    /// interval, with the number of attempts since the last line.
    pub fn handle_failure(&mut self, error: &str, now_ms: u64) -> Option<String> {
        let was_connected = std::mem::replace(&mut self.connected, false);
        self.failures += 1;
        self.unreported += 1;
        self.last_error = Some(error.to_string());
        if self
            .last_report_ms
            .is_some_and(|t| now_ms < t.saturating_add(self.every_ms))
        {
            return None;
        }
        self.last_report_ms = Some(now_ms);
        let n = std::mem::take(&mut self.unreported);
        Some(if was_connected {
            format!(
                "lost the connection to the MQTT broker {}: {error}; reconnecting",
                self.url
            )
        } else if n == 1 {
            format!(
                "cannot connect to the MQTT broker {}: {error}; retrying",
                self.url
            )
        } else {
            format!(
                "cannot connect to the MQTT broker {}: {error} ({n} failed attempts since the last report); retrying",
                self.url
            )
        })
    }

    /// Connected. Returns a line to log at INFO when attempts had failed before.
    pub fn handle_connected(&mut self) -> Option<String> {
        self.connected = true;
        self.unreported = 0;
        self.last_error = None;
        let failed = std::mem::take(&mut self.failures);
        (failed > 0).then(|| {
            format!(
                "connected to the MQTT broker {} after {failed} failed {}",
                self.url,
                attempts(failed)
            )
        })
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Why the broker is not usable, for `/readyz` and the status; `None` while connected.
    pub fn reason(&self) -> Option<String> {
        if self.connected {
            return None;
        }
        Some(match &self.last_error {
            Some(e) => format!(
                "MQTT broker {} not connected: {e} ({} failed {})",
                self.url,
                self.failures,
                attempts(self.failures)
            ),
            None => format!("MQTT broker {} not connected yet", self.url),
        })
    }
}

fn attempts(n: u64) -> &'static str {
    if n == 1 { "attempt" } else { "attempts" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_at_once_then_at_most_every_interval_with_a_count() {
        let mut h = BrokerHealth::new("mqtt://127.0.0.1:1", 30_000);
        assert_eq!(
            h.reason().unwrap(),
            "MQTT broker mqtt://127.0.0.1:1 not connected yet"
        );
        let refused = "I/O: Connection refused (os error 111)";
        // The first attempt at start: reported at once, naming the URL and the error.
        let first = h.handle_failure(refused, 1_000).unwrap();
        assert!(first.contains("mqtt://127.0.0.1:1"), "{first}");
        assert!(first.contains(refused), "{first}");
        // Retries within 30 s: silent.
        let silent: Vec<Option<String>> = (1..=5)
            .map(|i| h.handle_failure(refused, 1_000 + i * 5_000))
            .collect();
        assert!(silent.iter().all(Option::is_none), "{silent:?}");
        // The next one after 30 s: one line counting the attempts since the last.
        let next = h.handle_failure(refused, 31_000).unwrap();
        assert!(
            next.contains("(6 failed attempts since the last report)"),
            "{next}"
        );
        assert_eq!(
            h.reason().unwrap(),
            format!("MQTT broker mqtt://127.0.0.1:1 not connected: {refused} (7 failed attempts)")
        );
        // Connected: said once at info, and ready.
        let up = h.handle_connected().unwrap();
        assert!(up.contains("after 7 failed attempts"), "{up}");
        assert_eq!(h.reason(), None);
        assert!(h.is_connected());
        // A clean connection after a clean one says nothing.
        assert_eq!(h.handle_connected(), None);
    }

    #[test]
    fn a_lost_connection_is_reported_within_the_same_limit() {
        let mut h = BrokerHealth::new("mqtts://broker.example:8883", 30_000);
        h.handle_connected();
        let lost = h.handle_failure("I/O: connection reset", 100_000).unwrap();
        assert!(lost.starts_with("lost the connection"), "{lost}");
        // A flapping connection does not log a line per flap.
        h.handle_connected();
        assert_eq!(h.handle_failure("I/O: connection reset", 101_000), None);
        h.handle_connected();
        assert_eq!(h.handle_failure("I/O: connection reset", 102_000), None);
        assert!(h.handle_failure("TLS: corrupt message", 130_000).is_some());
        assert!(h.reason().unwrap().contains("TLS: corrupt message"));
    }
}
