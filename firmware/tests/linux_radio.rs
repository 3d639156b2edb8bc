//! The Linux radio against a fake hostapd on a real Unix datagram socket.
#![cfg(feature = "linux")]
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use wisp_firmware::radio::ie::{self, MAX_IE_PAYLOAD};
use wisp_firmware::radio::linux::hostapd::{HostapdCtrl, HostapdError, to_hex};
use wisp_firmware::radio::linux::nl80211::ScanEntry;
use wisp_firmware::radio::linux::{
    LinuxRadio, LinuxRadioConfig, LinuxRadioError, frames_from_scan,
};
use wisp_firmware::radio::{Channel, PayloadTooLarge, Radio};

static NEXT: AtomicU32 = AtomicU32::new(0);

struct FakeHostapd {
    path: PathBuf,
    commands: Receiver<String>,
    fail_set: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHostapd {
    /// Answers like hostapd 2.10 on channel 6. `SLOW` is answered after 300 ms; `TERMINATE`
    /// stops it.
    fn start() -> Self {
        let path = PathBuf::from(format!(
            "/tmp/wisp-fake-hostapd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let (tx, commands) = sync_channel(64);
        let fail_set = Arc::new(AtomicBool::new(false));
        let fail = Arc::clone(&fail_set);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let command = String::from_utf8_lossy(&buf[..n]).into_owned();
                let to = from.as_pathname().unwrap().to_path_buf();
                let reply = |text: &str| {
                    server.send_to(text.as_bytes(), &to).unwrap();
                };
                let _ = tx.try_send(command.clone());
                match command.split_once(' ').map_or(command.as_str(), |(c, _)| c) {
                    "PING" => reply("PONG\n"),
                    "STATUS" => {
                        // An unsolicited event first, as an attached client would see.
                        reply("<3>AP-STA-CONNECTED 02:00:00:00:00:01");
                        reply("state=ENABLED\nphy=phy0\nfreq=2437\nchannel=6\nssid[0]=wisp\n");
                    }
                    "SET" => {
                        let hex = command.strip_prefix("SET vendor_elements ").unwrap_or("x");
                        let ok = hex.len().is_multiple_of(2)
                            && hex.bytes().all(|b| b.is_ascii_hexdigit());
                        reply(if ok && !fail.load(Ordering::Relaxed) {
                            "OK\n"
                        } else {
                            "FAIL\n"
                        });
                    }
                    "UPDATE_BEACON" => reply("OK\n"),
                    "SLOW" => {
                        std::thread::sleep(Duration::from_millis(300));
                        reply("LATE\n");
                    }
                    "TERMINATE" => {
                        reply("OK\n");
                        return;
                    }
                    _ => reply("UNKNOWN COMMAND\n"),
                }
            }
        });
        Self {
            path,
            commands,
            fail_set,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<String> {
        self.commands.try_iter().collect()
    }
}

impl Drop for FakeHostapd {
    fn drop(&mut self) {
        if let Ok(ctrl) = HostapdCtrl::connect(&self.path, Duration::from_secs(1)) {
            let _ = ctrl.request("TERMINATE");
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn control_client_speaks_the_hostapd_protocol() {
    let fake = FakeHostapd::start();
    let ctrl = HostapdCtrl::connect(&fake.path, Duration::from_millis(200)).unwrap();
    let local = ctrl.local_path().to_path_buf();
    assert!(local.starts_with("/tmp"));
    ctrl.ping().unwrap();
    assert_eq!(ctrl.freq_mhz().unwrap(), 2_437, "event message skipped");
    ctrl.set_vendor_elements(&[0xDD, 0x04, 0x02, 0x77, 0x69, 0x01])
        .unwrap();
    ctrl.update_beacon().unwrap();
    assert_eq!(
        fake.received(),
        [
            "PING",
            "STATUS",
            "SET vendor_elements dd0402776901",
            "UPDATE_BEACON"
        ]
    );

    // A reply that comes too late is a timeout, and does not poison the next request.
    assert!(
        matches!(ctrl.request("SLOW"), Err(HostapdError::Timeout { command }) if command == "SLOW")
    );
    std::thread::sleep(Duration::from_millis(250));
    ctrl.ping().unwrap();

    match ctrl.request("BOGUS").map(|r| r.trim().to_owned()) {
        Ok(reply) => assert_eq!(reply, "UNKNOWN COMMAND"),
        Err(e) => panic!("{e}"),
    }
    drop(ctrl);
    assert!(!local.exists(), "client socket removed on drop");
}

#[test]
fn missing_hostapd_is_an_io_error() {
    let err =
        HostapdCtrl::connect("/tmp/wisp-no-such-hostapd", Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, HostapdError::Io(_)), "{err}");
}

#[test]
fn transmit_sets_vendor_elements_and_updates_the_beacon() {
    let fake = FakeHostapd::start();
    let mut config = LinuxRadioConfig::new(&fake.path);
    // An operator's own vendor element, kept in front of ours.
    config.other_vendor_elements = vec![0xDD, 0x05, 0x00, 0x11, 0x22, 0x01, 0xFF];
    let mut radio = LinuxRadio::new(config).unwrap();
    assert_eq!(radio.ap_channel(), Channel::new(2_437_000, 20));
    assert_eq!(radio.max_payload(), MAX_IE_PAYLOAD);
    let _ = fake.received();

    let payload = b"signed beacon bytes";
    let ch6 = Channel::wifi_2g4(6).unwrap();
    radio.transmit(ch6, payload).unwrap();
    let sent = fake.received();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1], "UPDATE_BEACON");
    let hex = sent[0].strip_prefix("SET vendor_elements ").unwrap();
    let elements = hex::decode(hex).unwrap();
    assert!(elements.starts_with(&[0xDD, 0x05, 0x00, 0x11, 0x22, 0x01, 0xFF]));
    assert_eq!(
        ie::wisp_payloads(&elements).collect::<Vec<_>>(),
        [&payload[..]]
    );
    assert_eq!(to_hex(&elements), hex);

    // Wrong channel, oversized payload: refused before hostapd is bothered.
    let ch1 = Channel::wifi_2g4(1).unwrap();
    assert!(matches!(
        radio.transmit(ch1, payload),
        Err(LinuxRadioError::ChannelMismatch {
            requested_khz: 2_412_000,
            ap_khz: 2_437_000
        })
    ));
    assert!(matches!(
        radio.transmit(ch6, &[0; 252]),
        Err(LinuxRadioError::TooLarge(PayloadTooLarge {
            len: 252,
            max: 251
        }))
    ));
    assert_eq!(fake.received(), Vec::<String>::new());

    // hostapd refusing the value surfaces as an error naming the command.
    fake.fail_set.store(true, Ordering::Relaxed);
    match radio.transmit(ch6, payload) {
        Err(LinuxRadioError::Hostapd(HostapdError::Rejected { command, reply })) => {
            assert_eq!((command.as_str(), reply.as_str()), ("SET", "FAIL"));
        }
        other => panic!("{other:?}"),
    }
}

fn entry(bssid: u8, signal_mbm: Option<i32>, seen_ms_ago: u32, payload: &[u8]) -> ScanEntry {
    let mut beacon_ies = vec![0x00, 0x04, b'w', b'i', b's', b'p'];
    beacon_ies.extend_from_slice(&ie::encode_wisp_element(payload).unwrap());
    ScanEntry {
        bssid: [2, 0, 0, 0, 0, bssid],
        freq_mhz: 2_437,
        signal_mbm,
        seen_ms_ago: Some(seen_ms_ago),
        last_seen_boottime_ns: None,
        ies: Vec::new(),
        beacon_ies,
    }
}

#[test]
fn scan_results_become_frames() {
    let mut probe_only = entry(4, Some(-8_000), 0, b"d");
    probe_only.ies = std::mem::take(&mut probe_only.beacon_ies);
    let entries = [
        entry(1, Some(-6_150), 40, b"a"),
        entry(2, None, 0, b"b"), // signal in unspecified units: skipped
        entry(3, Some(-5_000), 20_000, b"c"), // stale cache entry: skipped
        probe_only,
        ScanEntry {
            ies: vec![0, 1, b'x'],
            ..entry(5, Some(-4_000), 0, b"e")
        }, // beacon IEs win
    ];
    let frames = frames_from_scan(&entries, 1_000_000, -950, 15_000);
    let summary: Vec<_> = frames
        .iter()
        .map(|(b, f)| {
            (
                b[5],
                f.payload.as_slice().to_vec(),
                f.rssi_ddbm,
                f.snr_ddb,
                f.freq_khz,
                f.rx_time_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, b"a".to_vec(), -615, 335, 2_437_000, 999_960),
            (4, b"d".to_vec(), -800, 150, 2_437_000, 1_000_000),
            (5, b"e".to_vec(), -400, 550, 2_437_000, 1_000_000),
        ]
    );
}

#[test]
fn repeated_scans_report_each_beacon_once_and_the_queue_is_bounded() {
    let fake = FakeHostapd::start();
    let mut config = LinuxRadioConfig::new(&fake.path);
    config.rx_queue = 2;
    let mut radio = LinuxRadio::new(config).unwrap();
    assert_eq!(
        radio.handle_scan(&[entry(1, Some(-6_000), 0, b"epoch-1")], 1_000),
        1
    );
    assert_eq!(
        radio.handle_scan(&[entry(1, Some(-6_100), 0, b"epoch-1")], 2_000),
        0,
        "same beacon"
    );
    assert_eq!(
        radio.handle_scan(&[entry(1, Some(-6_200), 0, b"epoch-2")], 3_000),
        1,
        "new payload"
    );
    assert_eq!(
        radio.handle_scan(&[entry(2, Some(-7_000), 0, b"epoch-2")], 3_000),
        1,
        "other AP"
    );
    assert_eq!(radio.dropped(), 1);
    let first = radio.receive().unwrap().unwrap();
    assert_eq!(
        (first.payload.as_slice(), first.rx_time_ms),
        (&b"epoch-2"[..], 3_000)
    );
    assert_eq!(radio.receive().unwrap().map(|f| f.rssi_ddbm), Some(-700));
    assert_eq!(radio.receive().unwrap(), None);
}

#[test]
fn nl80211_scan_without_wireless_hardware_fails_cleanly() {
    use wisp_firmware::radio::linux::nl80211::Nl80211Scanner;
    // This machine has no WiFi interface (CI neither): the real netlink sockets open, and the
    // kernel (or the nl80211 family lookup) refuses the scan. It must be an error, not a hang.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let mut scanner = Nl80211Scanner::new(1, true, Duration::from_secs(2))?;
        tokio::time::timeout(Duration::from_secs(5), scanner.scan(&[2_437]))
            .await
            .expect("scan gave up within its own timeout")
    });
    let err = outcome.expect_err("no wireless interface here");
    println!("scan refused as expected: {err}");
}
