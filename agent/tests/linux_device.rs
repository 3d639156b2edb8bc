//! `device.kind = "linux"` with what a machine without WiFi or I²C has: GNSS through a real
//! pseudo-terminal pair fed a recorded NMEA log at the receiver's pace, hostapd's control
//! protocol against a fake hostapd on a real Unix socket, and nl80211 replaced at its socket
//! boundary (scan results built from the netlink attributes the kernel sends) on the way from a
//! scan to a signed witness. The real nl80211 sockets are opened once, on an interface that
//! cannot scan. The GPIO parts (LED, button) are in `linux_gpio.rs`.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wisp_agent::config::{GnssTtyConfig, LinuxDeviceConfig, ScanConfig, SecureElementConfig};
use wisp_agent::core::{Core, CoreConfig, TxFrame};
use wisp_agent::device::linux::{LinuxDevice, ScanSource, SlotClock};
use wisp_agent::device::{DeviceError, DeviceIo, RxFrame};
use wisp_agent::status::Check;
use wisp_agent::wallclock::wall_ms;
use wisp_firmware::gnss::NmeaParser;
use wisp_firmware::radio::ie;
use wisp_firmware::radio::linux::nl80211::{self, ScanEntry, scan_entry_from_bss};
use wisp_firmware::radio::linux::{BEACON_ON_AIR, LinuxRadio, LinuxRadioConfig};
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{Beacon, EpochParams, EpochSeed, Versions, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeKey, schedule};
use wl_nl80211::Nl80211BssInfo;

use common::linux::{FakeHostapd, NMEA, nmea_bursts, pty};

fn gnss_only(path: &Path, baud: u32) -> LinuxDeviceConfig {
    LinuxDeviceConfig {
        hostapd_ctrl: None,
        scan: None,
        gnss: Some(GnssTtyConfig {
            path: path.to_path_buf(),
            baud,
        }),
        secure_element: None,
        led: None,
        button: None,
    }
}

/// Polls `f` every 10 ms of real time until it gives something, for at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn gnss_fixes_arrive_from_a_tty_fed_at_the_receivers_pace() {
    let (mut receiver, _slave, path) = pty();
    let mut device = LinuxDevice::open(&gnss_only(&path, 9_600), 2_437_000).unwrap();
    assert_eq!(device.health().gnss, Check::NotChecked, "nothing read yet");

    // The log's fixes, parsed in one go: what the device must deliver one by one.
    let mut expected = Vec::new();
    NmeaParser::new().push_each(NMEA.as_bytes(), |f| expected.push(f));
    assert_eq!(expected.len(), 4);

    // One burst per second (the receiver's 1 Hz), each written at 9600 baud 8N1 (960 bytes/s,
    // one sentence at a time), as a UART delivers it.
    let bursts = nmea_bursts();
    assert_eq!(bursts.len(), 4);
    let writer = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        for (second, burst) in bursts.iter().enumerate() {
            let at = start + Duration::from_secs(u64::try_from(second).unwrap());
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            for line in burst.split_inclusive('\n') {
                receiver.write_all(line.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_micros(
                    u64::try_from(line.len()).unwrap() * 1_000_000 / 960,
                ));
            }
        }
        receiver
    });

    let mut got = Vec::new();
    let first_at = std::time::Instant::now();
    while got.len() < expected.len() {
        let fix = wait_for(Duration::from_secs(3), || device.poll_fix())
            .unwrap_or_else(|| panic!("fix {} did not arrive", got.len() + 1));
        got.push((fix, std::time::Instant::now()));
        assert_eq!(device.health().gnss, Check::Passed);
    }
    for ((fix, _), want) in got.iter().zip(&expected) {
        assert_eq!(
            (fix.lat_e7, fix.lon_e7, fix.alt_mm, fix.satellites),
            (want.lat_e7, want.lon_e7, want.alt_mm, want.satellites)
        );
        assert_eq!(Some(fix.utc_ms), want.utc.unix_ms(), "RMC's date is used");
    }
    // 2017-03-31 11:01:24 UTC, 55.0888498° N 38.9764554° E.
    assert_eq!(
        (got[0].0.lat_e7, got[0].0.lon_e7, got[0].0.utc_ms),
        (550_888_498, 389_764_554, 1_490_958_084_000)
    );
    // Delivered as they came, a second apart, not all at the end.
    let spread = got[3].1.duration_since(got[0].1);
    assert!(spread >= Duration::from_millis(2_500), "{spread:?}");
    assert!(got[0].1.duration_since(first_at) < Duration::from_secs(2));
    assert!(device.poll_fix().is_none(), "each fix is taken once");

    // The receiver goes away (unplugged): the part has failed.
    drop(writer.join().unwrap());
    assert!(
        wait_for(Duration::from_secs(3), || {
            (device.health().gnss == Check::Failed).then_some(())
        })
        .is_some(),
        "a closed port is a failed GNSS"
    );
}

