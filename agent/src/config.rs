//! Configuration in two stages: a raw TOML file with `WISP_` environment overrides and command
//! line flags on top, deserialized into [`RawConfig`]; then validated into [`Config`] with
//! errors that name the key and say what is wrong.
//!
//! Environment variables: `WISP_<SECTION>__<KEY>` sets `[section] key`, e.g.
//! `WISP_MQTT__URL=mqtt://broker:1883` or `WISP_OUTBOX__MAX_ENTRIES=5000`. Values are read as
//! TOML scalars when they parse as one (numbers, booleans), else as strings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId};

use crate::core::RadioParams;
use crate::outbox::OutboxConfig;

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[node]`
    pub node: RawNode,
    /// `[oracle]`
    pub oracle: RawOracle,
    /// `[mqtt]`
    pub mqtt: RawMqtt,
    /// `[http]`
    pub http: RawHttp,
    /// `[radio]`
    pub radio: RawRadio,
    /// `[location]`
    pub location: RawLocation,
    /// `[outbox]`
    pub outbox: RawOutbox,
    /// `[heartbeat]`
    pub heartbeat: RawHeartbeat,
    /// `[log]`
    pub log: RawLog,
    /// `[device]`
    pub device: RawDevice,
    /// `[net]`
    pub net: RawNet,
    /// `[bandwidth]`
    pub bandwidth: RawBandwidth,
}

/// `[bandwidth]`: proof of backhaul.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBandwidth {
    /// Take part in bandwidth tests at all: invite the assigned measurers and answer them
    /// (default true; needs `[net]`).
    pub enabled: Option<bool>,
    /// Measure other nodes when the oracle's assignment names this one (default false: a
    /// measurer must be reachable on UDP at `listen` or `advertise`).
    pub measurer: Option<bool>,
    /// The measurer's QUIC test endpoint, host:port (default 0.0.0.0:9312).
    pub listen: Option<String>,
    /// The address provers connect to, when `listen` is not reachable as is (unspecified IP,
    /// port forwarding).
    pub advertise: Option<String>,
    /// Seconds per direction, at most 8 (default 5).
    pub duration_s: Option<f64>,
    /// Byte cap per direction in MiB, at least 1 (default 1024). A prover refuses tests asking
    /// for more than its own cap.
    pub byte_cap_mib: Option<u64>,
}

/// A list of multiaddrs: a TOML array, or one comma-separated string (for environment
/// overrides such as `WISP_NET__BOOTSTRAP=/ip4/…/p2p/…,/ip4/…`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AddrList {
    /// `["/ip4/…", "/ip4/…"]`
    List(Vec<String>),
    /// `"/ip4/…,/ip4/…"`
    Csv(String),
}

impl AddrList {
    fn items(&self) -> Vec<String> {
        match self {
            AddrList::List(v) => v.clone(),
            AddrList::Csv(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        }
    }
}

/// `[net]`: the libp2p network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNet {
    /// Run the network (default true).
    pub enabled: Option<bool>,
    /// Listen multiaddrs (default QUIC and TCP on 0.0.0.0 port 9311).
    pub listen: Option<AddrList>,
    /// Bootstrap peers, each `…/p2p/<peer id>` (default none).
    pub bootstrap: Option<AddrList>,
    /// Addresses peers reach this node at, taken as confirmed (default none: learned from
    /// peers' observations and confirmed by autonat).
    pub external_addresses: Option<AddrList>,
    /// mDNS discovery on the LAN (default false).
    pub mdns: Option<bool>,
    /// Relay for nodes behind NAT (default false; set it on public nodes).
    pub relay_server: Option<bool>,
    /// Answer DHT queries: unset (default), unless autonat finds the node behind NAT; true,
    /// always; false, only once an external address is confirmed (libp2p's own rule).
    pub kad_server: Option<bool>,
    /// Most established connections (default 128).
    pub max_connections: Option<u32>,
    /// Most connections to one peer (default 2).
    pub max_connections_per_peer: Option<u32>,
    /// Refuse new connections above this share of physical memory, percent (default 90).
    pub max_memory_percent: Option<f64>,
    /// Close unused connections after this many seconds (default 600).
    pub idle_timeout_s: Option<u64>,
    /// Request-response timeout in seconds (default 10).
    pub request_timeout_s: Option<u64>,
    /// The H3 resolution of the cell an anonymous peer's `/wisp/status/1` answer shows
    /// (default 7; 0–12).
    pub status_cell_resolution: Option<u8>,
}

/// `[device]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDevice {
    /// `none` (no radio or GNSS) or `sim` (the simulated device).
    pub kind: Option<String>,
    /// The device maker's name, as the oracle knows it (for secure-element attestation).
    pub maker: Option<String>,
    /// The maker's certificate for this device's chip: 64-byte P-256 signature `r || s`, hex,
    /// over the certificate digest of docs/PROTOCOL.md §5.1 (provisioned at the factory).
    pub maker_certificate: Option<String>,
    /// `sim` only: the shared simulated air of a devnet, `host:port` (UDP). Unset: the device
    /// is alone on its air.
    pub air: Option<String>,
    /// `sim` only: where the simulated radio and GNSS really are, `"lat,lon"` in degrees.
    /// Default: the centre of the asserted location's cell.
    pub position: Option<String>,
    /// `sim` only: the fix the simulated GNSS receiver reports instead of `position`,
    /// `"lat,lon"` in degrees: a spoofed receiver, as a devnet's forged-location cheater has.
    /// Unset: the receiver reports where the device is.
    pub gnss_spoof: Option<String>,
}

