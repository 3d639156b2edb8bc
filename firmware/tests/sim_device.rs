//! The simulated device, end to end through the real drivers.
#![cfg(feature = "sim")]
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use wisp_firmware::button::ButtonEvent;
use wisp_firmware::clock::Clock;
use wisp_firmware::device::{Device, SimDevice, SimPosition, simulated};
use wisp_firmware::gnss::{Date, PositionSource};
use wisp_firmware::led::{Pattern, Rgb};
use wisp_firmware::radio::{Channel, PayloadTooLarge, Radio, RadioFrame};
use wisp_firmware::se::{SecureElement, attest};

const SECRET: [u8; 32] = [0x11; 32];
const SERIAL: [u8; 9] = [0x01, 0x23, 0, 0, 0, 0, 0, 0, 0xEE];
// 2026-11-28T12:00:00Z
const WALL: u64 = 1_795_867_200_000;

fn device() -> SimDevice {
    let mut d = simulated(&SECRET, SERIAL).unwrap();
    d.set_time(0, WALL);
    d
}

const HERE: SimPosition = SimPosition {
    lat_e7: 525_200_066, // Berlin
    lon_e7: 134_049_540,
    alt_mm: 34_500,
    hdop_centi: 80,
    satellites: 12,
};

#[test]
fn the_device_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<SimDevice>();
}

#[test]
fn gnss_position_travels_through_real_nmea() {
    let mut d = device();
    assert_eq!(d.poll().fix, Ok(None), "no position: no-fix sentences");
    assert_eq!(
        d.gnss().stats().sentences_ok,
        2,
        "GGA and RMC (status V) of 12:00:00"
    );

    d.set_position(Some(HERE));
    d.advance(1_000);
    let fix = d.poll().fix.unwrap().unwrap();
    assert_eq!(
        (fix.lat_e7, fix.lon_e7, fix.alt_mm),
        (HERE.lat_e7, HERE.lon_e7, HERE.alt_mm)
    );
    assert_eq!((fix.hdop_centi, fix.satellites), (80, 12));
    assert_eq!(
        fix.utc.date,
        Some(Date {
            year: 2026,
            month: 11,
            day: 28
        })
    );
    assert_eq!(fix.utc.unix_ms(), Some(WALL + 1_000));
    let stats = d.gnss().stats();
    assert_eq!(
        (stats.checksum_errors, stats.malformed, stats.overlong),
        (0, 0, 0)
    );

    // Within the same second nothing new is written.
    d.advance(500);
    assert_eq!(d.poll().fix, Ok(None));
    assert_eq!(d.gnss().current_fix(), Some(fix));

    // Losing the fix clears it.
    d.set_position(None);
    d.advance(1_000);
    assert_eq!(d.poll().fix, Ok(None));
    assert_eq!(d.gnss().current_fix(), None);
}

#[test]
fn unread_gnss_output_is_bounded() {
    let mut d = device();
    d.set_position(Some(HERE));
    for _ in 0..200 {
        d.advance(1_000);
    }
    assert!(d.sim_gnss().overrun_bytes() > 0);
    // The parser recovers from the cut: the newest complete pair still gives a fix.
    let fix = d.poll().fix.unwrap();
    assert_eq!(fix.map(|f| f.utc.unix_ms()), Some(Some(WALL + 200_000)));
    assert!(
        d.gnss().stats().malformed <= 1,
        "at most the sentence cut in half"
    );
}

/// Advances in 10 ms steps to `until_ms` (monotonic), polling; returns the button events.
fn run_until(d: &mut SimDevice, until_ms: u64) -> Vec<(u64, ButtonEvent)> {
    let mut events = Vec::new();
    while d.clock().monotonic_ms() < until_ms {
        d.advance(10);
        let polled = d.poll();
        if let Some(e) = polled.button.unwrap() {
            events.push((polled.now_ms, e));
        }
    }
    events
}

#[test]
fn button_presses_by_the_simulator() {
    let mut d = device();
    run_until(&mut d, 1_000);
    d.press_button();
    assert_eq!(run_until(&mut d, 1_200), []);
    assert!(d.button().is_pressed());
    d.release_button();
    assert_eq!(run_until(&mut d, 2_000), [(1_240, ButtonEvent::ShortPress)]);

    d.press_button();
    let held = run_until(&mut d, 13_000);
    assert_eq!(
        held,
        [
            (5_010, ButtonEvent::LongPress),
            (12_010, ButtonEvent::VeryLongPress)
        ]
    );
    d.release_button();
    assert_eq!(run_until(&mut d, 14_000), [], "nothing on release");
}

#[test]
fn led_pins_follow_the_pattern() {
    let mut d = device();
    d.poll();
    assert_eq!(d.led_pattern(), Pattern::Booting);
    d.led().set_pattern(Pattern::Online);
    d.poll();
    assert_eq!(d.led_color(), Rgb::new(0, 255, 0));
    let writes = d.led_pin_writes();
    for _ in 0..100 {
        d.advance(10);
        d.poll();
    }
    assert_eq!(d.led_pin_writes(), writes, "solid: no further pin writes");

    d.led().set_pattern(Pattern::Error);
    d.poll();
    assert_eq!(d.led_color(), Rgb::new(255, 0, 0));
    let now = d.clock().monotonic_ms();
    assert_eq!(d.poll_timeout(), Some(now + 200));
    d.advance(200);
    d.poll();
    assert_eq!(d.led_color(), Rgb::OFF);
}

#[test]
fn radio_queues_are_controlled_by_the_simulator() {
    let mut d = device();
    let ch = Channel::wifi_5g(36).unwrap();
    d.radio().transmit(ch, b"beacon-1").unwrap();
    d.advance(5);
    d.radio().transmit(ch, b"beacon-2").unwrap();
    assert_eq!(
        d.radio().transmit(ch, &[0; 252]),
        Err(PayloadTooLarge { len: 252, max: 251 }),
        "the WiFi limit applies in simulation too"
    );
    let sent: Vec<_> = d
        .drain_transmitted()
        .map(|t| (t.payload.to_vec(), t.tx_time_ms, t.channel))
        .collect();
    assert_eq!(
        sent,
        [
            (b"beacon-1".to_vec(), WALL, ch),
            (b"beacon-2".to_vec(), WALL + 5, ch)
        ]
    );
    assert_eq!(d.drain_transmitted().count(), 0);

    let frame = |n: u8| RadioFrame {
        payload: heapless::Vec::from_slice(&[n]).unwrap(),
        rssi_ddbm: -723,
        snr_ddb: 187,
        freq_khz: 5_180_000,
        rx_time_ms: WALL + u64::from(n),
    };
    for n in 0..70 {
        assert_eq!(d.inject_frame(frame(n)), n < 64);
    }
    assert_eq!(d.sim_radio().dropped_rx(), 6);
    assert_eq!(
        d.radio().receive(),
        Ok(Some(frame(6))),
        "oldest dropped first"
    );
}

#[test]
fn secure_element_attests() {
    let mut d = device();
    assert_eq!(d.secure_element().serial(), Ok(SERIAL));
    let node_pk = [0xAB; 32];
    let att = attest(d.secure_element(), 0, &node_pk, "wisp-sim").unwrap();
    assert!(att.verify(&node_pk, "wisp-sim"));
}
