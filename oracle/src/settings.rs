//! The oracle service's configuration: a TOML file with `WISP_<SECTION>__<KEY>` environment
//! overrides and command-line flags on top, validated into [`Settings`]. The `[rules]` table is
//! [`RulesConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Rules, RulesConfig};

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    /// `[oracle]`
    pub oracle: RawOracle,
    /// `[broker]`
    pub broker: RawBroker,
    /// `[epoch]`
    pub epoch: RawEpoch,
    /// `[ingest]`
    pub ingest: RawIngest,
    /// `[http]`
    pub http: RawHttp,
    /// `[storage]`
    pub storage: RawStorage,
    /// `[log]`
    pub log: RawLog,
    /// `[rules]`
    pub rules: Option<RulesConfig>,
    /// `[cluster]`
    pub cluster: RawCluster,
}

/// `[cluster]`: several oracle processes on one PostgreSQL database and one external broker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    /// Share the database with other oracle processes: the holder of the leader lease judges,
    /// opens and closes epochs and publishes; the others stand by and take over when its
    /// lease expires (default false).
    pub enabled: Option<bool>,
    /// This process's name in the lease (default: the host name and the process id).
    pub name: Option<String>,
    /// The lease, seconds (default 10): a standby takes over at most this long after the
    /// leader last renewed it, plus a third of it (how often standbys try).
    pub lease_s: Option<f64>,
    /// Seconds a member may go unseen before the leader takes its broker session over, hands
    /// what the broker queued for it to its own pipeline and discards the session (default
    /// 120; 0: never).
    pub reap_after_s: Option<f64>,
    /// The broker's share group the processes subscribe to the proofs in (default `oracle`:
    /// `$share/oracle/wisp/v1/proofs/+`). Clusters of different oracles on one broker need
    /// groups of their own, or they take each other's proofs.
    pub share_group: Option<String>,
}

/// The validated `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This process's name in the lease.
    pub name: String,
    /// The lease, ms.
    pub lease_ms: u64,
    /// How long a member may go unseen before the leader reaps its broker session, ms (0:
    /// never).
    pub reap_after_ms: u64,
    /// The share group of the proofs' subscription.
    pub share_group: String,
}

impl Cluster {
    /// The proofs' shared subscription filter, `$share/<group>/wisp/v1/proofs/+`.
    pub fn proofs_filter(&self) -> String {
        format!(
            "$share/{}/{}",
            self.share_group,
            wisp_protocol::topics::PROOFS_FILTER
        )
    }
}

/// `[oracle]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOracle {
    /// Directory for the key and the database.
    pub data_dir: Option<PathBuf>,
    /// Key file; default `<data_dir>/oracle.key`.
    pub key_file: Option<PathBuf>,
}

/// `[broker]` (`{:?}` shows no password: [`Password`])
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBroker {
    /// An external broker, `mqtt://host:port` or `mqtts://host:port`; unset: run the embedded
    /// one.
    pub url: Option<String>,
    /// The username on an external broker.
    pub username: Option<String>,
    /// The password on an external broker (prefer `password_file`).
    pub password: Option<Password>,
    /// A file holding the password on an external broker (its trailing newline is not part
    /// of it).
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle that signed an `mqtts://` broker's certificate (default: the system's
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// Where the embedded broker listens.
    pub listen: Option<String>,
    /// Largest MQTT payload the embedded broker accepts, bytes.
    pub max_payload: Option<usize>,
    /// The MQTT client id (the broker keeps the session's queued proofs under it).
    pub client_id: Option<String>,
    /// Connections the embedded broker takes from one IP address at once.
    pub max_connections_per_ip: Option<usize>,
}

/// `[epoch]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawEpoch {
    /// Epoch length in seconds.
    pub duration_s: Option<f64>,
    /// Beacon slots per epoch.
    pub slot_count: Option<u32>,
    /// Paid witnesses per beacon.
    pub witness_limit: Option<u16>,
    /// Measurers per prover.
    pub measurers_per_prover: Option<u8>,
    /// Heartbeat interval in seconds.
    pub heartbeat_interval_s: Option<f64>,
    /// Settle window after the epoch, seconds.
    pub settle_s: Option<f64>,
    /// Tokens paid per epoch (smallest unit).
    pub emission: Option<u64>,
    /// The oracle's signed clock is published every this many seconds (agents set their
    /// time by it).
    pub clock_interval_s: Option<f64>,
}

/// `[ingest]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIngest {
    /// Sustained proofs per second allowed per node.
    pub rate_per_s: Option<f64>,
    /// Burst per node.
    pub burst: Option<f64>,
    /// Most proofs judged per batch.
    pub batch_max: Option<usize>,
    /// Longest wait to fill a batch, ms.
    pub batch_window_ms: Option<u64>,
}

