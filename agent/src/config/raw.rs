//! The configuration as written: the TOML file's sections, with `WISP_` environment overrides
//! applied on load.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    /// `[usage]`
    pub usage: RawUsage,
}

/// `[usage]`: proof of usage, the hotspot's side (subscribers' receipts on `/wisp/usage/1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUsage {
    /// Check, co-sign and send subscribers' usage receipts, and decide whom to block
    /// (default false: needs `[net]` and the router's per-client counters).
    pub enabled: Option<bool>,
    /// Relative tolerance between a receipt's totals and the hotspot's own counts, basis
    /// points of its own count, 0 to 10000 (default 200: 2 %).
    pub tolerance_bps: Option<u32>,
    /// Absolute tolerance in bytes per direction, and the unsigned usage a client may carry
    /// indefinitely (default 1048576: 1 MiB).
    pub slack_bytes: Option<u64>,
    /// Usage counted since the client's last agreed receipt beyond this blocks it at once; at
    /// least `slack_bytes` (default 67108864: 64 MiB, about 500 Mbit/s for a client signing
    /// once a second).
    pub grace_bytes: Option<u64>,
    /// Unsigned usage above `slack_bytes` for this many milliseconds blocks the client,
    /// 1000 to 3600000 (default 60000).
    pub grace_ms: Option<u64>,
    /// The enforcement hook: an absolute path to a program run as `<hook> block <client>` or
    /// `<hook> serve <client>`, the client as its subscriber's PeerId string (default none:
    /// decisions are logged and counted, not enforced).
    pub hook: Option<PathBuf>,
    /// Most clients tracked at once, each with at most one session, 1 to 65536 (default 256);
    /// a new client beyond it evicts the one idle longest.
    pub max_sessions: Option<usize>,
    /// Where each client's cumulative byte counters come from: `"endpoint"` (default: the
    /// agent's test endpoint `/wisp/usage-data/1` counts what it serves per peer) or
    /// `"command"` (`counters_command` prints them).
    pub counters: Option<String>,
    /// With `counters = "command"`: an absolute path to a program printing one line
    /// `<ip-or-mac> <down> <up>` per client (cumulative bytes, at most 64 KiB of output,
    /// within 5 s), e.g. from `nft -j list set …` or nl80211 station statistics.
    pub counters_command: Option<PathBuf>,
    /// How often the counters are read, besides just before each receipt, 200 to 600000
    /// milliseconds (default 5000).
    pub counters_interval_ms: Option<u64>,
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
    pub(super) fn items(&self) -> Vec<String> {
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

/// A list of numbers (frequencies, GPIO lines): a TOML array, or one comma-separated string
/// (for environment overrides such as `WISP_DEVICE__SCAN_FREQS_MHZ=2412,2437`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberList {
    /// `[2412, 2437]`
    List(Vec<u32>),
    /// `"2412,2437"`
    Csv(String),
}

/// An I²C address: a TOML integer (`0x60` or `96`), or a string (`"0x60"`, as an environment
/// override reads it).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum I2cAddress {
    /// `0x60`
    Number(u64),
    /// `"0x60"` or `"96"`
    Text(String),
}

impl std::fmt::Display for I2cAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            I2cAddress::Number(n) => write!(f, "{n:#04x}"),
            I2cAddress::Text(t) => f.write_str(t),
        }
    }
}

impl I2cAddress {
    /// The value, if it is a number that fits a byte.
    pub(super) fn value(&self) -> Option<u8> {
        match self {
            I2cAddress::Number(n) => u8::try_from(*n).ok(),
            I2cAddress::Text(t) => {
                let t = t.trim();
                match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u8::from_str_radix(hex, 16).ok(),
                    None => t.parse().ok(),
                }
            }
        }
    }
}

/// `[device]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDevice {
    /// `none` (no radio or GNSS), `sim` (the simulated device) or `linux` (the router's own
    /// WiFi and serial GNSS, each part optional).
    pub kind: Option<String>,
    /// `linux` only: hostapd's control socket for the access point that carries the beacons,
    /// e.g. `/var/run/hostapd/wlan0` (hostapd's `ctrl_interface` directory, then the
    /// interface). Unset: no beacons are transmitted.
    pub hostapd_ctrl: Option<PathBuf>,
    /// `linux` only: the wireless interface whose nl80211 scans receive neighbours' beacons,
    /// e.g. `wlan0`. Needs `hostapd_ctrl`. Unset: nothing is received.
    pub scan_interface: Option<String>,
    /// `linux` only: the scan interface runs the access point, so scans are asked for with
    /// `NL80211_SCAN_FLAG_AP` (default true).
    pub scan_ap: Option<bool>,
    /// `linux` only: seconds between scans before the first epoch seed, 2 to 3600 (default
    /// 10); from the first seed on, one scan per beacon slot.
    pub scan_interval_s: Option<f64>,
    /// `linux` only: the frequencies scanned, MHz (default: `radio.freq_mhz` alone).
    pub scan_freqs_mhz: Option<NumberList>,
    /// `linux` only: the GNSS receiver's serial device, e.g. `/dev/ttyUSB0`, read as NMEA 0183.
    /// Unset: no GNSS (the node uses `location`).
    pub gnss_tty: Option<PathBuf>,
    /// `linux` only: the GNSS serial port's baud rate (default 9600).
    pub gnss_baud: Option<u32>,
    /// `linux` only: the I²C adapter of the ATECC608 secure element, e.g. `/dev/i2c-1` (the
    /// `i2c-dev` module). Unset: no secure element (onboarding without attestation).
    pub se_i2c: Option<PathBuf>,
    /// `linux` only: the secure element's 7-bit I²C address (default 0x60, the ATECC608's).
    pub se_address: Option<I2cAddress>,
    /// `linux` only: the GPIO chip of the status LED, e.g. `/dev/gpiochip0`. Unset: no LED.
    pub led_gpiochip: Option<PathBuf>,
    /// `linux` only: the LED's red, green and blue lines on `led_gpiochip`, e.g. `[4, 5, 6]`.
    pub led_lines: Option<NumberList>,
    /// `linux` only: the LED lights when its lines are low (common anode; default false).
    pub led_active_low: Option<bool>,
    /// `linux` only: the GPIO chip of the button, e.g. `/dev/gpiochip0`. Unset: no button.
    pub button_gpiochip: Option<PathBuf>,
    /// `linux` only: the button's line offset on `button_gpiochip`.
    pub button_line: Option<u32>,
    /// `linux` only: pressing drives the line high (default false: pressing pulls it low
    /// against the internal pull-up, a button to ground).
    pub button_active_high: Option<bool>,
    /// `linux` only: the program run as `<hook> short|long|very_long` for each press. Unset:
    /// presses are only logged.
    pub button_hook: Option<PathBuf>,
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
    /// Password (prefer `password_file`); `{:?}` never shows it.
    pub password: Option<wisp_shell::broker::Password>,
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

impl RawConfig {
    /// Reads `path` (if given; a missing file is an error) and applies `WISP_*` overrides from
    /// `env`, each read as the type of the key it sets.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        Ok(wisp_shell::envconfig::load(path, env)?)
    }
}
