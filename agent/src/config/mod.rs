//! Configuration in two stages: a raw TOML file with `WISP_` environment overrides and command
//! line flags on top, deserialized into [`RawConfig`]; then validated into [`Config`] with
//! errors that name the key and say what is wrong.
//!
//! Environment variables: `WISP_<SECTION>__<KEY>` sets `[section] key`, e.g.
//! `WISP_MQTT__URL=mqtt://broker:1883` or `WISP_OUTBOX__MAX_ENTRIES=5000`. Values are read as
//! TOML scalars when they parse as one (numbers, booleans), else as strings.
//!
//! Layout: this file holds the resolved types and [`ConfigError`]; `raw.rs` the raw structs as
//! deserialized, with [`RawConfig::load`] (file and environment); `resolve.rs` their validation,
//! [`RawConfig::resolve`]; `tests.rs` the tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use wisp_protocol::{Cell, NodeId};

use crate::core::RadioParams;
use crate::outbox::OutboxConfig;

mod gpio;
mod raw;
mod resolve;
#[cfg(test)]
mod tests;

pub use raw::{
    AddrList, I2cAddress, NumberList, RawBandwidth, RawConfig, RawDevice, RawHeartbeat, RawHttp,
    RawLocation, RawLog, RawMqtt, RawNet, RawNode, RawOracle, RawOutbox, RawRadio, RawUsage,
};

/// Which hardware backend the daemon drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// No radio, no GNSS: the node heartbeats only.
    None,
    /// The simulated device (firmware `SimDevice`), its GNSS at the configured location.
    Sim,
    /// The router's own hardware, as [`LinuxDeviceConfig`] says.
    Linux,
}

/// `device.kind = "linux"`: which parts of the router the daemon drives. Each is optional; at
/// least one is set.
#[derive(Debug, Clone, PartialEq)]
pub struct LinuxDeviceConfig {
    /// hostapd's control socket: beacons are transmitted (`device.hostapd_ctrl`).
    pub hostapd_ctrl: Option<PathBuf>,
    /// nl80211 scans: beacons are received.
    pub scan: Option<ScanConfig>,
    /// An NMEA receiver on a serial port.
    pub gnss: Option<GnssTtyConfig>,
    /// An ATECC608 secure element on an I²C adapter.
    pub secure_element: Option<SecureElementConfig>,
    /// An RGB status LED on three GPIO lines.
    pub led: Option<LedConfig>,
    /// A button on a GPIO line.
    pub button: Option<ButtonConfig>,
}

/// The button's line and what a press runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonConfig {
    /// The GPIO chip (`device.button_gpiochip`).
    pub chip: PathBuf,
    /// The line offset (`device.button_line`).
    pub line: u32,
    /// Pressed drives the line high (`device.button_active_high`); by default pressed pulls it
    /// low against the line's internal pull-up (a button to ground).
    pub active_high: bool,
    /// Run as `<hook> short|long|very_long` for each press (`device.button_hook`); unset,
    /// presses are only logged.
    pub hook: Option<PathBuf>,
}

/// The status LED's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedConfig {
    /// The GPIO chip (`device.led_gpiochip`).
    pub chip: PathBuf,
    /// Red, green and blue line offsets (`device.led_lines`).
    pub lines: [u32; 3],
    /// Lit when low (`device.led_active_low`).
    pub active_low: bool,
}

/// The secure element's bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureElementConfig {
    /// The i2c-dev adapter (`device.se_i2c`).
    pub bus: PathBuf,
    /// The 7-bit address (`device.se_address`).
    pub address: u8,
}