/// `[storage]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStorage {
    /// `sqlite://PATH` or `postgres://…` (default: SQLite `oracle.db` in the data directory).
    pub url: Option<String>,
    /// PostgreSQL only: a schema to create if needed and use.
    pub schema: Option<String>,
}

/// `[http]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// The API and dashboard address.
    pub listen: Option<String>,
    /// Carriers' reports a second each carrier key may post, sustained (default 50).
    pub carrier_reports_per_s: Option<f64>,
    /// Carriers' reports one carrier key may post at once (default 500).
    pub carrier_burst: Option<f64>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: Option<String>,
    /// Tracing filter.
    pub level: Option<String>,
}

/// Where proofs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Run rumqttd in-process on this address.
    Embedded(SocketAddr),
    /// Connect to an external broker.
    External(Broker),
}

pub use wisp_shell::broker::{Broker, Password};

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Key file.
    pub key_file: PathBuf,
    /// Broker.
    pub broker: BrokerMode,
    /// Embedded broker payload cap.
    pub max_payload: usize,
    /// The MQTT client id: stable across restarts (the broker queues proofs for the session),
    /// distinct for every oracle process on one broker (a broker drops the older of two
    /// connections with one id).
    pub client_id: String,
    /// Connections the embedded broker takes from one IP address at once.
    pub max_connections_per_ip: usize,
    /// Epoch length, ms.
    pub epoch_ms: u64,
    /// Epoch parameters published with each seed.
    pub params: wisp_protocol::msg::EpochParams,
    /// Emission per epoch.
    pub emission: u64,
    /// How often the signed clock is published, ms.
    pub clock_interval_ms: u32,
    /// Per-node rate.
    pub rate_per_s: f64,
    /// Per-node burst.
    pub burst: f64,
    /// Batch size.
    pub batch_max: usize,
    /// Batch window, ms.
    pub batch_window_ms: u64,
    /// HTTP address.
    pub http_listen: SocketAddr,
    /// Carriers' reports a second per carrier key (`POST /v1/usage/carrier` and its batch).
    pub carrier_rate_per_s: f64,
    /// Carriers' reports one carrier key may post at once.
    pub carrier_burst: f64,
    /// JSON logs.
    pub log_json: bool,
    /// Log filter.
    pub log_level: String,
    /// The verification rules.
    pub rules: Rules,
    /// The database.
    pub storage: crate::store::StorageConfig,
    /// Several processes on one database, one of them leading (None: this process alone).
    pub cluster: Option<Cluster>,
}

/// A settings problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read, or it or an override is not valid TOML for the schema.
    #[error(transparent)]
    Load(#[from] wisp_shell::envconfig::LoadError),
    /// A key has a bad value.
    #[error("config key `{key}`: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

fn invalid(key: &'static str, why: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        why: why.into(),
    }
}

