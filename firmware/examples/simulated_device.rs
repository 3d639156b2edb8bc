//! A simulated hotspot through a scripted day in its life, in simulated time.
//!
//! boot → GNSS fix → online → beacon out, neighbour heard → long press (pairing) → very long
//! press (factory reset) → back online → broker lost (degraded, then offline).
//!
//! The small policy in `Agent` stands in for wisp-agent, which owns these decisions; the
//! device parts (LED, button, GNSS, radio, secure element) are the real drivers over simulated
//! pins and ports.
//!
//! Run: `cargo run -p wisp-firmware --example simulated_device --features sim`
#![allow(clippy::print_stdout)]

use wisp_firmware::button::ButtonEvent;
use wisp_firmware::device::{Device, SimDevice, SimPosition, simulated};
use wisp_firmware::gnss::Fix;
use wisp_firmware::led::Pattern;
use wisp_firmware::radio::{Channel, Radio, RadioFrame};
use wisp_firmware::se::attest;

/// 2026-11-28T12:00:00Z.
const START_WALL_MS: u64 = 1_795_867_200_000;
const STEP_MS: u64 = 10;
const DEGRADED_AFTER_MS: u64 = 30_000;
const OFFLINE_AFTER_MS: u64 = 60_000;
const PAIRING_FOR_MS: u64 = 10_000;

/// The agent's LED policy, reduced to what the scenario shows.
struct Agent {
    broker_up: bool,
    has_fix: bool,
    // None until the first oracle ack: the hotspot is still starting.
    last_ack_ms: Option<u64>,
    pairing_until: Option<u64>,
    rebooting_until: Option<u64>,
}

impl Agent {
    fn pattern(&self, now: u64) -> Pattern {
        if self.rebooting_until.is_some_and(|t| now < t) {
            return Pattern::Booting;
        }
        if self.pairing_until.is_some_and(|t| now < t) {
            return Pattern::Pairing;
        }
        let Some(last_ack_ms) = self.last_ack_ms else {
            return Pattern::Booting;
        };
        let silent = now.saturating_sub(last_ack_ms);
        match (self.broker_up, self.has_fix) {
            (_, false) => Pattern::Booting,
            (true, true) => Pattern::Online,
            (false, true) if silent >= OFFLINE_AFTER_MS => Pattern::Offline,
            (false, true) if silent >= DEGRADED_AFTER_MS => Pattern::Degraded,
            (false, true) => Pattern::Online,
        }
    }
}

fn t(now_ms: u64) -> String {
    format!("[{:>4}.{:03} s]", now_ms / 1_000, now_ms % 1_000)
}

fn degrees(e7: i32, pos: char, neg: char) -> String {
    let hemisphere = if e7 < 0 { neg } else { pos };
    let abs = e7.unsigned_abs();
    format!("{}.{:07}°{hemisphere}", abs / 10_000_000, abs % 10_000_000)
}