/// Which hardware backend the daemon drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// No radio, no GNSS: the node heartbeats only.
    None,
    /// The simulated device (firmware `SimDevice`), its GNSS at the configured location.
    Sim,
}

/// `[node]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNode {
    /// Directory for the key, the outbox database and runtime files.
    pub data_dir: Option<PathBuf>,
    /// Key file; default `<data_dir>/node.key`.
    pub key_file: Option<PathBuf>,
    /// Payout address for onboarding.
    pub owner: Option<String>,
    /// Antenna height above ground in metres.
    pub antenna_height_m: Option<f64>,
}

/// `[oracle]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOracle {
    /// The oracle's node id (PeerId string). Required.
    pub public_key: Option<String>,
}

/// `[mqtt]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    pub password: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for `mqtts://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Keep-alive in seconds.
    pub keep_alive_s: Option<u64>,
}

/// `[http]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Listen address of the status server.
    pub listen: Option<String>,
}

/// `[radio]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRadio {
    /// Centre frequency in MHz.
    pub freq_mhz: Option<f64>,
    /// Channel width in MHz.
    pub width_mhz: Option<u16>,
    /// Transmit power in dBm.
    pub tx_power_dbm: Option<f64>,
    /// Antenna gain in dBi.
    pub antenna_gain_dbi: Option<f64>,
}

/// `[location]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLocation {
    /// Latitude in degrees (used when there is no GNSS fix).
    pub lat: Option<f64>,
    /// Longitude in degrees.
    pub lon: Option<f64>,
}

/// `[outbox]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOutbox {
    /// Most proofs held.
    pub max_entries: Option<usize>,
    /// Most bytes held.
    pub max_bytes: Option<usize>,
    /// Resend when no ack arrived within this many seconds.
    pub ack_timeout_s: Option<f64>,
    /// Most proofs in flight.
    pub max_in_flight: Option<usize>,
    /// Longest wait before committing a batch, in milliseconds.
    pub commit_interval_ms: Option<u64>,
}