impl RawSettings {
    /// Reads `path` (if any) and applies `WISP_<SECTION>__<KEY>` overrides from `env`, each
    /// read as the type of the key it sets.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawSettings, SettingsError> {
        Ok(wisp_shell::envconfig::load(path, env)?)
    }

    /// Validates.
    // Floats are range-checked before every cast.
    #[allow(clippy::cast_possible_truncation)]
    pub fn resolve(&self) -> Result<Settings, SettingsError> {
        let data_dir = self
            .oracle
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("wisp-oracle-data"));
        let key_file = self
            .oracle
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("oracle.key"));
        let broker = match &self.broker.url {
            None => {
                // Credentials and a CA are for an external broker: on the embedded one they
                // would be silently unused.
                for (key, set) in [
                    ("broker.username", self.broker.username.is_some()),
                    ("broker.password", self.broker.password.is_some()),
                    ("broker.password_file", self.broker.password_file.is_some()),
                    ("broker.ca_file", self.broker.ca_file.is_some()),
                ] {
                    if set {
                        return Err(invalid(key, "only for an external broker (set broker.url)"));
                    }
                }
                BrokerMode::Embedded(
                    self.broker
                        .listen
                        .as_deref()
                        .unwrap_or("127.0.0.1:1883")
                        .parse()
                        .map_err(|e| {
                            invalid("broker.listen", format!("{e}; expected host:port"))
                        })?,
                )
            }
            Some(url) => BrokerMode::External(resolve_external(&self.broker, url)?),
        };
        let secs = |key: &'static str,
                    v: Option<f64>,
                    default: f64,
                    lo: f64,
                    hi: f64|
         -> Result<u64, SettingsError> {
            let v = v.unwrap_or(default);
            if !(lo..=hi).contains(&v) {
                return Err(invalid(key, format!("{v} is outside {lo}..{hi} seconds")));
            }
            Ok((v * 1000.0).round() as u64)
        };
        let epoch_ms = secs(
            "epoch.duration_s",
            self.epoch.duration_s,
            3600.0,
            1.0,
            7.0 * 86_400.0,
        )?;
        let heartbeat_ms = secs(
            "epoch.heartbeat_interval_s",
            self.epoch.heartbeat_interval_s,
            300.0,
            0.01,
            86_400.0,
        )?;
        let settle_ms = secs("epoch.settle_s", self.epoch.settle_s, 600.0, 0.0, 86_400.0)?;
        let clock_interval_ms = u32::try_from(secs(
            "epoch.clock_interval_s",
            self.epoch.clock_interval_s,
            5.0,
            1.0,
            600.0,
        )?)
        .map_err(|_| invalid("epoch.clock_interval_s", "too long"))?;
        let slot_count = self.epoch.slot_count.unwrap_or(60);
        if slot_count == 0 || u64::from(slot_count) > epoch_ms {
            return Err(invalid(
                "epoch.slot_count",
                "between 1 and the epoch length in ms",
            ));
        }
        let params = wisp_protocol::msg::EpochParams {
            slot_count,
            witness_limit: self.epoch.witness_limit.unwrap_or(14),
            measurers_per_prover: self.epoch.measurers_per_prover.unwrap_or(3),
            heartbeat_interval_ms: u32::try_from(heartbeat_ms)
                .map_err(|_| invalid("epoch.heartbeat_interval_s", "too long"))?,
            settle_ms: u32::try_from(settle_ms)
                .map_err(|_| invalid("epoch.settle_s", "too long"))?,
        };
        let rate = self.ingest.rate_per_s.unwrap_or(50.0);
        let burst = self.ingest.burst.unwrap_or(500.0);
        if !(rate > 0.0 && burst >= 1.0) {
            return Err(invalid(
                "ingest.rate_per_s",
                "rate must be > 0 and burst ≥ 1",
            ));
        }
        let log_json = match self.log.format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}`: expected text or json"),
                ));
            }
        };
        let rules_cfg = self
            .rules
            .clone()
            .unwrap_or_else(RulesConfig::permissionless);
        let rules = rules_cfg
            .validate()
            .map_err(|e| invalid("rules", e.to_string()))?;
        let storage = match self.storage.url.as_deref() {
            None => crate::store::StorageConfig::Sqlite(data_dir.join("oracle.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                crate::store::StorageConfig::Postgres {
                    url: url.into(),
                    schema: self.storage.schema.clone(),
                }
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) if !path.is_empty() => {
                    crate::store::StorageConfig::Sqlite(PathBuf::from(path))
                }
                _ => {
                    return Err(invalid(
                        "storage.url",
                        format!("`{url}`: expected sqlite://PATH or postgres://…"),
                    ));
                }
            },
        };
        if self.storage.schema.is_some()
            && !matches!(storage, crate::store::StorageConfig::Postgres { .. })
        {
            return Err(invalid(
                "storage.schema",
                "only for a postgres:// storage.url",
            ));
        }
        let cluster = if self.cluster.enabled.unwrap_or(false) {
            if !matches!(storage, crate::store::StorageConfig::Postgres { .. }) {
                return Err(invalid(
                    "cluster.enabled",
                    "needs a postgres:// storage.url: the processes share its lease and rows",
                ));
            }
            if !matches!(broker, BrokerMode::External(_)) {
                return Err(invalid(
                    "cluster.enabled",
                    "needs an external broker (broker.url) that every process connects to",
                ));
            }
            let name = match &self.cluster.name {
                Some(n) => n.clone(),
                None => default_cluster_name(),
            };
            if name.is_empty() || name.len() > 100 {
                return Err(invalid("cluster.name", "1 to 100 characters"));
            }
            let lease_ms = secs("cluster.lease_s", self.cluster.lease_s, 10.0, 1.0, 300.0)?;
            let reap_after_ms = reap_after_ms(self.cluster.reap_after_s, lease_ms)?;
            let share_group = self
                .cluster
                .share_group
                .clone()
                .unwrap_or_else(|| "oracle".into());
            // MQTT's ShareName: no `/`, `+` or `#`; kept to plain characters.
            if share_group.is_empty()
                || share_group.len() > 64
                || !share_group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    "cluster.share_group",
                    format!("`{share_group}`: 1 to 64 letters, digits, - or _"),
                ));
            }
            Some(Cluster {
                name,
                lease_ms,
                reap_after_ms,
                share_group,
            })
        } else {
            for (key, set) in [
                ("cluster.name", self.cluster.name.is_some()),
                ("cluster.lease_s", self.cluster.lease_s.is_some()),
                ("cluster.reap_after_s", self.cluster.reap_after_s.is_some()),
                ("cluster.share_group", self.cluster.share_group.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "only with cluster.enabled = true"));
                }
            }
            None
        };
        // Every process of a cluster connects with an id of its own: a broker drops the older
        // of two connections with one id.
        let client_id = self
            .broker
            .client_id
            .clone()
            .unwrap_or_else(|| match &cluster {
                Some(c) => format!("wisp-oracle-{}", c.name),
                None => "wisp-oracle".into(),
            });
        // MQTT 3.1.1 guarantees 1..=23 characters; brokers accept more, but not empty ones
        // with a persistent session.
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(invalid("broker.client_id", "1 to 128 characters"));
        }
        let carrier_rate_per_s = self
            .http
            .carrier_reports_per_s
            .unwrap_or(crate::carrier_limit::DEFAULT_RATE_PER_S);
        if !(carrier_rate_per_s > 0.0 && carrier_rate_per_s.is_finite()) {
            return Err(invalid("http.carrier_reports_per_s", "a number > 0"));
        }
        let carrier_burst = self
            .http
            .carrier_burst
            .unwrap_or(crate::carrier_limit::DEFAULT_BURST);
        if !(carrier_burst >= 1.0 && carrier_burst.is_finite()) {
            return Err(invalid("http.carrier_burst", "a number ≥ 1"));
        }
        let max_connections_per_ip = self.broker.max_connections_per_ip.unwrap_or(256);
        if max_connections_per_ip == 0 {
            return Err(invalid("broker.max_connections_per_ip", "at least 1"));
        }
        Ok(Settings {
            cluster,
            client_id,
            max_connections_per_ip,
            storage,
            data_dir,
            key_file,
            broker,
            max_payload: self
                .broker
                .max_payload
                .unwrap_or(wisp_protocol::kind::MAX_ENVELOPE_LEN + 1024),
            epoch_ms,
            params,
            emission: self.epoch.emission.unwrap_or(1_000_000_000),
            clock_interval_ms,
            rate_per_s: rate,
            burst,
            batch_max: self.ingest.batch_max.unwrap_or(4096).clamp(1, 65_536),
            batch_window_ms: self.ingest.batch_window_ms.unwrap_or(20).min(1_000),
            http_listen: self
                .http
                .listen
                .as_deref()
                .unwrap_or("127.0.0.1:9320")
                .parse()
                .map_err(|e| invalid("http.listen", format!("{e}; expected host:port")))?,
            carrier_rate_per_s,
            carrier_burst,
            log_json,
            log_level: self.log.level.clone().unwrap_or_else(|| "info".into()),
            rules,
        })
    }
}

