//! The log subscriber: the configured level, with dependencies' routine chatter out of sight.
//!
//! A healthy run must show no ERROR or WARN from a dependency, or operators learn to ignore
//! them. Three dependencies log routine events that high (the agent and the oracle share
//! these rules):
//! - `libp2p_gossipsub` warns when a message it already holds is published again; every node
//!   re-gossips each new epoch seed, so every epoch change did. Its target is kept at `error`.
//! - rumqttd (the oracle's embedded broker) logs an ERROR when a connection ends without an
//!   MQTT DISCONNECT or before its CONNECT (a readiness probe, a killed agent), and its
//!   router when a client's DISCONNECT and its socket's close both arrive or a restarted
//!   client comes back under its client id before the old connection timed out. Those
//!   messages ([`ROUTINE`]) are dropped; everything else rumqttd says at WARN and above (its
//!   listener, a full broker, an invalid subscription) stays.
//! - `libp2p_kad` warns "Failed to trigger bootstrap: No known peers" when its automatic
//!   bootstrap finds the routing table empty: on the first node of a network (no bootstrap
//!   peers) as soon as it listens, and every 5 minutes while it is alone. That message is
//!   dropped too ([`ROUTINE`]); a configured bootstrap peer that cannot be dialled is reported
//!   by the agent itself, with the dial error.
//!
//! An explicit filter in the environment (`WISP_LOG`, else `RUST_LOG`) replaces all of this.
//!
//! Filters are comma-separated `target=level` directives and at most one bare level, the
//! default (`info`, `wisp_agent=debug,libp2p=warn`, `warn,wisp_oracle::service=debug`): a
//! target matches every target it starts (`libp2p` covers `libp2p_kad::behaviour`), the longest
//! matching directive wins, and a target no directive matches logs nothing. This is
//! `tracing_subscriber`'s `Targets` filter, not its `EnvFilter`: no span or field directives, so
//! no regular expression engine in the router binary (README, "Binary size"). [`parse_filter`]
//! refuses what it cannot honour rather than ignore it.

use std::fmt;
use std::str::FromStr as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt as _};

/// Directives added to the configured level, per target, unless the level names the target.
/// rumqttd's INFO is a line per connection, so the oracle's embedded broker is kept at `warn`.
pub const QUIET: &[(&str, &str)] = &[("rumqttd", "warn"), ("libp2p_gossipsub", "error")];

/// The explicit filter from the environment: `WISP_LOG`, else `RUST_LOG`, if set and not empty.
pub fn explicit_from_env() -> Option<String> {
    ["WISP_LOG", "RUST_LOG"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}

/// The filter directives for the configured `level` (e.g. `info`, or `info,wisp_agent=debug`):
/// it, then the [`QUIET`] directives for targets it does not mention.
pub fn default_directives(level: &str) -> String {
    let mut out = level.trim().to_string();
    for (target, quiet) in QUIET {
        if !level.contains(target) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(target);
            out.push('=');
            out.push_str(quiet);
        }
    }
    out
}

/// A log filter [`parse_filter`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log filter `{directive}`: {reason}")]
pub struct FilterError {
    /// The directive at fault.
    pub directive: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a log filter (the module docs give its syntax). Spaces around directives and empty
/// ones are ignored; a level that is not `off`, `error`, `warn`, `info`, `debug` or `trace`, a
/// target with characters no Rust path has, more than one default level, and span or field
/// directives (which only `EnvFilter` honours) are errors.
pub fn parse_filter(filter: &str) -> Result<Targets, FilterError> {
    let err = |directive: &str, reason: &str| FilterError {
        directive: directive.to_string(),
        reason: reason.to_string(),
    };
    let mut directives = Vec::new();
    let mut defaults = 0;
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if d.contains(['[', ']', '{', '}']) {
            return Err(err(
                d,
                "span and field directives are not supported; use target=level",
            ));
        }
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (t.trim(), Some(l.trim())),
            None => (d, None),
        };
        let level_ok = |l: &str| l.parse::<tracing_subscriber::filter::LevelFilter>().is_ok();
        if level.is_some_and(|l| !level_ok(l)) {
            return Err(err(
                d,
                "the level must be off, error, warn, info, debug or trace",
            ));
        }
        let is_path = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-'))
        };
        if level.is_none() && level_ok(target) {
            defaults += 1;
            if defaults > 1 {
                return Err(err(d, "more than one default level"));
            }
        } else if !is_path(target) {
            return Err(err(
                d,
                "a target is a module path (letters, digits, `_`, `::`, `-`)",
            ));
        }
        directives.push(match level {
            Some(l) => format!("{target}={l}"),
            None => target.to_string(),
        });
    }
    if directives.is_empty() {
        return Err(err(filter, "no directive (e.g. `info`)"));
    }
    Targets::from_str(&directives.join(",")).map_err(|e| err(filter, &e.to_string()))
}

