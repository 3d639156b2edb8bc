//! Validation: [`RawConfig`] into [`Config`], with errors that name the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeId};

use super::{
    AddrList, BandwidthConfig, Config, ConfigError, CounterSource, DeviceKind, GnssTtyConfig,
    LinuxDeviceConfig, LogFormat, MqttConfig, NumberList, RawBandwidth, RawConfig, RawDevice,
    RawMqtt, RawNet, RawUsage, ScanConfig, SecureElementConfig, UsageSettings,
};
use crate::core::RadioParams;
use crate::outbox::OutboxConfig;

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

pub(super) fn invalid(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        why: why.into(),
    }
}

impl RawConfig {
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
            "linux" => DeviceKind::Linux,
            other => {
                return Err(invalid(
                    "device.kind",
                    format!("`{other}`: expected `none`, `sim` or `linux`"),
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
        let mut net = resolve_net(&self.net)?;
        let bandwidth = resolve_bandwidth(&self.bandwidth)?;
        let usage = resolve_usage(&self.usage)?;
        net.usage = usage.enabled;
        if usage.enabled && !net.enabled {
            return Err(invalid(
                "usage.enabled",
                "receipts arrive over libp2p: set net.enabled = true too",
            ));
        }
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
        let linux = resolve_linux(&self.device, device, radio.freq_khz)?;
        Ok(Config {
            linux,
            net,
            bandwidth,
            usage,
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

/// The `linux` device's keys: set only with `device.kind = "linux"`, which needs one part.
// The interval is range-checked before it is cast.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn resolve_linux(
    raw: &RawDevice,
    kind: DeviceKind,
    radio_freq_khz: u32,
) -> Result<Option<LinuxDeviceConfig>, ConfigError> {
    if kind != DeviceKind::Linux {
        let set = [
            ("device.hostapd_ctrl", raw.hostapd_ctrl.is_some()),
            ("device.scan_interface", raw.scan_interface.is_some()),
            ("device.scan_ap", raw.scan_ap.is_some()),
            ("device.scan_interval_s", raw.scan_interval_s.is_some()),
            ("device.scan_freqs_mhz", raw.scan_freqs_mhz.is_some()),
            ("device.gnss_tty", raw.gnss_tty.is_some()),
            ("device.gnss_baud", raw.gnss_baud.is_some()),
            ("device.se_i2c", raw.se_i2c.is_some()),
            ("device.se_address", raw.se_address.is_some()),
            ("device.led_gpiochip", raw.led_gpiochip.is_some()),
            ("device.led_lines", raw.led_lines.is_some()),
            ("device.led_active_low", raw.led_active_low.is_some()),
            ("device.button_gpiochip", raw.button_gpiochip.is_some()),
            ("device.button_line", raw.button_line.is_some()),
            (
                "device.button_active_high",
                raw.button_active_high.is_some(),
            ),
            ("device.button_hook", raw.button_hook.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, is_set)| *is_set) {
            return Err(invalid(key, "applies to device.kind = \"linux\" only"));
        }
        return Ok(None);
    }
    let hostapd_ctrl = match &raw.hostapd_ctrl {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid(
                "device.hostapd_ctrl",
                "a path, e.g. /var/run/hostapd/wlan0",
            ));
        }
        p => p.clone(),
    };
    let scan = match raw.scan_interface.as_deref() {
        None => {
            let stray = [
                ("device.scan_ap", raw.scan_ap.is_some()),
                ("device.scan_interval_s", raw.scan_interval_s.is_some()),
                ("device.scan_freqs_mhz", raw.scan_freqs_mhz.is_some()),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, is_set)| *is_set) {
                return Err(invalid(key, "needs device.scan_interface"));
            }
            None
        }
        Some(interface) => {
            // IFNAMSIZ is 16 with the NUL; the kernel refuses '/' and whitespace.
            if interface.is_empty()
                || interface.len() > 15
                || interface.bytes().any(|b| {
                    b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic()
                })
            {
                return Err(invalid(
                    "device.scan_interface",
                    format!("`{interface}`: a network interface name, e.g. wlan0"),
                ));
            }
            if hostapd_ctrl.is_none() {
                return Err(invalid(
                    "device.scan_interface",
                    "needs device.hostapd_ctrl: received beacons go through the same radio as transmitted ones",
                ));
            }
            let secs = raw.scan_interval_s.unwrap_or(10.0);
            if !(2.0..=3600.0).contains(&secs) {
                return Err(invalid(
                    "device.scan_interval_s",
                    "between 2 and 3600 seconds",
                ));
            }
            let freqs_mhz = match &raw.scan_freqs_mhz {
                None => vec![(radio_freq_khz + 500) / 1_000],
                Some(list) => freq_list(list)?,
            };
            Some(ScanConfig {
                interface: interface.to_string(),
                ap_mode: raw.scan_ap.unwrap_or(true),
                interval: std::time::Duration::from_millis((secs * 1000.0).round() as u64),
                freqs_mhz,
            })
        }
    };
    let gnss = match &raw.gnss_tty {
        None => {
            if raw.gnss_baud.is_some() {
                return Err(invalid("device.gnss_baud", "needs device.gnss_tty"));
            }
            None
        }
        Some(path) if path.as_os_str().is_empty() => {
            return Err(invalid("device.gnss_tty", "a path, e.g. /dev/ttyUSB0"));
        }
        Some(path) => {
            let baud = raw.gnss_baud.unwrap_or(9_600);
            if wisp_firmware::gnss::tty::baud_rate(baud).is_none() {
                return Err(invalid(
                    "device.gnss_baud",
                    wisp_firmware::gnss::tty::TtyError::Baud(baud).to_string(),
                ));
            }
            Some(GnssTtyConfig {
                path: path.clone(),
                baud,
            })
        }
    };
    let secure_element = match &raw.se_i2c {
        None => {
            if raw.se_address.is_some() {
                return Err(invalid("device.se_address", "needs device.se_i2c"));
            }
            None
        }
        Some(bus) if bus.as_os_str().is_empty() => {
            return Err(invalid("device.se_i2c", "a path, e.g. /dev/i2c-1"));
        }
        Some(bus) => {
            let address = match &raw.se_address {
                None => wisp_firmware::se::atecc::DEFAULT_ADDRESS,
                // 0x00-0x07 and 0x78-0x7F are reserved by the I²C specification.
                Some(a) => a
                    .value()
                    .filter(|v| (0x08..=0x77).contains(v))
                    .ok_or_else(|| {
                        invalid(
                            "device.se_address",
                            format!("`{a}`: a 7-bit address between 0x08 and 0x77, e.g. 0x60"),
                        )
                    })?,
            };
            Some(SecureElementConfig {
                bus: bus.clone(),
                address,
            })
        }
    };
    let led = super::gpio::resolve_led(raw)?;
    let button = super::gpio::resolve_button(raw)?;
    if hostapd_ctrl.is_none()
        && scan.is_none()
        && gnss.is_none()
        && secure_element.is_none()
        && led.is_none()
        && button.is_none()
    {
        return Err(invalid(
            "device.kind",
            "`linux` needs at least one part: device.hostapd_ctrl (beacons out), device.scan_interface (beacons in), device.gnss_tty (GNSS), device.se_i2c (secure element), device.led_gpiochip (status LED) or device.button_gpiochip (button)",
        ));
    }
    Ok(Some(LinuxDeviceConfig {
        hostapd_ctrl,
        scan,
        gnss,
        secure_element,
        led,
        button,
    }))
}

pub(super) fn number_list(
    key: &'static str,
    list: &NumberList,
    what: &str,
) -> Result<Vec<u32>, ConfigError> {
    match list {
        NumberList::List(v) => Ok(v.clone()),
        NumberList::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| {
                x.parse::<u32>()
                    .map_err(|_| invalid(key, format!("`{x}`: expected {what}")))
            })
            .collect(),
    }
}

fn freq_list(list: &NumberList) -> Result<Vec<u32>, ConfigError> {
    let key = "device.scan_freqs_mhz";
    let freqs = number_list(key, list, "a frequency in MHz")?;
    if freqs.is_empty() || freqs.len() > 64 {
        return Err(invalid(key, "1 to 64 frequencies in MHz"));
    }
    if let Some(f) = freqs.iter().find(|f| !(2_400..=7_125).contains(*f)) {
        return Err(invalid(
            key,
            format!("{f} MHz is not a WiFi channel frequency (2400 to 7125 MHz)"),
        ));
    }
    Ok(freqs)
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

fn resolve_usage(raw: &RawUsage) -> Result<UsageSettings, ConfigError> {
    use wisp_agent_core::usage::UsageConfig;
    let d = UsageConfig::default();
    let policy = UsageConfig {
        tolerance_bps: raw.tolerance_bps.unwrap_or(d.tolerance_bps),
        slack_bytes: raw.slack_bytes.unwrap_or(d.slack_bytes),
        grace_bytes: raw.grace_bytes.unwrap_or(d.grace_bytes),
        grace_ms: raw.grace_ms.unwrap_or(d.grace_ms),
        max_sessions: raw.max_sessions.unwrap_or(d.max_sessions),
    };
    if policy.tolerance_bps > 10_000 {
        return Err(invalid(
            "usage.tolerance_bps",
            "between 0 and 10000 basis points (100 %)",
        ));
    }
    if policy.grace_bytes < policy.slack_bytes {
        return Err(invalid(
            "usage.grace_bytes",
            format!(
                "{} is below usage.slack_bytes ({}): the grace must allow what the slack does",
                policy.grace_bytes, policy.slack_bytes
            ),
        ));
    }
    if !(1_000..=3_600_000).contains(&policy.grace_ms) {
        return Err(invalid(
            "usage.grace_ms",
            "between 1000 and 3600000 milliseconds",
        ));
    }
    if !(1..=65_536).contains(&policy.max_sessions) {
        return Err(invalid("usage.max_sessions", "between 1 and 65536"));
    }
    if let Some(h) = &raw.hook
        && !h.is_absolute()
    {
        return Err(invalid(
            "usage.hook",
            format!("`{}`: expected an absolute path to a program", h.display()),
        ));
    }
    let counters = match (raw.counters.as_deref(), &raw.counters_command) {
        (None | Some("endpoint"), None) => CounterSource::Endpoint,
        (Some("command"), Some(p)) if p.is_absolute() => CounterSource::Command(p.clone()),
        (Some("command"), _) => {
            return Err(invalid(
                "usage.counters_command",
                "counters = \"command\" needs an absolute path to a program",
            ));
        }
        (None | Some("endpoint"), Some(_)) => {
            return Err(invalid(
                "usage.counters_command",
                "set only with counters = \"command\"",
            ));
        }
        (Some(o), _) => {
            return Err(invalid(
                "usage.counters",
                format!("`{o}`: expected \"endpoint\" or \"command\""),
            ));
        }
    };
    let counters_interval_ms = raw.counters_interval_ms.unwrap_or(5_000);
    if !(200..=600_000).contains(&counters_interval_ms) {
        return Err(invalid(
            "usage.counters_interval_ms",
            "between 200 and 600000 milliseconds",
        ));
    }
    Ok(UsageSettings {
        enabled: raw.enabled.unwrap_or(false),
        policy,
        hook: raw.hook.clone(),
        counters,
        counters_interval_ms,
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
        relay_server: super::needs_feature(
            "net.relay_server",
            raw.relay_server,
            "relay-server",
            cfg!(feature = "relay-server"),
        )?,
        mdns: super::needs_feature("net.mdns", raw.mdns, "mdns", cfg!(feature = "mdns"))?,
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
        // Set from `[usage]` by `resolve`.
        usage: false,
    })
}

fn resolve_mqtt(raw: &RawMqtt) -> Result<MqttConfig, ConfigError> {
    let broker = wisp_shell::broker::Broker::resolve(&wisp_shell::broker::BrokerKeys {
        url: raw.url.as_deref().unwrap_or("mqtt://127.0.0.1:1883"),
        username: raw.username.as_deref(),
        password: raw.password.as_ref(),
        password_file: raw.password_file.as_deref(),
        ca_file: raw.ca_file.as_deref(),
    })
    .map_err(|e| {
        let key = match e.key {
            "url" => "mqtt.url",
            "username" => "mqtt.username",
            "password" => "mqtt.password",
            "password_file" => "mqtt.password_file",
            "ca_file" => "mqtt.ca_file",
            _ => "mqtt",
        };
        invalid(key, e.why)
    })?;
    Ok(MqttConfig {
        broker,
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
