//! Loading and validating configurations.

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
    assert_eq!(c.mqtt.broker.host, "127.0.0.1");
    assert_eq!(c.mqtt.broker.port, 1883);
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
    assert!(c.mqtt.broker.tls);
    assert_eq!(
        (c.mqtt.broker.host.as_str(), c.mqtt.broker.port),
        ("broker.example", 8884)
    );
    let (user, password) = c.mqtt.broker.login.clone().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("u", "p"));
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
    let on_if = |built: bool| if built { "true" } else { "false" };
    let c = RawConfig::load(
        None,
        env(&[
            ("WISP_ORACLE__PUBLIC_KEY", ORACLE),
            ("WISP_NET__LISTEN", "/ip4/127.0.0.1/tcp/0"),
            (
                "WISP_NET__BOOTSTRAP",
                &format!(
                    "/ip4/10.0.0.1/tcp/9311/p2p/{peer}, /ip4/10.0.0.2/udp/9311/quic-v1/p2p/{peer}"
                ),
            ),
            // On where the build has them (a_key_the_build_lacks_is_refused covers the rest).
            ("WISP_NET__MDNS", on_if(cfg!(feature = "mdns"))),
            (
                "WISP_NET__RELAY_SERVER",
                on_if(cfg!(feature = "relay-server")),
            ),
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
    assert_eq!(c.net.mdns, cfg!(feature = "mdns"));
    assert_eq!(c.net.relay_server, cfg!(feature = "relay-server"));
    assert!(!c.net.enabled);
    assert_eq!(c.net.status_cell_resolution, 5);
}

#[test]
fn a_key_the_build_lacks_is_refused() {
    let e = needs_feature("net.mdns", Some(true), "mdns", false).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "net.mdns",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("`mdns`"), "{e}");
    assert!(!needs_feature("net.mdns", Some(false), "mdns", false).unwrap());
    assert!(!needs_feature("net.mdns", None, "mdns", false).unwrap());
    assert!(needs_feature("net.mdns", Some(true), "mdns", true).unwrap());
    // Through the whole configuration, in this build: refused exactly when it lacks the feature.
    for (var, key, feature, built) in [
        ("WISP_NET__MDNS", "net.mdns", "mdns", cfg!(feature = "mdns")),
        (
            "WISP_NET__RELAY_SERVER",
            "net.relay_server",
            "relay-server",
            cfg!(feature = "relay-server"),
        ),
    ] {
        let r = RawConfig::load(
            None,
            env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE), (var, "true")]),
        )
        .unwrap()
        .resolve();
        match r {
            Ok(_) => assert!(built, "{key} = true passed a build without `{feature}`"),
            Err(e) => {
                assert!(!built, "{key}: {e}");
                assert!(
                    e.to_string().contains(key) && e.to_string().contains(feature),
                    "{e}"
                );
            }
        }
    }
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
    let (user, password) = c.mqtt.broker.login.clone().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("u", "123456"));
    check(&[("WISP_ORACLE__PUBLIC_KEY", "nope")], "oracle.public_key");
    // Unknown keys are typos, not silently ignored.
    let err = RawConfig::load(None, env(&[("WISP_MQTT__URLL", "x")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("WISP_MQTT__URLL: unknown field `urll`"),
        "{err}"
    );
}

#[test]
fn overrides_are_read_as_their_keys_types() {
    // Every string key keeps its text, even one that looks like a number or a boolean.
    let c = RawConfig::load(
        None,
        env(&[
            ("WISP_NODE__OWNER", "0123"),
            ("WISP_NODE__DATA_DIR", "1"),
            ("WISP_MQTT__USERNAME", "true"),
            ("WISP_MQTT__PASSWORD", "0.5"),
            ("WISP_LOG__LEVEL", "7"),
            ("WISP_BANDWIDTH__DURATION_S", "3"),
            ("WISP_NET__MDNS", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(c.node.owner.as_deref(), Some("0123"));
    assert_eq!(c.node.data_dir, Some(PathBuf::from("1")));
    assert_eq!(c.mqtt.username.as_deref(), Some("true"));
    assert_eq!(c.mqtt.password.as_ref().map(|p| p.expose()), Some("0.5"));
    assert_eq!(c.log.level.as_deref(), Some("7"));
    assert_eq!(c.bandwidth.duration_s, Some(3.0));
    assert_eq!(c.net.mdns, Some(true));
    // A bad value names the variable and what its key takes.
    let check = |var: &str, value: &str, want: &str| {
        let err = RawConfig::load(None, env(&[(var, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{var}: {want}")), "{err}");
    };
    check(
        "WISP_MQTT__KEEP_ALIVE_S",
        "abc",
        r#"expected an unsigned integer, got "abc""#,
    );
    check(
        "WISP_NET__STATUS_CELL_RESOLUTION",
        "300",
        "expected an unsigned integer of at most 255",
    );
    check("WISP_RADIO__FREQ_MHZ", "2.4 GHz", "expected a number");
    check(
        "WISP_NET__MDNS",
        "yes",
        r#"expected true or false, got "yes""#,
    );
    check("WISP_TYPO__URL", "x", "unknown field `typo`");
}

#[test]
fn the_linux_device_takes_its_parts_and_names_bad_keys() {
    let load = |pairs: &[(&str, &str)]| {
        let mut all = env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE)]);
        all.extend(env(pairs));
        RawConfig::load(None, all).and_then(|r| r.resolve())
    };
    // Every part, with defaults where unset.
    let c = load(&[
        ("WISP_DEVICE__KIND", "linux"),
        ("WISP_DEVICE__HOSTAPD_CTRL", "/var/run/hostapd/wlan0"),
        ("WISP_DEVICE__SCAN_INTERFACE", "wlan0"),
        ("WISP_DEVICE__GNSS_TTY", "/dev/ttyUSB0"),
        ("WISP_RADIO__FREQ_MHZ", "2437"),
    ])
    .unwrap();
    assert_eq!(c.device, DeviceKind::Linux);
    let linux = c.linux.unwrap();
    assert_eq!(
        linux.hostapd_ctrl,
        Some(PathBuf::from("/var/run/hostapd/wlan0"))
    );
    assert_eq!(
        linux.scan,
        Some(ScanConfig {
            interface: "wlan0".into(),
            ap_mode: true,
            interval: std::time::Duration::from_secs(10),
            freqs_mhz: vec![2_437],
        })
    );
    assert_eq!(
        linux.gnss,
        Some(GnssTtyConfig {
            path: PathBuf::from("/dev/ttyUSB0"),
            baud: 9_600
        })
    );
    // Overrides, the frequency list from a comma-separated variable; GNSS alone is a device.
    let c = load(&[
        ("WISP_DEVICE__KIND", "linux"),
        ("WISP_DEVICE__HOSTAPD_CTRL", "/run/hostapd/phy0-ap0"),
        ("WISP_DEVICE__SCAN_INTERFACE", "phy0-ap0"),
        ("WISP_DEVICE__SCAN_AP", "false"),
        ("WISP_DEVICE__SCAN_INTERVAL_S", "2.5"),
        ("WISP_DEVICE__SCAN_FREQS_MHZ", "2412, 5180"),
    ])
    .unwrap();
    let scan = c.linux.unwrap().scan.unwrap();
    assert!(!scan.ap_mode);
    assert_eq!(scan.interval, std::time::Duration::from_millis(2_500));
    assert_eq!(scan.freqs_mhz, [2_412, 5_180]);
    let c = load(&[
        ("WISP_DEVICE__KIND", "linux"),
        ("WISP_DEVICE__GNSS_TTY", "/dev/ttyS1"),
        ("WISP_DEVICE__GNSS_BAUD", "115200"),
    ])
    .unwrap();
    let linux = c.linux.unwrap();
    assert!(linux.hostapd_ctrl.is_none() && linux.scan.is_none());
    assert_eq!(linux.gnss.unwrap().baud, 115_200);
    // Neither kind has linux keys otherwise.
    assert!(load(&[]).unwrap().linux.is_none());

    let check = |pairs: &[(&str, &str)], key: &str, why: &str| {
        let err = load(pairs).unwrap_err().to_string();
        assert!(
            err.contains(&format!("config key `{key}`")) && err.contains(why),
            "{err} should name {key} and say {why}"
        );
    };
    let linux = ("WISP_DEVICE__KIND", "linux");
    let tty = ("WISP_DEVICE__GNSS_TTY", "/dev/ttyUSB0");
    let hostapd = ("WISP_DEVICE__HOSTAPD_CTRL", "/var/run/hostapd/wlan0");
    check(&[linux], "device.kind", "at least one part");
    check(&[tty], "device.gnss_tty", "device.kind = \"linux\" only");
    check(
        &[("WISP_DEVICE__KIND", "sim"), hostapd],
        "device.hostapd_ctrl",
        "\"linux\" only",
    );
    check(
        &[linux, tty, ("WISP_DEVICE__GNSS_BAUD", "9601")],
        "device.gnss_baud",
        "not a standard rate",
    );
    check(
        &[linux, hostapd, ("WISP_DEVICE__GNSS_BAUD", "9600")],
        "device.gnss_baud",
        "needs device.gnss_tty",
    );
    check(
        &[linux, ("WISP_DEVICE__SCAN_INTERFACE", "wlan0"), tty],
        "device.scan_interface",
        "needs device.hostapd_ctrl",
    );
    check(
        &[linux, hostapd, ("WISP_DEVICE__SCAN_INTERFACE", "wlan 0")],
        "device.scan_interface",
        "network interface name",
    );
    check(
        &[linux, hostapd, ("WISP_DEVICE__SCAN_INTERVAL_S", "5")],
        "device.scan_interval_s",
        "needs device.scan_interface",
    );
    let scan = ("WISP_DEVICE__SCAN_INTERFACE", "wlan0");
    check(
        &[
            linux,
            hostapd,
            scan,
            ("WISP_DEVICE__SCAN_INTERVAL_S", "0.5"),
        ],
        "device.scan_interval_s",
        "between 2 and 3600",
    );
    check(
        &[
            linux,
            hostapd,
            scan,
            ("WISP_DEVICE__SCAN_FREQS_MHZ", "2412,fast"),
        ],
        "device.scan_freqs_mhz",
        "`fast`",
    );
    check(
        &[linux, hostapd, scan, ("WISP_DEVICE__SCAN_FREQS_MHZ", "915")],
        "device.scan_freqs_mhz",
        "915 MHz is not a WiFi channel",
    );
    check(&[("WISP_DEVICE__KIND", "usb")], "device.kind", "`linux`");
    // The secure element: its address defaults to the ATECC608's, reserved ones are refused.
    let c = load(&[linux, ("WISP_DEVICE__SE_I2C", "/dev/i2c-1")]).unwrap();
    assert_eq!(
        c.linux.unwrap().secure_element,
        Some(SecureElementConfig {
            bus: PathBuf::from("/dev/i2c-1"),
            address: 0x60
        })
    );
    let c = load(&[
        linux,
        ("WISP_DEVICE__SE_I2C", "/dev/i2c-0"),
        ("WISP_DEVICE__SE_ADDRESS", "0x35"),
    ])
    .unwrap();
    assert_eq!(c.linux.unwrap().secure_element.unwrap().address, 0x35);
    check(
        &[
            linux,
            ("WISP_DEVICE__SE_I2C", "/dev/i2c-1"),
            ("WISP_DEVICE__SE_ADDRESS", "0x78"),
        ],
        "device.se_address",
        "`0x78`: a 7-bit address between 0x08 and 0x77",
    );
    check(
        &[
            linux,
            ("WISP_DEVICE__SE_I2C", "/dev/i2c-1"),
            ("WISP_DEVICE__SE_ADDRESS", "sixty"),
        ],
        "device.se_address",
        "`sixty`",
    );
    check(
        &[linux, tty, ("WISP_DEVICE__SE_ADDRESS", "0x60")],
        "device.se_address",
        "needs device.se_i2c",
    );
    check(
        &[("WISP_DEVICE__SE_I2C", "/dev/i2c-1")],
        "device.se_i2c",
        "\"linux\" only",
    );
    // The LED: three lines on one chip.
    let c = load(&[
        linux,
        ("WISP_DEVICE__LED_GPIOCHIP", "/dev/gpiochip0"),
        ("WISP_DEVICE__LED_LINES", "4,5,6"),
        ("WISP_DEVICE__LED_ACTIVE_LOW", "true"),
    ])
    .unwrap();
    assert_eq!(
        c.linux.unwrap().led,
        Some(LedConfig {
            chip: PathBuf::from("/dev/gpiochip0"),
            lines: [4, 5, 6],
            active_low: true
        })
    );
    let chip = ("WISP_DEVICE__LED_GPIOCHIP", "/dev/gpiochip0");
    check(&[linux, chip], "device.led_gpiochip", "together");
    check(
        &[linux, chip, ("WISP_DEVICE__LED_LINES", "4,5")],
        "device.led_lines",
        "three line offsets",
    );
    check(
        &[linux, chip, ("WISP_DEVICE__LED_LINES", "4,5,red")],
        "device.led_lines",
        "`red`",
    );
    check(
        &[linux, tty, ("WISP_DEVICE__LED_ACTIVE_LOW", "true")],
        "device.led_active_low",
        "needs device.led_gpiochip",
    );
    // The button: a line on a chip, alone enough for a `linux` device; its hook optional.
    let bchip = ("WISP_DEVICE__BUTTON_GPIOCHIP", "/dev/gpiochip1");
    let c = load(&[linux, bchip, ("WISP_DEVICE__BUTTON_LINE", "17")]).unwrap();
    assert_eq!(
        c.linux.unwrap().button,
        Some(ButtonConfig {
            chip: PathBuf::from("/dev/gpiochip1"),
            line: 17,
            active_high: false,
            hook: None
        })
    );
    let c = load(&[
        linux,
        bchip,
        ("WISP_DEVICE__BUTTON_LINE", "17"),
        ("WISP_DEVICE__BUTTON_ACTIVE_HIGH", "true"),
        ("WISP_DEVICE__BUTTON_HOOK", "/etc/wisp/button.sh"),
    ])
    .unwrap();
    let b = c.linux.unwrap().button.unwrap();
    assert!(b.active_high);
    assert_eq!(b.hook, Some(PathBuf::from("/etc/wisp/button.sh")));
    check(&[linux, bchip], "device.button_gpiochip", "together");
    check(
        &[linux, tty, ("WISP_DEVICE__BUTTON_HOOK", "/x.sh")],
        "device.button_hook",
        "needs device.button_gpiochip",
    );
    check(
        &[
            linux,
            bchip,
            ("WISP_DEVICE__BUTTON_LINE", "3"),
            ("WISP_DEVICE__BUTTON_HOOK", ""),
        ],
        "device.button_hook",
        "a program",
    );
    check(&[bchip], "device.button_gpiochip", "\"linux\" only");
}

#[test]
fn the_linux_device_reads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.toml");
    std::fs::write(
        &p,
        format!(
            "[oracle]\npublic_key = \"{ORACLE}\"\n[device]\nkind = \"linux\"\n\
             hostapd_ctrl = \"/var/run/hostapd/wlan0\"\nscan_interface = \"wlan0\"\n\
             scan_freqs_mhz = [2412, 2437, 2462]\ngnss_tty = \"/dev/ttyS1\"\ngnss_baud = 38400\n\
             se_i2c = \"/dev/i2c-1\"\nse_address = 0x61\n"
        ),
    )
    .unwrap();
    let linux = RawConfig::load(Some(&p), env(&[]))
        .unwrap()
        .resolve()
        .unwrap()
        .linux
        .unwrap();
    assert_eq!(linux.scan.unwrap().freqs_mhz, [2_412, 2_437, 2_462]);
    assert_eq!(linux.gnss.unwrap().baud, 38_400);
    assert_eq!(linux.secure_element.unwrap().address, 0x61);
}

#[test]
fn usage_defaults_overrides_and_errors() {
    let resolve = |pairs: &[(&str, &str)]| {
        let mut all = env(&[("WISP_ORACLE__PUBLIC_KEY", ORACLE)]);
        all.extend(env(pairs));
        RawConfig::load(None, all).and_then(|r| r.resolve())
    };
    let c = resolve(&[]).unwrap();
    assert_eq!(
        c.usage,
        UsageSettings {
            enabled: false,
            policy: wisp_agent_core::usage::UsageConfig {
                tolerance_bps: 200,
                slack_bytes: 1 << 20,
                grace_bytes: 64 << 20,
                grace_ms: 60_000,
                max_sessions: 256,
            },
            hook: None,
            counters: CounterSource::Endpoint,
            counters_interval_ms: 5_000,
        }
    );
    let c = resolve(&[
        ("WISP_USAGE__ENABLED", "true"),
        ("WISP_USAGE__TOLERANCE_BPS", "500"),
        ("WISP_USAGE__SLACK_BYTES", "4096"),
        ("WISP_USAGE__GRACE_BYTES", "4096"),
        ("WISP_USAGE__GRACE_MS", "1000"),
        ("WISP_USAGE__HOOK", "/usr/libexec/wisp/usage-hook"),
        ("WISP_USAGE__MAX_SESSIONS", "1"),
        ("WISP_USAGE__COUNTERS", "command"),
        (
            "WISP_USAGE__COUNTERS_COMMAND",
            "/usr/libexec/wisp/usage-counters",
        ),
        ("WISP_USAGE__COUNTERS_INTERVAL_MS", "200"),
    ])
    .unwrap();
    assert_eq!(
        (c.usage.counters.clone(), c.usage.counters_interval_ms),
        (
            CounterSource::Command("/usr/libexec/wisp/usage-counters".into()),
            200
        )
    );
    assert!(c.usage.enabled);
    assert!(c.net.usage, "the network answers /wisp/usage/1");
    assert_eq!(
        (
            c.usage.policy.tolerance_bps,
            c.usage.policy.slack_bytes,
            c.usage.policy.grace_bytes,
            c.usage.policy.grace_ms,
            c.usage.policy.max_sessions
        ),
        (500, 4096, 4096, 1000, 1)
    );
    assert_eq!(
        c.usage.hook.as_deref(),
        Some(std::path::Path::new("/usr/libexec/wisp/usage-hook"))
    );
    for (pairs, key) in [
        (
            &[("WISP_USAGE__TOLERANCE_BPS", "10001")][..],
            "usage.tolerance_bps",
        ),
        (
            &[
                ("WISP_USAGE__SLACK_BYTES", "2000"),
                ("WISP_USAGE__GRACE_BYTES", "1999"),
            ][..],
            "usage.grace_bytes",
        ),
        (&[("WISP_USAGE__GRACE_MS", "999")][..], "usage.grace_ms"),
        (
            &[("WISP_USAGE__MAX_SESSIONS", "0")][..],
            "usage.max_sessions",
        ),
        (&[("WISP_USAGE__HOOK", "usage-hook")][..], "usage.hook"),
        (&[("WISP_USAGE__COUNTERS", "nft")][..], "usage.counters"),
        (
            &[("WISP_USAGE__COUNTERS", "command")][..],
            "usage.counters_command",
        ),
        (
            &[
                ("WISP_USAGE__COUNTERS", "command"),
                ("WISP_USAGE__COUNTERS_COMMAND", "nft-counters"),
            ][..],
            "usage.counters_command",
        ),
        (
            &[("WISP_USAGE__COUNTERS_COMMAND", "/bin/true")][..],
            "usage.counters_command",
        ),
        (
            &[("WISP_USAGE__COUNTERS_INTERVAL_MS", "100")][..],
            "usage.counters_interval_ms",
        ),
        (
            &[
                ("WISP_USAGE__ENABLED", "true"),
                ("WISP_NET__ENABLED", "false"),
            ][..],
            "usage.enabled",
        ),
    ] {
        let err = resolve(pairs).unwrap_err().to_string();
        assert!(err.contains(key), "{err} should name {key}");
    }
}
