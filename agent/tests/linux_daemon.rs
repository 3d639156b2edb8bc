//! The real `wisp-agent` binary with `device.kind = "linux"`: its beacon goes out through a
//! fake hostapd on a real Unix socket and its GNSS is a real pseudo-terminal fed a recorded
//! NMEA log at the receiver's pace; `/status` reports both parts as checked. (Receiving needs
//! nl80211, which this machine lacks: `tests/linux_device.rs` covers it below the socket.)
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::linux::{FakeHostapd, nmea_bursts, pty};
use common::*;
use wisp_firmware::radio::ie;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{Beacon, EpochParams, EpochSeed};
use wisp_protocol::{NodeKey, schedule};

#[test]
fn the_daemon_beacons_through_hostapd_and_reads_gnss_from_a_tty() {
    // hostapd on channel 6, answering as 2.10 does; every command is passed on.
    let hostapd = FakeHostapd::start();
    let ctrl = hostapd.path.clone();

    // The GNSS receiver: the log's four seconds, over and over, a burst a second.
    let (mut receiver, slave, tty) = pty();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_feed = Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let bursts = nmea_bursts();
        for burst in bursts.iter().cycle() {
            if stop_feed.load(Ordering::Relaxed) {
                break;
            }
            receiver.write_all(burst.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_secs(1));
        }
        drop(slave);
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
        let command = hostapd
            .next_command(left)
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
        hostapd.next_command(Duration::from_secs(5)).unwrap(),
        "UPDATE_BEACON"
    );
    assert!(wait_for(Duration::from_secs(5), || agent
        .metric("wisp_beacons_transmitted_total")
        >= 1.0));
    assert_eq!(agent.status()["device"]["radio_ok"], true);

    assert!(agent.stop().success());
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
}