/// Dependencies' routine messages, `(target, start of the message)`: the embedded broker's
/// news of one connection's end or its replacement, which the clients themselves report when
/// it matters, and Kademlia's news of an empty routing table.
pub const ROUTINE: &[(&str, &str)] = &[
    // A connection closed before its CONNECT (the oracle's own readiness probe).
    (
        "rumqttd::server::broker",
        "Error while handling MQTT connect packet",
    ),
    // A connection closed without a DISCONNECT, or dropped by the router.
    ("rumqttd::server::broker", "disconnected"),
    ("rumqttd::server::broker", "router-drop"),
    ("rumqttd::server::broker", "connection-stop"),
    // A DISCONNECT and the socket's close both reach the router.
    ("rumqttd::router::routing", "no-connection id "),
    // An agent restarted faster than its old connection timed out (stable client ids).
    ("rumqttd::router::routing", "Duplicate client_id"),
    // Kademlia's automatic bootstrap on a node that knows no peer yet (the first node).
    (
        "libp2p_kad::behaviour",
        "Failed to trigger bootstrap: No known peers",
    ),
];

/// Whether an event is one of [`ROUTINE`].
fn is_routine(event: &Event<'_>) -> bool {
    let target = event.metadata().target();
    if !ROUTINE.iter().any(|(t, _)| *t == target) {
        return false;
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    ROUTINE
        .iter()
        .any(|(t, m)| target == *t && message.0.starts_with(m))
}

/// The `message` field of an event, formatted.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Drops [`ROUTINE`] events when `quiet`; everything else passes.
struct Quiet(bool);

impl<S> Filter<S> for Quiet {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        !(self.0 && is_routine(event))
    }
}

/// A subscriber writing to `writer` (text, or JSON lines), filtered by `explicit` when given
/// (see [`explicit_from_env`]), else by `level` made quiet as the module docs say.
pub fn subscriber<W>(
    explicit: Option<&str>,
    level: &str,
    json: bool,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static, FilterError>
where
    W: for<'a> MakeWriter<'a> + Clone + Send + Sync + 'static,
{
    let quiet = explicit.is_none();
    let filter = match explicit {
        Some(d) => parse_filter(d)?,
        None => parse_filter(&default_directives(level))?,
    };
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer.clone())
            .with_filter(Quiet(quiet))
    });
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(Quiet(quiet))
    });
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json))
}