/// `[heartbeat]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Interval in seconds until the oracle's epoch parameters say otherwise.
    pub interval_s: Option<f64>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `wisp_agent=debug`.
    pub level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// MQTT settings, resolved.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS on.
    pub tls: bool,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// CA bundle for TLS.
    pub ca_file: Option<PathBuf>,
    /// Keep-alive.
    pub keep_alive_s: u64,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Key file.
    pub key_file: PathBuf,
    /// Payout address.
    pub owner: Option<String>,
    /// Antenna height in decimetres.
    pub antenna_height_dm: u16,
    /// The pinned oracle.
    pub oracle: NodeId,
    /// The broker.
    pub mqtt: MqttConfig,
    /// Status server address.
    pub http_listen: SocketAddr,
    /// The radio.
    pub radio: RadioParams,
    /// The asserted cell from configured coordinates.
    pub cell: Option<Cell>,
    /// Outbox policy.
    pub outbox: OutboxConfig,
    /// Batch commit window.
    pub commit_interval_ms: u64,
    /// Heartbeat interval before the first seed.
    pub heartbeat_interval_ms: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Hardware backend.
    pub device: DeviceKind,
    /// The simulated device's shared air (`device.air`).
    pub sim_air: Option<SocketAddr>,
    /// The simulated device's real place, degrees (`device.position`).
    pub sim_position: Option<(f64, f64)>,
    /// What the simulated GNSS reports instead, degrees (`device.gnss_spoof`).
    pub sim_gnss_spoof: Option<(f64, f64)>,
    /// Maker name and certificate for onboarding with a secure-element attestation.
    pub attestation: Option<(String, [u8; 64])>,
    /// The libp2p network.
    pub net: crate::net::NetConfig,
    /// Proof of backhaul.
    pub bandwidth: BandwidthConfig,
}

/// `[bandwidth]`, validated.
#[derive(Debug, Clone)]
pub struct BandwidthConfig {
    /// Take part in bandwidth tests.
    pub enabled: bool,
    /// Measure others when assigned.
    pub measurer: bool,
    /// The measurer's test endpoint.
    pub listen: SocketAddr,
    /// The address put in requests instead of `listen`.
    pub advertise: Option<SocketAddr>,
    /// Test settings, both roles.
    pub test: crate::bandwidth::BwConfig,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid TOML for our schema.
    #[error("config: {0}")]
    Parse(String),
    /// A key has an invalid value.
    #[error("config key `{key}`: {why}")]
    Invalid {
        /// The key, `section.name`.
        key: &'static str,
        /// What is wrong and what is expected.
        why: String,
    },
}

/// An optional `"lat,lon"` in degrees, at `key`.
fn degrees_pair(key: &'static str, v: Option<&str>) -> Result<Option<(f64, f64)>, ConfigError> {
    let Some(p) = v else {
        return Ok(None);
    };
    let parsed = p.split_once(',').and_then(|(lat, lon)| {
        Some((
            lat.trim().parse::<f64>().ok()?,
            lon.trim().parse::<f64>().ok()?,
        ))
    });
    match parsed {
        Some((lat, lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
            Ok(Some((lat, lon)))
        }
        _ => Err(invalid(
            key,
            format!("`{p}`: expected \"lat,lon\" in degrees"),
        )),
    }
}

fn invalid(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        why: why.into(),
    }
}