#[test]
fn a_wrong_baud_rate_shows_as_a_failed_gnss() {
    let (mut receiver, _slave, path) = pty();
    let device = LinuxDevice::open(&gnss_only(&path, 115_200), 2_437_000).unwrap();
    // What a 9600 baud receiver looks like read at 115200: bytes, never a valid sentence.
    let noise: Vec<u8> = (0..2_100u32)
        .map(|i| u8::try_from(i * 37 % 251).unwrap() | 0x80)
        .collect();
    receiver.write_all(&noise).unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || {
            (device.health().gnss == Check::Failed).then_some(())
        })
        .is_some()
    );

    // Opening errors name the key.
    let e =
        LinuxDevice::open(&gnss_only(Path::new("/nonexistent/tty"), 9_600), 2_437_000).unwrap_err();
    assert!(format!("{e:#}").contains("device.gnss_tty"), "{e:#}");
    assert!(format!("{e:#}").contains("/nonexistent/tty"), "{e:#}");
}

// A tokio test: each beacon's end is a task on the runtime (paused: none runs here).
#[tokio::test(start_paused = true)]
async fn beacons_go_out_through_hostapd_and_a_restarted_hostapd_is_found_again() {
    let fake = FakeHostapd::start();
    let cfg = LinuxDeviceConfig {
        hostapd_ctrl: Some(fake.path.clone()),
        scan: None,
        gnss: None,
        secure_element: None,
        led: None,
        button: None,
    };
    let mut device = LinuxDevice::open(&cfg, 2_437_000).unwrap();
    assert_eq!(fake.received(), ["STATUS"], "the frequency read at open");
    assert_eq!(device.health().radio, Check::Passed, "hostapd answered");
    assert_eq!(device.health().gnss, Check::NotChecked);

    let frame = |payload: &[u8], freq_khz| TxFrame {
        payload: payload.to_vec(),
        freq_khz,
        width_mhz: 20,
    };
    device.transmit(&frame(b"beacon-1", 2_437_000)).unwrap();
    let sent = fake.received();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let elements = hex::decode(sent[0].strip_prefix("SET vendor_elements ").unwrap()).unwrap();
    assert_eq!(
        ie::wisp_payloads(&elements).collect::<Vec<_>>(),
        [&b"beacon-1"[..]]
    );
    assert_eq!(sent[1], "UPDATE_BEACON");

    // A beacon on another channel than the AP's fails, and the check says so.
    let e = device.transmit(&frame(b"beacon-2", 2_412_000)).unwrap_err();
    assert!(matches!(e, DeviceError::Radio(_)), "{e:?}");
    assert!(e.to_string().contains("2437000 kHz"), "{e}");
    assert_eq!(device.health().radio, Check::Failed);

    // hostapd restarts (a WiFi reload): a new socket at the same path.
    let path = fake.stop();
    let fake = FakeHostapd::start_at(path);
    device.transmit(&frame(b"beacon-3", 2_437_000)).unwrap();
    assert_eq!(device.health().radio, Check::Passed);
    let sent = fake.received();
    assert_eq!(sent[0], "STATUS", "reconnected: {sent:?}");
    assert_eq!(sent.last().map(String::as_str), Some("UPDATE_BEACON"));

    // hostapd gone for good: the beacon fails, the daemon goes on.
    drop(fake);
    assert!(device.transmit(&frame(b"beacon-4", 2_437_000)).is_err());
    assert_eq!(device.health().radio, Check::Failed);

    // No hostapd at start: the error names the key and the path.
    let e = LinuxDevice::open(&cfg, 2_437_000).unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("device.hostapd_ctrl"), "{text}");
    assert!(text.contains(&cfg.hostapd_ctrl.unwrap().display().to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_beacon_goes_off_air_when_its_window_ends() {
    let fake = FakeHostapd::start();
    let own = vec![0xdd, 0x04, 0x00, 0x11, 0x22, 0x01]; // The operator's element stays.
    let radio = LinuxRadio::new(LinuxRadioConfig {
        other_vendor_elements: own.clone(),
        ..LinuxRadioConfig::new(&fake.path)
    })
    .unwrap();
    let mut device = LinuxDevice::with_radio(Some(radio));
    assert_eq!(fake.received(), ["STATUS"]);
    let frame = |payload: &[u8]| TxFrame {
        payload: payload.to_vec(),
        freq_khz: 2_437_000,
        width_mhz: 20,
    };
    let off_air = format!("SET vendor_elements {}", hex::encode(&own));
    let short = Duration::from_millis(300);

    device.transmit(&frame(b"beacon-1")).unwrap();
    assert_eq!(fake.received().len(), 2, "SET and UPDATE_BEACON");
    // On air for the whole window: nothing is sent to hostapd before it ends.
    tokio::time::sleep(BEACON_ON_AIR - Duration::from_millis(1)).await;
    assert_eq!(fake.next_command(short), None, "still on air");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        fake.next_command(Duration::from_secs(5)).as_deref(),
        Some(off_air.as_str())
    );
    assert_eq!(
        fake.next_command(Duration::from_secs(5)).as_deref(),
        Some("UPDATE_BEACON")
    );

    // A newer beacon inside the window of an earlier one: the earlier one's end does not cut
    // the newer one short; the newer one's end takes it off.
    device.transmit(&frame(b"beacon-2")).unwrap();
    tokio::time::sleep(BEACON_ON_AIR / 2).await;
    device.transmit(&frame(b"beacon-3")).unwrap();
    assert_eq!(fake.received().len(), 4);
    tokio::time::sleep(BEACON_ON_AIR / 2 + Duration::from_millis(1)).await;
    assert_eq!(fake.next_command(short), None, "beacon-3 is still on air");
    tokio::time::sleep(BEACON_ON_AIR / 2).await;
    assert_eq!(
        fake.next_command(Duration::from_secs(5)).as_deref(),
        Some(off_air.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn scans_fall_in_each_slots_on_air_window_once_an_epoch_is_known() {
    let fake = FakeHostapd::start();
    let radio = LinuxRadio::new(LinuxRadioConfig::new(&fake.path)).unwrap();
    let scanner = FakeScanner::new();
    let scan_cfg = ScanConfig {
        interface: "wlan0".into(),
        ap_mode: true,
        interval: Duration::from_secs(10),
        freqs_mhz: vec![2_437],
    };
    let mut device = LinuxDevice::with_radio(Some(radio)).scanning(scanner.clone(), &scan_cfg);
    // No epoch yet: the configured interval, the first scan at once.
    assert!(
        next_frame(&mut device, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(scanner.calls().len(), 1);

    // An epoch of 60 ten-second slots, 400 ms into slot 5 now. Every beacon goes out 250 ms
    // into its slot and is on air for 1.5 s: the scans come 1 s into each slot.
    let wall = scanner.wall_ms();
    let seed = EpochSeed {
        epoch: 7,
        start_ms: wall - 50_400,
        duration_ms: 600_000,
        seed: [3; 32].into(),
        params: EpochParams {
            slot_count: 60,
            ..EpochParams::default()
        },
    };
    let clock = SlotClock::of(&seed);
    assert_eq!((clock.slot_ms, clock.scan_offset_ms), (10_000, 1_000));
    assert_eq!(clock.next_scan_ms(wall), seed.start_ms + 51_000);
    assert_eq!(clock.next_scan_ms(seed.start_ms), seed.start_ms + 1_000);
    assert_eq!(
        clock.next_scan_ms(seed.start_ms + 1_000),
        seed.start_ms + 11_000,
        "strictly after"
    );
    let set_at = Instant::now();
    device.set_epoch(&seed);
    assert!(
        next_frame(&mut device, Duration::from_millis(25_000))
            .await
            .is_none()
    );
    let calls = scanner.calls();
    assert_eq!(calls.len(), 4, "three slots passed: {calls:?}");
    for (i, call) in calls[1..].iter().enumerate() {
        // 1 s into slots 5, 6 and 7 on the scanner's (tokio) clock, to the timer's 1 ms.
        let due = seed.start_ms + 51_000 + 10_000 * u64::try_from(i).unwrap();
        assert!(
            call.2.abs_diff(due) <= 1,
            "scan {i} at {} for {due}",
            call.2
        );
        let want = 600 + 10_000 * u128::try_from(i).unwrap();
        assert!(
            (call.0 - set_at).as_millis().abs_diff(want) <= 1,
            "{call:?}"
        );
        // Inside the on-air window of the slot's beacons, [250 ms, 1,750 ms) into it.
        let into_slot = (call.2 - seed.start_ms) % 10_000;
        assert!((250..1_750).contains(&into_slot), "{into_slot}");
    }
    // A new epoch (the next seed) moves the scans to its slots at once.
    let next = EpochSeed {
        epoch: 8,
        start_ms: scanner.wall_ms() + 3_000,
        duration_ms: 60_000,
        params: EpochParams {
            slot_count: 30,
            ..EpochParams::default()
        },
        ..seed
    };
    let set_at = Instant::now();
    device.set_epoch(&next);
    assert!(
        next_frame(&mut device, Duration::from_millis(8_500))
            .await
            .is_none()
    );
    let calls = scanner.calls();
    assert_eq!(calls.len(), 7, "{calls:?}");
    for (i, call) in calls[4..].iter().enumerate() {
        // 2 s slots: 1 s into slots 0, 1 and 2 of the new epoch.
        let due = next.start_ms + 1_000 + 2_000 * u64::try_from(i).unwrap();
        assert!(
            call.2.abs_diff(due) <= 1,
            "scan {i} at {} for {due}",
            call.2
        );
        let want = 4_000 + 2_000 * u128::try_from(i).unwrap();
        assert!(
            (call.0 - set_at).as_millis().abs_diff(want) <= 1,
            "{call:?}"
        );
    }
}

/// One scripted scan: the BSSes' attributes, or the scan's error.
type ScriptedScan = Result<Vec<Vec<Nl80211BssInfo>>, String>;
/// (tokio time, frequencies asked for, wall clock) of a scan call.
type ScanCall = (Instant, Vec<u32>, u64);

/// nl80211 replaced at its socket boundary: each scan returns the BSS table the kernel would
/// send, built from its netlink attributes; the calls' times are recorded.
#[derive(Clone)]
struct FakeScanner {
    script: Arc<Mutex<VecDeque<ScriptedScan>>>,
    calls: Arc<Mutex<Vec<ScanCall>>>,
    /// The wall clock when it was made, and the tokio instant of the same moment: its clock
    /// follows (paused) tokio time from there.
    epoch: (u64, Instant),
}

impl FakeScanner {
    fn new() -> Self {
        Self {
            script: Arc::default(),
            calls: Arc::default(),
            epoch: (wall_ms(), Instant::now()),
        }
    }

    /// Its wall clock, Unix ms: the real one when it was made plus the tokio time since.
    fn wall_ms(&self) -> u64 {
        self.epoch.0 + u64::try_from((Instant::now() - self.epoch.1).as_millis()).unwrap()
    }

    fn push(&self, scan: ScriptedScan) {
        self.script.lock().unwrap().push_back(scan);
    }

    fn calls(&self) -> Vec<ScanCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl ScanSource for FakeScanner {
    async fn scan(&mut self, freqs_mhz: &[u32]) -> Result<Vec<ScanEntry>, String> {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), freqs_mhz.to_vec(), self.wall_ms()));
        let next = self.script.lock().unwrap().pop_front();
        match next.unwrap_or_else(|| Ok(Vec::new())) {
            Ok(bsses) => Ok(bsses
                .iter()
                .filter_map(|attrs| scan_entry_from_bss(attrs))
                .collect()),
            Err(e) => Err(e),
        }
    }

    fn now_ms(&self) -> u64 {
        self.wall_ms()
    }
}

/// A neighbour's BSS carrying `payload` in its beacon, last heard `ago` before now.
fn bss(last: u8, payload: &[u8], ago: Duration) -> Vec<Nl80211BssInfo> {
    let mut ies = vec![0x00, 0x04, b'w', b'i', b's', b'p'];
    ies.extend_from_slice(&ie::encode_wisp_element(payload).unwrap());
    let now = nl80211::boottime_ns().unwrap();
    vec![
        Nl80211BssInfo::Bssid([2, 0, 0, 0, 0, last]),
        Nl80211BssInfo::Frequency(2_437),
        Nl80211BssInfo::SignalMbm(-6_150),
        // The kernel's jiffies age is replaced by the exact boottime one.
        Nl80211BssInfo::SeenMsAgo(9_999),
        Nl80211BssInfo::LastSeenBootTime(now - u64::try_from(ago.as_nanos()).unwrap()),
        Nl80211BssInfo::RawBeaconInformationElements(ies),
    ]
}

/// A valid beacon of `beaconer` for an epoch whose slot for it is open now, with the seed
/// that makes it so.
fn beacon_now(beaconer: &NodeKey, cell: Cell) -> (EpochSeed, Vec<u8>, u64) {
    let mut seed = EpochSeed {
        epoch: 1,
        start_ms: 0,
        duration_ms: 60_000,
        seed: [1; 32].into(),
        params: EpochParams {
            slot_count: 10,
            ..EpochParams::default()
        },
    };
    // Sent a second ago, 100 ms into its slot.
    let tx_ms = wall_ms() - 1_000;
    let (slot_offset, _) = schedule::beacon_window(&seed, &beaconer.id());
    seed.start_ms = tx_ms - 100 - slot_offset;
    let beacon = Beacon {
        epoch: 1,
        nonce: schedule::beacon_nonce(&seed.seed.0, &beaconer.id()).into(),
        freq_khz: 2_437_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(30),
        cell,
        tx_ms,
    };
    (seed, Envelope::sign(beaconer, &beacon).to_bytes(), tx_ms)
}

/// Polls the device every 100 ms of (paused) tokio time until a frame comes, for at most `limit`.
async fn next_frame(device: &mut LinuxDevice, limit: Duration) -> Option<RxFrame> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(f) = device.poll_received() {
            return Some(f);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(start_paused = true)]
async fn a_scanned_beacon_becomes_a_signed_witness_with_the_radios_time() {
    let oracle = NodeKey::from_seed(&[100; 32]);
    let beaconer = NodeKey::from_seed(&[1; 32]);
    let cell = Cell::from_degrees(38.7, -9.1, 12).unwrap();
    let (seed, beacon, tx_ms) = beacon_now(&beaconer, cell);

    let fake = FakeHostapd::start();
    let radio = LinuxRadio::new(LinuxRadioConfig::new(&fake.path)).unwrap();
    let scanner = FakeScanner::new();
    // Last heard 250 ms before now, on the kernel's boottime clock.
    let heard = wall_ms() - 250;
    scanner.push(Ok(vec![bss(1, &beacon, Duration::from_millis(250))]));
    // The next scan still sees the same beacon (it stays on air): not a new frame.
    scanner.push(Ok(vec![bss(1, &beacon, Duration::from_millis(40))]));
    scanner.push(Err("nl80211: Device or resource busy (os error 16)".into()));
    let scan_cfg = ScanConfig {
        interface: "wlan0".into(),
        ap_mode: true,
        interval: Duration::from_secs(10),
        freqs_mhz: vec![2_437],
    };
    let start = Instant::now();
    let mut device = LinuxDevice::with_radio(Some(radio)).scanning(scanner.clone(), &scan_cfg);
    assert_eq!(device.health().receive, Check::NotChecked);

    // The first scan runs at once.
    let frame = next_frame(&mut device, Duration::from_secs(1))
        .await
        .expect("the scanned beacon is received");
    let calls = scanner.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, start);
    assert_eq!(calls[0].1, [2_437], "the configured frequencies");
    assert_eq!(device.health().receive, Check::Passed);
    assert_eq!(frame.payload, beacon);
    assert_eq!(
        (frame.rssi, frame.snr, frame.freq_khz),
        (DeciDb(-615), DeciDb(335), 2_437_000)
    );
    // The kernel's time of the last beacon, on the agent's wall clock: off only by the
    // microseconds between reading the two clocks (and a wall-clock step, none here).
    assert!(calls[0].2 >= heard + 250);
    assert!(
        frame.rx_ms >= heard - 5 && frame.rx_ms <= heard + 20,
        "rx {} vs heard {heard}",
        frame.rx_ms
    );

    // Nothing more until the interval has passed: no scan, no frame.
    assert!(
        next_frame(&mut device, Duration::from_millis(9_800))
            .await
            .is_none()
    );
    assert_eq!(scanner.calls().len(), 1);
    // The second scan (at 10 s) finds the same beacon again: no second frame.
    assert!(
        next_frame(&mut device, Duration::from_secs(1))
            .await
            .is_none()
    );
    let calls = scanner.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0 - start, Duration::from_secs(10));
    // The third fails: the receive check says so.
    assert!(
        next_frame(&mut device, Duration::from_secs(10))
            .await
            .is_none()
    );
    assert_eq!(scanner.calls().len(), 3);
    assert_eq!(device.health().receive, Check::Failed);
    assert_eq!(
        device.health().radio,
        Check::Passed,
        "transmit side untouched"
    );

    // The frame, as the daemon hands it to the core, becomes a witness with the radio's time.
    let now = wall_ms();
    let mut core = Core::new(
        NodeKey::from_seed(&[2; 32]),
        CoreConfig::new(Some(cell), Versions::new("t", "linux")),
        oracle.id(),
        now,
        0,
    );
    core.handle_seed(&Envelope::sign(&oracle, &seed).to_bytes(), now)
        .unwrap();
    let held = core
        .handle_radio_frame(
            &frame.payload,
            frame.rssi,
            frame.snr,
            frame.freq_khz,
            frame.rx_ms,
            now,
        )
        .unwrap();
    let mut t = now;
    let proof = loop {
        if let Some(p) = std::iter::from_fn(|| core.poll_proof())
            .find(|p| held.is_none_or(|id| p.id == id) && p.kind == Kind::Witness)
        {
            break p;
        }
        t += 100;
        assert!(t < now + 120_000, "no witness");
        core.handle_timeout(t);
    };
    let witness = envelope::open::<Witness>(&proof.bytes).unwrap().msg;
    assert_eq!(witness.rx_ms, frame.rx_ms);
    assert!(witness.rx_ms > tx_ms);
    assert_eq!(witness.beacon.as_slice(), beacon.as_slice());
}

#[tokio::test]
async fn real_nl80211_sockets_on_an_interface_that_cannot_scan() {
    // This machine has no wireless interface: the loopback one stands in. The nl80211 sockets
    // open for real. Without cfg80211 loaded (this machine) the kernel has no nl80211 family
    // and the device does not open, naming the key; with it, the kernel refuses each scan and
    // the device reports that and goes on.
    let fake = FakeHostapd::start();
    let cfg = LinuxDeviceConfig {
        hostapd_ctrl: Some(fake.path.clone()),
        scan: Some(ScanConfig {
            interface: "lo".into(),
            ap_mode: true,
            interval: Duration::from_secs(2),
            freqs_mhz: vec![2_437],
        }),
        gnss: None,
        secure_element: None,
        led: None,
        button: None,
    };
    match LinuxDevice::open(&cfg, 2_437_000) {
        Err(e) => {
            let text = format!("{e:#}");
            assert!(
                text.contains("device.scan_interface") && text.contains("nl80211"),
                "{text}"
            );
            println!("no nl80211 here: {text}");
        }
        Ok(mut device) => {
            let end = Instant::now() + Duration::from_secs(15);
            while device.health().receive == Check::NotChecked && Instant::now() < end {
                assert!(device.poll_received().is_none());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(device.health().receive, Check::Failed);
        }
    }

    // A missing interface is named at open.
    let mut cfg = cfg;
    cfg.scan.as_mut().unwrap().interface = "wlz9".into();
    let e = LinuxDevice::open(&cfg, 2_437_000).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("device.scan_interface") && text.contains("wlz9"),
        "{text}"
    );
}

#[test]
fn the_secure_element_is_asked_only_to_attest_and_says_how_it_went() {
    // No I2C bus here: /dev/null opens like an adapter and refuses every transfer, as a bus
    // without the chip's driver would.
    let cfg = LinuxDeviceConfig {
        hostapd_ctrl: Some(PathBuf::from("/tmp/wisp-no-hostapd-here")),
        scan: None,
        gnss: None,
        secure_element: Some(SecureElementConfig {
            bus: PathBuf::from("/dev/null"),
            address: 0x60,
        }),
        led: None,
        button: None,
    };
    // Attesting opens the element alone: the missing hostapd is not touched.
    let mut device = LinuxDevice::open_secure_element(&cfg).unwrap();
    assert_eq!(device.health().secure_element, Check::NotChecked);
    let node = NodeKey::from_seed(&[2; 32]).id();
    let e = device.attest(node.as_bytes(), "acme").unwrap().unwrap_err();
    assert!(matches!(e, DeviceError::SecureElement(_)), "{e:?}");
    assert_eq!(device.health().secure_element, Check::Failed);
    // A maker name too long to attest: refused before the chip is asked.
    let e = device
        .attest(node.as_bytes(), &"m".repeat(300))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, DeviceError::MakerTooLong(_)), "{e:?}");

    // Without one configured there is nothing to attest with.
    let none = LinuxDeviceConfig {
        secure_element: None,
        ..cfg.clone()
    };
    let mut device = LinuxDevice::open_secure_element(&none).unwrap();
    assert!(device.attest(node.as_bytes(), "acme").is_none());
    // A missing adapter is named.
    let missing = LinuxDeviceConfig {
        secure_element: Some(SecureElementConfig {
            bus: PathBuf::from("/dev/i2c-99"),
            address: 0x60,
        }),
        ..cfg
    };
    let e = LinuxDevice::open_secure_element(&missing).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("device.se_i2c") && text.contains("/dev/i2c-99"),
        "{text}"
    );

    // `wisp-agent device` on such a node: the chip's failure, not hostapd's absence.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .arg("device")
        .envs([
            ("WISP_NODE__DATA_DIR", dir.path().to_str().unwrap()),
            (
                "WISP_ORACLE__PUBLIC_KEY",
                &NodeKey::from_seed(&[100; 32]).id().to_string(),
            ),
            ("WISP_DEVICE__KIND", "linux"),
            ("WISP_DEVICE__HOSTAPD_CTRL", "/tmp/wisp-no-hostapd-here"),
            ("WISP_DEVICE__SE_I2C", "/dev/null"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("secure element"), "{stderr}");
    assert!(!stderr.contains("hostapd"), "{stderr}");
}