/// Logs to stderr at `level` (text, or JSON lines with `json`) with dependencies' routine
/// chatter out of sight, unless `WISP_LOG` (or `RUST_LOG`) gives a filter (see [`subscriber`]).
/// A filter that does not parse is reported on stderr and `info` is used.
pub fn init(level: &str, json: bool) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let explicit = explicit_from_env();
    let built = subscriber(explicit.as_deref(), level, json, std::io::stderr).or_else(|e| {
        eprintln!("warning: ignoring the log filter ({e}); logging at info");
        subscriber(None, "info", json, std::io::stderr)
    });
    if let Ok(s) = built {
        let _ = s.try_init();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// What a run like the oracle's and the agents' logs, under `explicit` or the default.
    fn logged(explicit: Option<&str>) -> String {
        let buf = Buf::default();
        let sub = subscriber(explicit, "info", false, buf.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "wisp_oracle::service", "wisp-oracle started");
            // rumqttd's line per connection.
            tracing::info!(target: "rumqttd::server::broker", "accept from a client");
            // The embedded broker: a readiness probe and a killed agent, per connection.
            let link = tracing::error_span!(target: "rumqttd::server::broker", "remote_link");
            link.in_scope(|| {
                tracing::error!(target: "rumqttd::server::broker", "Error while handling MQTT connect packet");
                tracing::error!(target: "rumqttd::server::broker", "disconnected");
            });
            // A client's DISCONNECT and its socket's close both reach the router.
            let router = tracing::error_span!(target: "rumqttd::router::routing", "[>] incoming");
            router.in_scope(|| {
                tracing::error!(target: "rumqttd::router::routing", "no-connection id 1 is already gone");
                // An agent restarted before its old connection timed out.
                tracing::error!(
                    target: "rumqttd::router::routing",
                    "Duplicate client_id, dropping previous connection with connection_id: {}",
                    3
                );
                // A full broker is real.
                tracing::info_span!(target: "rumqttd::router::routing", "incoming_connect").in_scope(|| {
                    tracing::error!(target: "rumqttd::router::routing", "no space for new connection");
                });
            });
            // Its listener failing is real.
            tracing::error!(target: "rumqttd::server::broker", "Unable to accept socket.");
            tracing::warn!(target: "rumqttd::router::routing", "router trouble");
            // Gossipsub at an epoch change, and a real gossipsub error.
            tracing::warn!(target: "libp2p_gossipsub::behaviour", "Not publishing a message that has already been published");
            tracing::error!(target: "libp2p_gossipsub::behaviour", "Peer non-existent");
            // The first node of a network, alone; and a real Kademlia warning.
            tracing::warn!(target: "libp2p_kad::behaviour", "Failed to trigger bootstrap: {}", "No known peers.");
            tracing::warn!(target: "libp2p_kad::behaviour", "Locating closest peers for replication failed");
            tracing::warn!(target: "wisp_agent::shell", "cannot connect to the MQTT broker");
        });
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn routine_dependency_messages_are_quiet_real_ones_are_not() {
        let out = logged(None);
        for seen in [
            "wisp-oracle started",
            "Unable to accept socket.",
            "router trouble",
            "no space for new connection",
            "Peer non-existent",
            "cannot connect to the MQTT broker",
            "Locating closest peers for replication failed",
        ] {
            assert!(out.contains(seen), "{seen} missing from:\n{out}");
        }
        for hidden in [
            "Error while handling MQTT connect packet",
            "disconnected",
            "is already gone",
            "Duplicate client_id",
            "already been published",
            "No known peers",
            "accept from a client",
        ] {
            assert!(!out.contains(hidden), "{hidden} logged:\n{out}");
        }
    }

    #[test]
    fn an_explicit_filter_wins() {
        let out = logged(Some("info"));
        for seen in [
            "Error while handling MQTT connect packet",
            "disconnected",
            "is already gone",
            "Duplicate client_id",
            "already been published",
            "No known peers",
            "accept from a client",
        ] {
            assert!(out.contains(seen), "{seen} missing from:\n{out}");
        }
        assert!(!logged(Some("error")).contains("wisp-oracle started"));
    }

    #[test]
    fn filters_keep_the_target_level_syntax() {
        use tracing::Level;
        let f = parse_filter("wisp_agent=debug,libp2p=warn").unwrap();
        assert!(f.would_enable("wisp_agent::net::task", &Level::DEBUG));
        assert!(!f.would_enable("wisp_agent::net::task", &Level::TRACE));
        assert!(f.would_enable("libp2p_kad::behaviour", &Level::WARN));
        assert!(!f.would_enable("libp2p_kad::behaviour", &Level::INFO));
        // No default level: targets no directive names log nothing.
        assert!(!f.would_enable("rumqttc::state", &Level::ERROR));
        let f = parse_filter(" info , libp2p_gossipsub=error,").unwrap();
        assert!(f.would_enable("rumqttc::state", &Level::INFO));
        assert!(!f.would_enable("rumqttc::state", &Level::DEBUG));
        assert!(!f.would_enable("libp2p_gossipsub::behaviour", &Level::WARN));
        // A bare target logs everything it says.
        assert!(
            parse_filter("wisp_agent")
                .unwrap()
                .would_enable("wisp_agent", &Level::TRACE)
        );
        assert!(parse_filter(&default_directives("debug")).is_ok());
    }

    #[test]
    fn a_bad_filter_is_an_error_that_names_it() {
        for (filter, reason) in [
            ("wisp_agent=loud", "the level must be"),
            ("info,debug", "more than one default level"),
            ("wisp_agent[conn]=debug", "span and field directives"),
            ("wisp_agent[{peer}]=debug", "span and field directives"),
            ("wisp agent=info", "a target is a module path"),
            ("=info", "a target is a module path"),
            ("", "no directive"),
            (" , ", "no directive"),
        ] {
            let e = parse_filter(filter).unwrap_err();
            assert!(e.to_string().contains(reason), "{filter}: {e}");
            assert!(filter.contains(&e.directive), "{filter}: {e}");
        }
        assert!(subscriber(Some("wisp_agent=loud"), "info", false, Buf::default()).is_err());
    }

    #[test]
    fn the_configured_level_is_kept_and_can_name_the_quiet_targets() {
        assert_eq!(
            default_directives("info"),
            "info,rumqttd=warn,libp2p_gossipsub=error"
        );
        assert_eq!(
            default_directives("debug,libp2p_gossipsub=debug"),
            "debug,libp2p_gossipsub=debug,rumqttd=warn"
        );
    }
}