impl RawConfig {
    /// Reads `path` (if given; a missing file is an error) and applies `WISP_*` overrides from
    /// `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        wisp_protocol::envconfig::apply_env_overrides(&mut table, env, STRING_KEYS)
            .map_err(ConfigError::Parse)?;
        RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Validates into a [`Config`].
    // Every float is range-checked before it is cast.
    #[allow(clippy::cast_possible_truncation)]
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let data_dir = self
            .node
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/wisp"));
        let key_file = self
            .node
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("node.key"));
        if let Some(owner) = &self.node.owner
            && (owner.is_empty()
                || owner.len() > wisp_protocol::msg::OWNER_MAX
                || !owner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)))
        {
            return Err(invalid(
                "node.owner",
                "1 to 64 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        let height = self.node.antenna_height_m.unwrap_or(5.0);
        if !(0.0..=500.0).contains(&height) {
            return Err(invalid("node.antenna_height_m", "between 0 and 500 m"));
        }
        let oracle = self
            .oracle
            .public_key
            .as_deref()
            .ok_or_else(|| {
                invalid(
                    "oracle.public_key",
                    "required: the oracle's peer id (12D3KooW…), printed by `wisp-oracle key`",
                )
            })?
            .parse::<NodeId>()
            .map_err(|e| invalid("oracle.public_key", e.to_string()))?;
        let mqtt = resolve_mqtt(&self.mqtt)?;
        let http_listen = self
            .http
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:9310")
            .parse::<SocketAddr>()
            .map_err(|e| {
                invalid(
                    "http.listen",
                    format!("{e}; expected host:port, e.g. 127.0.0.1:9310"),
                )
            })?;
        let freq_mhz = self.radio.freq_mhz.unwrap_or(2412.0);
        if !(1.0..=100_000.0).contains(&freq_mhz) {
            return Err(invalid("radio.freq_mhz", "between 1 and 100000 MHz"));
        }
        let radio = RadioParams {
            freq_khz: (freq_mhz * 1000.0).round() as u32,
            width_mhz: self.radio.width_mhz.unwrap_or(20),
            tx_power: decidb(
                "radio.tx_power_dbm",
                self.radio.tx_power_dbm.unwrap_or(20.0),
                -10.0,
                40.0,
            )?,
            antenna_gain: decidb(
                "radio.antenna_gain_dbi",
                self.radio.antenna_gain_dbi.unwrap_or(3.0),
                -10.0,
                30.0,
            )?,
        };
        let cell = match (self.location.lat, self.location.lon) {
            (Some(lat), Some(lon)) => Some(
                Cell::from_degrees(lat, lon, wisp_protocol::geo::ASSERT_RESOLUTION)
                    .map_err(|e| invalid("location.lat", e.to_string()))?,
            ),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "location.lat",
                    "set both location.lat and location.lon, or neither",
                ));
            }
        };
        let defaults = OutboxConfig::default();
        let ack_timeout_s = self.outbox.ack_timeout_s.unwrap_or(30.0);
        if !(0.05..=3600.0).contains(&ack_timeout_s) {
            return Err(invalid("outbox.ack_timeout_s", "between 0.05 and 3600"));
        }
        let outbox = OutboxConfig {
            max_entries: positive(
                "outbox.max_entries",
                self.outbox.max_entries.unwrap_or(defaults.max_entries),
            )?,
            max_bytes: positive(
                "outbox.max_bytes",
                self.outbox.max_bytes.unwrap_or(defaults.max_bytes),
            )?,
            ack_timeout_ms: (ack_timeout_s * 1000.0) as u64,
            max_in_flight: positive(
                "outbox.max_in_flight",
                self.outbox.max_in_flight.unwrap_or(defaults.max_in_flight),
            )?,
            ..defaults
        };
        let interval_s = self.heartbeat.interval_s.unwrap_or(300.0);
        if !(0.01..=86_400.0).contains(&interval_s) {
            return Err(invalid("heartbeat.interval_s", "between 0.01 and 86400"));
        }
        let log_format = match self.log.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}`: expected `text` or `json`"),
                ));
            }
        };
        let device = match self.device.kind.as_deref().unwrap_or("none") {
            "none" => DeviceKind::None,
            "sim" => DeviceKind::Sim,
            other => {
                return Err(invalid(
                    "device.kind",
                    format!("`{other}`: expected `none` or `sim`"),
                ));
            }
        };
        let attestation = match (&self.device.maker, &self.device.maker_certificate) {
            (None, None) => None,
            (Some(maker), Some(cert)) => {
                if maker.is_empty() || maker.len() > wisp_protocol::msg::MAKER_MAX {
                    return Err(invalid("device.maker", "1 to 32 characters"));
                }
                let bytes: [u8; 64] = decode_hex(cert)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        invalid(
                            "device.maker_certificate",
                            "128 hex digits (a 64-byte P-256 signature)",
                        )
                    })?;
                Some((maker.clone(), bytes))
            }
            _ => {
                return Err(invalid(
                    "device.maker",
                    "set device.maker and device.maker_certificate together",
                ));
            }
        };
        let net = resolve_net(&self.net)?;
        let bandwidth = resolve_bandwidth(&self.bandwidth)?;
        let sim_air = match self.device.air.as_deref() {
            None => None,
            Some(a) => Some(
                std::net::ToSocketAddrs::to_socket_addrs(a)
                    .ok()
                    .and_then(|mut it| it.next())
                    .ok_or_else(|| invalid("device.air", format!("`{a}`: expected host:port")))?,
            ),
        };
        let sim_position = degrees_pair("device.position", self.device.position.as_deref())?;
        let sim_gnss_spoof = degrees_pair("device.gnss_spoof", self.device.gnss_spoof.as_deref())?;
        if device != DeviceKind::Sim
            && (sim_air.is_some() || sim_position.is_some() || sim_gnss_spoof.is_some())
        {
            return Err(invalid(
                "device.air",
                "device.air, device.position and device.gnss_spoof apply to device.kind = \"sim\" only",
            ));
        }
        Ok(Config {
            net,
            bandwidth,
            attestation,
            device,
            sim_air,
            sim_position,
            sim_gnss_spoof,
            data_dir,
            key_file,
            owner: self.node.owner.clone(),
            antenna_height_dm: (height * 10.0).round() as u16,
            oracle,
            mqtt,
            http_listen,
            radio,
            cell,
            outbox,
            commit_interval_ms: self.outbox.commit_interval_ms.unwrap_or(20).min(10_000),
            heartbeat_interval_ms: (interval_s * 1000.0) as u64,
            log_format,
            log_level: self.log.level.clone().unwrap_or_else(|| "info".into()),
        })
    }
}

// The duration is range-checked before it is cast.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn resolve_bandwidth(raw: &RawBandwidth) -> Result<BandwidthConfig, ConfigError> {
    let addr = |key: &'static str, v: &str| {
        v.parse::<SocketAddr>().map_err(|e| {
            invalid(
                key,
                format!("`{v}`: {e}; expected host:port, e.g. 203.0.113.7:9312"),
            )
        })
    };
    let listen = addr(
        "bandwidth.listen",
        raw.listen.as_deref().unwrap_or("0.0.0.0:9312"),
    )?;
    let advertise = match raw.advertise.as_deref() {
        Some(a) => Some(addr("bandwidth.advertise", a)?),
        None => None,
    };
    if let Some(a) = advertise
        && (a.ip().is_unspecified() || a.port() == 0)
    {
        return Err(invalid(
            "bandwidth.advertise",
            "must name a reachable IP and a non-zero port",
        ));
    }
    // A measurer listening on every address without `advertise` tells provers the IP of its
    // confirmed external address (net.external_addresses, or autonat) and its test port.
    let measurer = raw.measurer.unwrap_or(false);
    let mut test = crate::bandwidth::BwConfig::default();
    let secs = raw.duration_s.unwrap_or(test.duration.as_secs_f64());
    if !(0.5..=crate::bandwidth::MAX_DURATION.as_secs_f64()).contains(&secs) {
        return Err(invalid("bandwidth.duration_s", "between 0.5 and 8 seconds"));
    }
    test.duration = std::time::Duration::from_millis((secs * 1000.0).round() as u64);
    let cap = raw.byte_cap_mib.unwrap_or(1024);
    if !(1..=1 << 20).contains(&cap) {
        return Err(invalid(
            "bandwidth.byte_cap_mib",
            "between 1 and 1048576 MiB",
        ));
    }
    test.byte_cap = cap << 20;
    test.validate()
        .map_err(|e| invalid("bandwidth", e.to_string()))?;
    Ok(BandwidthConfig {
        enabled: raw.enabled.unwrap_or(true),
        measurer,
        listen,
        advertise,
        test,
    })
}

fn resolve_net(raw: &RawNet) -> Result<crate::net::NetConfig, ConfigError> {
    use libp2p::Multiaddr;
    use libp2p::multiaddr::Protocol;
    let d = crate::net::NetConfig::default();
    let parse = |key: &'static str, list: &AddrList| -> Result<Vec<Multiaddr>, ConfigError> {
        list.items()
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|e| invalid(key, format!("`{a}`: {e}")))
            })
            .collect()
    };
    let listen = match &raw.listen {
        Some(l) => parse("net.listen", l)?,
        None => d.listen.clone(),
    };
    for a in &listen {
        let transport_ok = a
            .iter()
            .any(|p| matches!(p, Protocol::Tcp(_) | Protocol::QuicV1));
        if !transport_ok {
            return Err(invalid(
                "net.listen",
                format!(
                    "`{a}`: expected a TCP or QUIC address, e.g. /ip4/0.0.0.0/tcp/9311 or /ip4/0.0.0.0/udp/9311/quic-v1"
                ),
            ));
        }
    }
    let bootstrap = match &raw.bootstrap {
        Some(l) => parse("net.bootstrap", l)?,
        None => Vec::new(),
    };
    for a in &bootstrap {
        if crate::net::peer_of(a).is_none() {
            return Err(invalid(
                "net.bootstrap",
                format!("`{a}`: must end in /p2p/<peer id>"),
            ));
        }
    }
    let external_addresses = match &raw.external_addresses {
        Some(l) => parse("net.external_addresses", l)?,
        None => Vec::new(),
    };
    for a in &external_addresses {
        if crate::net::ip_of(a).is_none_or(|ip| ip.is_unspecified()) {
            return Err(invalid(
                "net.external_addresses",
                format!("`{a}`: must start with a specific /ip4 or /ip6 address"),
            ));
        }
    }
    let max_connections = raw.max_connections.unwrap_or(d.max_connections);
    if !(1..=10_000).contains(&max_connections) {
        return Err(invalid("net.max_connections", "between 1 and 10000"));
    }
    let per_peer = raw
        .max_connections_per_peer
        .unwrap_or(d.max_connections_per_peer);
    if !(1..=16).contains(&per_peer) {
        return Err(invalid("net.max_connections_per_peer", "between 1 and 16"));
    }
    let memory = raw.max_memory_percent.unwrap_or(90.0);
    if !(1.0..=100.0).contains(&memory) {
        return Err(invalid("net.max_memory_percent", "between 1 and 100"));
    }
    let idle = raw.idle_timeout_s.unwrap_or(d.idle_timeout.as_secs());
    if !(10..=86_400).contains(&idle) {
        return Err(invalid(
            "net.idle_timeout_s",
            "between 10 and 86400 (ping does not keep connections open; gossip links should be long-lived)",
        ));
    }
    let request = raw.request_timeout_s.unwrap_or(d.request_timeout.as_secs());
    if !(1..=300).contains(&request) {
        return Err(invalid("net.request_timeout_s", "between 1 and 300"));
    }
    let status_cell_resolution = raw
        .status_cell_resolution
        .unwrap_or(d.status_cell_resolution);
    if status_cell_resolution > wisp_protocol::geo::ASSERT_RESOLUTION {
        return Err(invalid(
            "net.status_cell_resolution",
            format!(
                "an H3 resolution between 0 and {} (the asserted cell's own); lower is coarser: 7 is about 5 km², 5 about 250 km²",
                wisp_protocol::geo::ASSERT_RESOLUTION
            ),
        ));
    }
    Ok(crate::net::NetConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        listen,
        bootstrap,
        external_addresses,
        relay_server: raw.relay_server.unwrap_or(d.relay_server),
        mdns: raw.mdns.unwrap_or(d.mdns),
        kad_mode: match raw.kad_server {
            None => d.kad_mode,
            Some(true) => crate::net::KadMode::Server,
            Some(false) => crate::net::KadMode::WhenConfirmed,
        },
        max_connections,
        max_connections_per_peer: per_peer,
        max_memory_fraction: memory / 100.0,
        idle_timeout: std::time::Duration::from_secs(idle),
        request_timeout: std::time::Duration::from_secs(request),
        status_cell_resolution,
    })
}

fn resolve_mqtt(raw: &RawMqtt) -> Result<MqttConfig, ConfigError> {
    let url = raw.url.as_deref().unwrap_or("mqtt://127.0.0.1:1883");
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(invalid(
            "mqtt.url",
            format!("`{url}`: expected mqtt://host:port or mqtts://host:port"),
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| invalid("mqtt.url", format!("`{p}` is not a port")))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(invalid("mqtt.url", "missing host"));
    }
    let password = match (&raw.password, &raw.password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "mqtt.password",
                "set password or password_file, not both",
            ));
        }
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| invalid("mqtt.password_file", format!("{}: {e}", f.display())))?
                .trim_end()
                .to_string(),
        ),
        (None, None) => None,
    };
    let credentials = match (&raw.username, password) {
        (Some(u), Some(p)) => Some((u.clone(), p)),
        (Some(u), None) => Some((u.clone(), String::new())),
        (None, Some(_)) => return Err(invalid("mqtt.username", "a password needs a username")),
        (None, None) => None,
    };
    if raw.ca_file.is_some() && !tls {
        return Err(invalid("mqtt.ca_file", "only used with mqtts:// URLs"));
    }
    Ok(MqttConfig {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        tls,
        credentials,
        ca_file: raw.ca_file.clone(),
        keep_alive_s: raw.keep_alive_s.unwrap_or(60).clamp(5, 3600),
    })
}

// `v` is range-checked (within ±3276.7) before the cast.
#[allow(clippy::cast_possible_truncation)]
fn decidb(key: &'static str, v: f64, lo: f64, hi: f64) -> Result<DeciDb, ConfigError> {
    if !(lo..=hi).contains(&v) {
        return Err(invalid(key, format!("{v} is outside {lo}..{hi}")));
    }
    Ok(DeciDb((v * 10.0).round() as i16))
}

fn positive(key: &'static str, v: usize) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(v)
}

/// Keys whose values are strings, so environment overrides are never read as numbers.
const STRING_KEYS: &[(&str, &str)] = &[
    ("node", "data_dir"),
    ("node", "key_file"),
    ("node", "owner"),
    ("oracle", "public_key"),
    ("mqtt", "url"),
    ("mqtt", "username"),
    ("mqtt", "password"),
    ("mqtt", "password_file"),
    ("mqtt", "ca_file"),
    ("http", "listen"),
    ("log", "format"),
    ("log", "level"),
    ("device", "kind"),
    ("device", "maker"),
    ("device", "maker_certificate"),
    ("device", "air"),
    ("device", "position"),
    ("device", "gnss_spoof"),
    ("net", "listen"),
    ("net", "bootstrap"),
    ("net", "external_addresses"),
    ("bandwidth", "listen"),
    ("bandwidth", "advertise"),
];

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORACLE: &str = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_only_the_oracle_key() {
        let raw = RawConfig::load(None, env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE)])).unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!(c.oracle.to_string(), ORACLE);
        assert_eq!(c.mqtt.host, "127.0.0.1");
        assert_eq!(c.mqtt.port, 1883);
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9310");
        assert_eq!(c.radio.freq_khz, 2_412_000);
        assert_eq!(c.key_file, PathBuf::from("/var/lib/wisp/node.key"));
        assert!(c.cell.is_none());
        let err = RawConfig::load(None, env(&[]))
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("oracle.public_key"), "{err}");
    }

    #[test]
    fn file_then_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            format!(
                "[oracle]\npublic_key = \"{ORACLE}\"\n[mqtt]\nurl = \"mqtts://broker.example:8884\"\nusername = \"u\"\npassword = \"p\"\n\
                 [location]\nlat = 38.7\nlon = -9.1\n[outbox]\nmax_entries = 10\n"
            ),
        )
        .unwrap();
        let raw = RawConfig::load(
            Some(&p),
            env(&[
                ("WISP_OUTBOX__MAX_ENTRIES", "99"),
                ("WISP_LOG__FORMAT", "json"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        let c = raw.resolve().unwrap();
        assert_eq!(c.outbox.max_entries, 99);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.mqtt.tls);
        assert_eq!(
            (c.mqtt.host.as_str(), c.mqtt.port),
            ("broker.example", 8884)
        );
        assert_eq!(c.mqtt.credentials, Some(("u".into(), "p".into())));
        assert_eq!(c.cell.unwrap().resolution(), 12);
    }

    #[test]
    fn net_defaults_and_overrides() {
        let c = RawConfig::load(None, env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE)]))
            .unwrap()
            .resolve()
            .unwrap();
        assert!(c.net.enabled);
        assert_eq!(c.net.listen.len(), 2);
        assert!(c.net.bootstrap.is_empty());
        assert!(!c.net.mdns);
        assert_eq!(c.net.kad_mode, crate::net::KadMode::Auto);
        assert_eq!(c.net.idle_timeout.as_secs(), 600);
        assert_eq!(c.net.status_cell_resolution, 7);
        for (v, mode) in [
            ("true", crate::net::KadMode::Server),
            ("false", crate::net::KadMode::WhenConfirmed),
        ] {
            let c = RawConfig::load(
                None,
                env(&[
                    ("WISP_ORACLE__PUBLIC_KEY", ORACLE),
                    ("WISP_NET__KAD_SERVER", v),
                ]),
            )
            .unwrap()
            .resolve()
            .unwrap();
            assert_eq!(c.net.kad_mode, mode, "kad_server = {v}");
        }
        let peer = ORACLE;
        let c = RawConfig::load(
            None,
            env(&[
                ("WISP_ORACLE__PUBLIC_KEY", ORACLE),
                ("WISP_NET__LISTEN", "/ip4/127.0.0.1/tcp/0"),
                (
                    "WISP_NET__BOOTSTRAP",
                    &format!("/ip4/10.0.0.1/tcp/9311/p2p/{peer}, /ip4/10.0.0.2/udp/9311/quic-v1/p2p/{peer}"),
                ),
                ("WISP_NET__MDNS", "true"),
                ("WISP_NET__RELAY_SERVER", "true"),
                ("WISP_NET__ENABLED", "false"),
                ("WISP_NET__STATUS_CELL_RESOLUTION", "5"),
                (
                    "WISP_NET__EXTERNAL_ADDRESSES",
                    "/ip4/203.0.113.7/tcp/9311,/ip6/2001:db8::7/udp/9311/quic-v1",
                ),
            ]),
        )
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(c.net.listen.len(), 1);
        assert_eq!(c.net.bootstrap.len(), 2);
        assert_eq!(
            crate::net::pick_public_ip(&c.net.external_addresses),
            Some("203.0.113.7".parse().unwrap())
        );
        assert!(c.net.mdns && c.net.relay_server && !c.net.enabled);
        assert_eq!(c.net.status_cell_resolution, 5);
    }

    #[test]
    fn errors_name_the_key() {
        let check = |pairs: &[(&str, &str)], key: &str| {
            let mut all = env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE)]);
            all.extend(env(pairs));
            let err = RawConfig::load(None, all)
                .and_then(|r| r.resolve())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err} should name {key}");
        };
        check(&[("WISP_MQTT__URL", "http://x")], "mqtt.url");
        check(&[("WISP_MQTT__URL", "mqtt://x:notaport")], "mqtt.url");
        check(&[("WISP_HTTP__LISTEN", "nowhere")], "http.listen");
        check(&[("WISP_LOCATION__LAT", "10")], "location.lat");
        check(
            &[("WISP_LOCATION__LAT", "100"), ("WISP_LOCATION__LON", "0")],
            "location.lat",
        );
        check(&[("WISP_RADIO__TX_POWER_DBM", "90")], "radio.tx_power_dbm");
        check(&[("WISP_OUTBOX__MAX_ENTRIES", "0")], "outbox.max_entries");
        check(&[("WISP_LOG__FORMAT", "xml")], "log.format");
        check(&[("WISP_DEVICE__KIND", "gpu")], "device.kind");
        check(&[("WISP_NODE__OWNER", "bad owner")], "node.owner");
        check(&[("WISP_MQTT__PASSWORD", "p")], "mqtt.username");
        check(&[("WISP_NET__LISTEN", "/ip4/1.2.3.4")], "net.listen");
        check(&[("WISP_NET__LISTEN", "not an address")], "net.listen");
        check(
            &[("WISP_NET__BOOTSTRAP", "/ip4/1.2.3.4/tcp/1")],
            "net.bootstrap",
        );
        check(&[("WISP_NET__IDLE_TIMEOUT_S", "1")], "net.idle_timeout_s");
        check(
            &[("WISP_NET__EXTERNAL_ADDRESSES", "/ip4/0.0.0.0/tcp/9311")],
            "net.external_addresses",
        );
        check(
            &[("WISP_NET__EXTERNAL_ADDRESSES", "/dns4/example.org/tcp/9311")],
            "net.external_addresses",
        );
        check(&[("WISP_NET__MAX_CONNECTIONS", "0")], "net.max_connections");
        check(
            &[("WISP_NET__STATUS_CELL_RESOLUTION", "13")],
            "net.status_cell_resolution",
        );
        // A numeric password is still a string.
        let c = RawConfig::load(
            None,
            env(&[
                ("WISP_ORACLE__PUBLIC_KEY", ORACLE),
                ("WISP_MQTT__USERNAME", "u"),
                ("WISP_MQTT__PASSWORD", "123456"),
            ]),
        )
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(c.mqtt.credentials, Some(("u".into(), "123456".into())));
        check(&[("WISP_ORACLE__PUBLIC_KEY", "nope")], "oracle.public_key");
        // Unknown keys are typos, not silently ignored.
        let err = RawConfig::load(None, env(&[("WISP_MQTT__URLL", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }
}