fn describe(fix: &Fix) -> String {
    let secs = fix.utc.time_ms / 1_000;
    let date = fix.utc.date.map_or_else(
        || "????-??-??".into(),
        |d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
    );
    format!(
        "{} {} alt {}.{:03} m, hdop {}.{:02}, {} sats, {date}T{:02}:{:02}:{:02}Z",
        degrees(fix.lat_e7, 'N', 'S'),
        degrees(fix.lon_e7, 'E', 'W'),
        fix.alt_mm / 1_000,
        fix.alt_mm.rem_euclid(1_000),
        fix.hdop_centi / 100,
        fix.hdop_centi % 100,
        fix.satellites,
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut device: SimDevice =
        simulated(&[0x5A; 32], [0x01, 0x23, 0x9C, 0x41, 0, 0, 0, 0x17, 0xEE])?;
    device.set_time(0, START_WALL_MS);
    let mut agent = Agent {
        broker_up: false,
        has_fix: false,
        last_ack_ms: None,
        pairing_until: None,
        rebooting_until: None,
    };

    let node_public_key = [0x42; 32];
    let attestation = attest(device.secure_element(), 0, &node_public_key, "wisp-sim")?;
    println!(
        "{} secure element {} attests the node key: signature verifies = {}",
        t(0),
        hex(&attestation.serial),
        attestation.verify(&node_public_key, "wisp-sim")
    );

    let channel = Channel::wifi_2g4(6).ok_or("channel 6")?;
    let mut shown = None;
    let mut fixes = 0u32;
    let end_ms = 140_000;
    while device.clock_ms() <= end_ms {
        let now = device.clock_ms();
        // The script: what happens in the world at this instant.
        match now {
            5_000 => {
                println!("{} sky view clears: GNSS position available", t(now));
                device.set_position(Some(SimPosition {
                    lat_e7: 525_200_066,
                    lon_e7: 134_049_540,
                    alt_mm: 34_500,
                    hdop_centi: 80,
                    satellites: 12,
                }));
            }
            8_000 => {
                println!("{} broker connected, oracle acks flowing", t(now));
                agent.broker_up = true;
            }
            10_000 => {
                device
                    .radio()
                    .transmit(channel, b"<signed beacon, epoch 17>")?;
                for sent in device.drain_transmitted() {
                    println!(
                        "{} radio: beacon of {} bytes on {} kHz at wall {}",
                        t(now),
                        sent.payload.len(),
                        sent.channel.freq_khz,
                        sent.tx_time_ms
                    );
                }
                device.inject_frame(RadioFrame {
                    payload: heapless::Vec::from_slice(b"<neighbour beacon>")
                        .map_err(|_| "payload")?,
                    rssi_ddbm: -723,
                    snr_ddb: 227,
                    freq_khz: 2_437_000,
                    rx_time_ms: START_WALL_MS + now,
                });
            }
            20_000 | 40_000 => {
                println!("{} owner presses the button", t(now));
                device.press_button();
            }
            24_000 | 52_000 => {
                println!("{} owner releases the button", t(now));
                device.release_button();
            }
            70_000 => {
                println!("{} broker connection lost", t(now));
                agent.broker_up = false;
            }
            _ => {}
        }

        let polled = device.poll();
        polled.led?;
        if let Some(event) = polled.button? {
            println!("{} button: {event:?}", t(now));
            match event {
                ButtonEvent::ShortPress => {}
                ButtonEvent::LongPress => agent.pairing_until = Some(now + PAIRING_FOR_MS),
                ButtonEvent::VeryLongPress => {
                    println!("{} factory reset requested: keys wiped, rebooting", t(now));
                    agent.pairing_until = None;
                    agent.rebooting_until = Some(now + 3_000);
                }
            }
        }
        if let Some(fix) = polled.fix? {
            // Print the first fix and then one every 30 s.
            if fixes.is_multiple_of(30) {
                println!("{} GNSS fix: {}", t(now), describe(&fix));
            }
            fixes += 1;
            agent.has_fix = true;
        }
        while let Some(frame) = device.radio().receive()? {
            println!(
                "{} radio: heard {} bytes at {}.{} dBm, SNR {}.{} dB, {} kHz",
                t(now),
                frame.payload.len(),
                frame.rssi_ddbm / 10,
                (frame.rssi_ddbm % 10).abs(),
                frame.snr_ddb / 10,
                frame.snr_ddb % 10,
                frame.freq_khz
            );
        }
        if agent.broker_up {
            agent.last_ack_ms = Some(now);
        }
        let pattern = agent.pattern(now);
        device.led().set_pattern(pattern);
        if shown != Some(pattern) {
            shown = Some(pattern);
            println!("{} LED: {pattern:?} {:?}", t(now), pattern.spec());
        }
        device.advance(STEP_MS);
    }
    println!(
        "{} done: {} fixes, {} LED pin writes, NMEA {:?}",
        t(device.clock_ms()),
        fixes,
        device.led_pin_writes(),
        device.sim_gnss_stats()
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Small conveniences for the script.
trait Script {
    fn clock_ms(&self) -> u64;
    fn sim_gnss_stats(&mut self) -> wisp_firmware::gnss::NmeaStats;
}

impl Script for SimDevice {
    fn clock_ms(&self) -> u64 {
        use wisp_firmware::clock::Clock;
        self.clock().monotonic_ms()
    }

    fn sim_gnss_stats(&mut self) -> wisp_firmware::gnss::NmeaStats {
        use wisp_firmware::gnss::PositionSource;
        self.gnss().stats()
    }
}
