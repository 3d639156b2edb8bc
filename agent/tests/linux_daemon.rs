//! The real `wisp-agent` binary with `device.kind = "linux"`: its beacon goes out through a
//! fake hostapd on a real Unix socket and its GNSS is a real pseudo-terminal fed a recorded
//! NMEA log at the receiver's pace; `/status` reports both parts as checked. (Receiving needs
//! nl80211, which this machine lacks: `tests/linux_device.rs` covers it below the socket.)
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use common::*;
use wisp_firmware::radio::ie;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{Beacon, EpochParams, EpochSeed};
use wisp_protocol::{NodeKey, schedule};

const NMEA: &str = include_str!("fixtures/nmea/nmea1-head.log");

#[test]
fn the_daemon_beacons_through_hostapd_and_reads_gnss_from_a_tty() {
    // hostapd on channel 6, answering as 2.10 does; every command is passed on.
    let ctrl = PathBuf::from(format!("/tmp/wisp-daemon-hostapd-{}", std::process::id()));
    let _ = std::fs::remove_file(&ctrl);
    let server = UnixDatagram::bind(&ctrl).unwrap();
    let (commands_tx, commands) = sync_channel::<String>(256);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let command = String::from_utf8_lossy(&buf[..n]).into_owned();
            let reply = match command.split_once(' ').map_or(command.as_str(), |(c, _)| c) {
                "PING" => "PONG\n",
                "STATUS" => "state=ENABLED\nfreq=2437\nchannel=6\n",
                "SET" | "UPDATE_BEACON" => "OK\n",
                _ => "UNKNOWN COMMAND\n",
            };
            let _ = server.send_to(reply.as_bytes(), from.as_pathname().unwrap());
            let _ = commands_tx.try_send(command);
        }
    });

    // The GNSS receiver: the log's four seconds, over and over, a burst a second.
    let pair = nix::pty::openpty(None, None).unwrap();
    let tty = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
    let mut receiver = std::fs::File::from(pair.master);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_feed = Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let mut bursts = vec![String::new()];
        for line in NMEA.lines() {
            let last = bursts.last_mut().unwrap();
            last.push_str(line);
            last.push_str("\r\n");
            if line.starts_with("$GPGGA") {
                bursts.push(String::new());
            }
        }
        bursts.retain(|b| !b.is_empty());
        for burst in bursts.iter().cycle() {
            if stop_feed.load(Ordering::Relaxed) {
                break;
            }
            receiver.write_all(burst.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(1));
        }
        drop(pair.slave);
    });

    // A known node key, and an epoch whose beacon slot for it opens a few seconds from now.
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::from_seed(&[0x37; 32]);
    wisp_shell::keyfile::save_new(&dir.path().join("node.key"), &key).unwrap();
    let oracle_key = oracle_key();
    let now = wisp_agent::wallclock::wall_ms();
    let seed = (0..=255u8)
        .map(|b| EpochSeed {
            epoch: 1,
            start_ms: 0,
            duration_ms: 60_000,
            seed: [b; 32].into(),
            params: EpochParams {
                slot_count: 20,
                heartbeat_interval_ms: 1_000,
                ..EpochParams::default()
            },
        })
        .find(|s| schedule::beacon_window(s, &key.id()).0 >= 9_000)
        .unwrap();
    let (offset, _) = schedule::beacon_window(&seed, &key.id());
    let seed = EpochSeed {
        start_ms: now + 6_000 - offset,
        ..seed
    };
    let broker = start_broker();
    let oracle = TestOracle::start_with_seed(
        "127.0.0.1",
        broker,
        Envelope::sign(&oracle_key, &seed).to_bytes(),
    );

    let mut env = agent_env(dir.path(), broker, &oracle.key);
    for (k, v) in [
        ("WISP_DEVICE__KIND", "linux"),
        ("WISP_DEVICE__HOSTAPD_CTRL", ctrl.to_str().unwrap()),
        ("WISP_DEVICE__GNSS_TTY", tty.to_str().unwrap()),
        ("WISP_RADIO__FREQ_MHZ", "2437"),
        ("WISP_LOCATION__LAT", "55.0888"),
        ("WISP_LOCATION__LON", "38.9765"),
    ] {
        env.push((k.into(), v.into()));
    }
    let agent = Agent::spawn(dir.path(), &env);

    // GNSS: a fix from the log, and the part checked.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = agent.status();
            s["device"]["checks"]["gnss"] == "passed" && !s["fix"].is_null()
        }),
        "{}",
        agent.status()
    );
    let status = agent.status();
    assert_eq!(status["firmware_version"], "linux");
    // 55.0888…° N, the log's first seconds.
    let lat = status["fix"]["lat_e7"].as_i64().unwrap();
    assert!((550_880_000..550_900_000).contains(&lat), "{lat}");
    assert_eq!(
        status["device"]["checks"]["radio"], "passed",
        "hostapd answered"
    );
    assert_eq!(status["device"]["checks"]["receive"], "not_checked");
    assert_eq!(status["device"]["gnss_ok"], true);

    // The beacon, in its slot: a vendor element holding the node's signed beacon.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let beacon = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let command = commands
            .recv_timeout(left)
            .expect("no beacon through hostapd");
        if let Some(hex) = command.strip_prefix("SET vendor_elements ") {
            let elements = hex::decode(hex).unwrap();
            let payload = ie::wisp_payloads(&elements).next().unwrap().to_vec();
            break payload;
        }
    };
    let opened = envelope::open::<Beacon>(&beacon).unwrap();
    assert_eq!(opened.signer, key.id());
    assert_eq!((opened.msg.epoch, opened.msg.freq_khz), (1, 2_437_000));
    let (start, end) = schedule::beacon_window(&seed, &key.id());
    assert!((start..end).contains(&opened.msg.tx_ms));
    assert_eq!(
        commands.recv_timeout(Duration::from_secs(5)).unwrap(),
        "UPDATE_BEACON"
    );
    assert!(wait_for(Duration::from_secs(5), || agent
        .metric("wisp_beacons_transmitted_total")
        >= 1.0));
    assert_eq!(agent.status()["device"]["radio_ok"], true);

    assert!(agent.stop().success());
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    let _ = std::fs::remove_file(&ctrl);
}