/// The parts, one line (`wisp-agent config check`).
impl std::fmt::Display for LinuxDeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.hostapd_ctrl {
            parts.push(format!("beacons out through hostapd at {}", p.display()));
        }
        if let Some(s) = &self.scan {
            parts.push(format!(
                "beacons in by scanning {} ({:?} MHz) every {} s",
                s.interface,
                s.freqs_mhz,
                s.interval.as_secs_f64()
            ));
        }
        if let Some(g) = &self.gnss {
            parts.push(format!("GNSS on {} at {} baud", g.path.display(), g.baud));
        }
        if let Some(led) = &self.led {
            parts.push(format!(
                "LED on {} lines {:?}",
                led.chip.display(),
                led.lines
            ));
        }
        if let Some(b) = &self.button {
            parts.push(format!(
                "button on {} line {}{}",
                b.chip.display(),
                b.line,
                b.hook
                    .as_ref()
                    .map_or_else(String::new, |h| format!(" running {}", h.display()))
            ));
        }
        if let Some(se) = &self.secure_element {
            parts.push(format!(
                "secure element on {} at 0x{:02x}",
                se.bus.display(),
                se.address
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// nl80211 scans for receiving beacons.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanConfig {
    /// The wireless interface (`device.scan_interface`).
    pub interface: String,
    /// It runs the access point (`device.scan_ap`).
    pub ap_mode: bool,
    /// Time between scans before the first epoch seed (`device.scan_interval_s`); then one per
    /// beacon slot.
    pub interval: std::time::Duration,
    /// Frequencies scanned, MHz (`device.scan_freqs_mhz`).
    pub freqs_mhz: Vec<u32>,
}

/// A GNSS receiver on a serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnssTtyConfig {
    /// The device (`device.gnss_tty`).
    pub path: PathBuf,
    /// Its baud rate (`device.gnss_baud`).
    pub baud: u32,
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
    /// The broker: URL, login (its password never in `{:?}`) and CA, as the oracle reads its
    /// own (`wisp_shell::broker`).
    pub broker: wisp_shell::broker::Broker,
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
    /// The Linux device's parts, for `device.kind = "linux"`.
    pub linux: Option<LinuxDeviceConfig>,
    /// Maker name and certificate for onboarding with a secure-element attestation.
    pub attestation: Option<(String, [u8; 64])>,
    /// The libp2p network.
    pub net: crate::net::NetConfig,
    /// Proof of backhaul.
    pub bandwidth: BandwidthConfig,
    /// Proof of usage.
    pub usage: UsageSettings,
}

/// `[usage]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    /// Check, co-sign and send subscribers' receipts (`usage.enabled`).
    pub enabled: bool,
    /// The core's policy: tolerance, slack, grace and the session bound.
    pub policy: wisp_agent_core::usage::UsageConfig,
    /// The enforcement hook, run as `<hook> block|serve <peer id> <address or -> <reason>`
    /// (`usage.hook`).
    pub hook: Option<PathBuf>,
    /// Where the per-client counters come from (`usage.counters`).
    pub counters: CounterSource,
    /// How often the counters are read besides just before each receipt, milliseconds
    /// (`usage.counters_interval_ms`).
    pub counters_interval_ms: u64,
}

/// Where the usage driver reads each client's cumulative byte counters (`usage.counters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterSource {
    /// The agent's own test endpoint, `/wisp/usage-data/1`, counts what it serves per peer
    /// (`"endpoint"`, the default: devnets and tests).
    Endpoint,
    /// A program printing one line `<ip-or-mac> <down> <up>` per client, cumulative bytes
    /// (`"command"` with `usage.counters_command`): nftables or nl80211 counters on a router.
    Command(PathBuf),
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

/// A key that turns on a part of the daemon a cargo feature provides (default off): refused in a
/// build without the feature (the router build leaves some out) rather than ignored.
fn needs_feature(
    key: &'static str,
    on: Option<bool>,
    feature: &str,
    built: bool,
) -> Result<bool, ConfigError> {
    let on = on.unwrap_or(false);
    if on && !built {
        return Err(ConfigError::Invalid {
            key,
            why: format!(
                "this build of wisp-agent has no `{feature}` (a cargo feature, left out of the \
                 router build); set it to false or use a build with `--features {feature}`"
            ),
        });
    }
    Ok(on)
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read, or it or an override is not valid TOML for the schema.
    #[error(transparent)]
    Load(#[from] wisp_shell::envconfig::LoadError),
    /// A key has an invalid value.
    #[error("config key `{key}`: {why}")]
    Invalid {
        /// The key, `section.name`.
        key: &'static str,
        /// What is wrong and what is expected.
        why: String,
    },
}