/// The longest `cluster.reap_after_s`: Mosquitto's shipped `persistent_client_expiration`
/// (14 days), after which the broker has dropped the session itself.
const REAP_AFTER_MAX_S: f64 = 14.0 * 86_400.0;

/// `cluster.reap_after_s` in ms: 0 (never reap), or at least the lease (members are seen every
/// third of it, so a shorter wait would reap live ones) and at most [`REAP_AFTER_MAX_S`].
// Range-checked before the cast.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn reap_after_ms(v: Option<f64>, lease_ms: u64) -> Result<u64, SettingsError> {
    let v = v.unwrap_or(120.0);
    if v == 0.0 {
        return Ok(0);
    }
    let lease_s = lease_ms as f64 / 1000.0;
    if !(v.is_finite() && v >= lease_s && v <= REAP_AFTER_MAX_S) {
        return Err(invalid(
            "cluster.reap_after_s",
            format!(
                "{v}: 0 (never reap) or from cluster.lease_s ({lease_s}) to {REAP_AFTER_MAX_S} seconds: \
                 members are seen every third of the lease, so a shorter wait reaps live ones"
            ),
        ));
    }
    Ok((v * 1000.0).round() as u64)
}

/// The host name and the process id: distinct for every process of a cluster.
fn default_cluster_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "oracle".into());
    format!("{host}-{}", std::process::id())
}

/// `broker.url` (`mqtt://` or `mqtts://`) and the login and CA that go with it, read as the
/// agent reads its `[mqtt]` ([`wisp_shell::broker`]).
fn resolve_external(raw: &RawBroker, url: &str) -> Result<Broker, SettingsError> {
    Broker::resolve(&wisp_shell::broker::BrokerKeys {
        url,
        username: raw.username.as_deref(),
        password: raw.password.as_ref(),
        password_file: raw.password_file.as_deref(),
        ca_file: raw.ca_file.as_deref(),
    })
    .map_err(|e| {
        let key = match e.key {
            "url" => "broker.url",
            "username" => "broker.username",
            "password" => "broker.password",
            "password_file" => "broker.password_file",
            "ca_file" => "broker.ca_file",
            _ => "broker",
        };
        invalid(key, e.why)
    })
}

#[cfg(test)]
mod tests;
