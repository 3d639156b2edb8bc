//! The simulated device (feature `sim`).
//!
//! Everything is in memory and driven by the owner: a discrete-event simulator or a tokio
//! shell sets the clock, moves the GNSS position, presses the button, injects received frames
//! and drains transmitted ones. No threads, no sleeps, no locks: the device is plain data and
//! `Send`.
//!
//! The parts are the real drivers over simulated pins and ports wherever there is a driver:
//! the LED is a [`StatusLed`] over three [`SimPin`]s, the button a [`Button`] on a [`SimPin`],
//! GNSS a [`Gnss`] reading NMEA sentences written by [`crate::gnss::sentence`] into an
//! in-memory UART, the secure element a [`SoftSecureElement`]. Only the radio is a model.

use std::collections::VecDeque;
use std::collections::vec_deque::Drain;
use std::convert::Infallible;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin, StatefulOutputPin};

use super::Device;
use crate::button::{Button, ButtonConfig};
use crate::clock::{Clock, ManualClock};
use crate::gnss::sentence::{self, Talker};
use crate::gnss::{Date, Fix, Gnss, NmeaStats, PositionSource, UtcTime};
use crate::led::{Pattern, Polarity, Rgb, RgbPins, StatusLed};
use crate::radio::ie::MAX_IE_PAYLOAD;
use crate::radio::{Channel, Payload, PayloadTooLarge, Radio, RadioFrame};
use crate::se::{SoftSeError, SoftSecureElement};

/// A GPIO that remembers its level and counts writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimPin {
    high: bool,
    writes: u64,
}

impl SimPin {
    /// The level.
    pub fn is_high(&self) -> bool {
        self.high
    }

    /// Drives the level from outside (a button being pressed).
    pub fn set_level(&mut self, high: bool) {
        self.high = high;
    }

    /// How many times the driver wrote the pin.
    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl ErrorType for SimPin {
    type Error = Infallible;
}

impl OutputPin for SimPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.high = false;
        self.writes += 1;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.high = true;
        self.writes += 1;
        Ok(())
    }
}

impl StatefulOutputPin for SimPin {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.high)
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.high)
    }
}

impl InputPin for SimPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.high)
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.high)
    }
}

/// Where the simulated receiver is and how good its fix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimPosition {
    /// Latitude, 1e-7 degrees.
    pub lat_e7: i32,
    /// Longitude, 1e-7 degrees.
    pub lon_e7: i32,
    /// Altitude above mean sea level, mm.
    pub alt_mm: i32,
    /// HDOP × 100.
    pub hdop_centi: u16,
    /// Satellites used.
    pub satellites: u8,
}

// The simulated UART holds at most this many unread bytes (a real receiver's output is lost
// the same way when nobody reads the port).
const SIM_UART_CAPACITY: usize = 4_096;

/// A GNSS receiver that emits one GGA + RMC pair per UTC second of the simulated wall clock.
#[derive(Debug)]
pub struct SimGnss {
    receiver: Gnss<VecDeque<u8>>,
    position: Option<SimPosition>,
    talker: Talker,
    last_second: Option<u64>,
    overrun_bytes: u64,
}

impl SimGnss {
    fn new() -> Self {
        Self {
            receiver: Gnss::new(VecDeque::new()),
            position: None,
            talker: *b"GN",
            last_second: None,
            overrun_bytes: 0,
        }
    }

    /// Sets the position the receiver reports from the next second on (`None`: no fix).
    pub fn set_position(&mut self, position: Option<SimPosition>) {
        self.position = position;
    }

    /// The position being reported.
    pub fn position(&self) -> Option<SimPosition> {
        self.position
    }

    /// Bytes lost because the simulated UART was not read.
    pub fn overrun_bytes(&self) -> u64 {
        self.overrun_bytes
    }

    /// Advances the receiver's clock: when a new UTC second begins, it writes that second's
    /// sentences. Long jumps emit only the latest second, as a receiver would after a gap.
    fn set_wall_ms(&mut self, wall_ms: u64) {
        let second = wall_ms / 1_000;
        if self.last_second == Some(second) {
            return;
        }
        self.last_second = Some(second);
        let days = i64::try_from(second / 86_400).unwrap_or(i64::MAX);
        let Some(date) = Date::from_days_since_epoch(days) else {
            return;
        };
        let time_ms = u32::try_from((second % 86_400) * 1_000).unwrap_or(0);
        let fix = self.position.map(|p| Fix {
            lat_e7: p.lat_e7,
            lon_e7: p.lon_e7,
            alt_mm: p.alt_mm,
            hdop_centi: p.hdop_centi,
            satellites: p.satellites,
            utc: UtcTime {
                date: Some(date),
                time_ms,
            },
        });
        // A position NMEA cannot express (beyond ±90°, absurd altitude) is written as no fix.
        let sentences = sentence::gga(self.talker, time_ms, fix.as_ref())
            .and_then(|g| sentence::rmc(self.talker, time_ms, date, fix.as_ref()).map(|r| (g, r)))
            .or_else(|_| {
                sentence::gga(self.talker, time_ms, None)
                    .and_then(|g| sentence::rmc(self.talker, time_ms, date, None).map(|r| (g, r)))
            });
        if let Ok((gga, rmc)) = sentences {
            self.write_uart(gga.as_bytes());
            self.write_uart(rmc.as_bytes());
        }
    }

    fn write_uart(&mut self, bytes: &[u8]) {
        let port = self.receiver.port_mut();
        port.extend(bytes);
        let excess = port.len().saturating_sub(SIM_UART_CAPACITY);
        if excess > 0 {
            port.drain(..excess);
            self.overrun_bytes = self
                .overrun_bytes
                .saturating_add(u64::try_from(excess).unwrap_or(u64::MAX));
        }
    }
}

impl PositionSource for SimGnss {
    type Error = crate::gnss::Error<Infallible>;

    /// Reads everything the simulated UART holds (at most its 4 KiB capacity), so a simulator
    /// that polls rarely still gets the newest fix.
    fn poll_fix(&mut self) -> Result<Option<Fix>, Self::Error> {
        let mut newest = None;
        while !self.receiver.port_mut().is_empty() {
            newest = self.receiver.poll_fix()?.or(newest);
        }
        Ok(newest)
    }

    fn current_fix(&self) -> Option<Fix> {
        self.receiver.current_fix()
    }

    fn stats(&self) -> NmeaStats {
        self.receiver.stats()
    }
}

/// A payload the device transmitted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transmission {
    /// The channel it was sent on.
    pub channel: Channel,
    /// The payload.
    pub payload: Payload,
    /// The device's wall clock when it was handed to the radio, ms.
    pub tx_time_ms: u64,
}

// Queue depths of the simulated radio; overflow drops the oldest entry and counts it.
const SIM_RADIO_QUEUE: usize = 64;

/// An in-memory radio: the simulator injects what the device hears and drains what it sends.
#[derive(Debug)]
pub struct SimRadio {
    max_payload: usize,
    rx: VecDeque<RadioFrame>,
    tx: VecDeque<Transmission>,
    dropped_rx: u64,
    dropped_tx: u64,
    wall_ms: u64,
}

impl SimRadio {
    fn new() -> Self {
        Self {
            max_payload: MAX_IE_PAYLOAD,
            rx: VecDeque::with_capacity(SIM_RADIO_QUEUE),
            tx: VecDeque::with_capacity(SIM_RADIO_QUEUE),
            dropped_rx: 0,
            dropped_tx: 0,
            wall_ms: 0,
        }
    }

    /// Sets the payload limit. The default is the WiFi vendor-element limit (251 bytes), so the
    /// simulator refuses what real hotspots could not send.
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.min(crate::radio::MAX_PAYLOAD);
    }

    /// Delivers a frame to the device. Returns false if the receive queue was full and the
    /// oldest frame was dropped to make room.
    pub fn inject(&mut self, frame: RadioFrame) -> bool {
        let room = self.rx.len() < SIM_RADIO_QUEUE;
        if !room {
            self.rx.pop_front();
            self.dropped_rx += 1;
        }
        self.rx.push_back(frame);
        room
    }

    /// Takes everything transmitted since the last drain, oldest first.
    pub fn drain_transmitted(&mut self) -> Drain<'_, Transmission> {
        self.tx.drain(..)
    }

    /// Frames dropped because the device did not receive them fast enough.
    pub fn dropped_rx(&self) -> u64 {
        self.dropped_rx
    }

    /// Transmissions dropped because the simulator did not drain them.
    pub fn dropped_tx(&self) -> u64 {
        self.dropped_tx
    }
}

impl Radio for SimRadio {
    type Error = PayloadTooLarge;

    fn max_payload(&self) -> usize {
        self.max_payload
    }

    fn transmit(&mut self, channel: Channel, payload: &[u8]) -> Result<(), PayloadTooLarge> {
        let too_large = PayloadTooLarge {
            len: payload.len(),
            max: self.max_payload,
        };
        if payload.len() > self.max_payload {
            return Err(too_large);
        }
        let payload = Payload::from_slice(payload).map_err(|_| too_large)?;
        if self.tx.len() >= SIM_RADIO_QUEUE {
            self.tx.pop_front();
            self.dropped_tx += 1;
        }
        self.tx.push_back(Transmission {
            channel,
            payload,
            tx_time_ms: self.wall_ms,
        });
        Ok(())
    }

    fn receive(&mut self) -> Result<Option<RadioFrame>, PayloadTooLarge> {
        Ok(self.rx.pop_front())
    }
}

/// The simulated hotspot. See the [module docs](self).
#[derive(Debug)]
pub struct SimDevice {
    led: StatusLed<RgbPins<SimPin, SimPin, SimPin>>,
    button: Button<SimPin>,
    gnss: SimGnss,
    secure_element: SoftSecureElement,
    radio: SimRadio,
    clock: ManualClock,
}

/// A simulated device whose secure element holds `secret` and reports `serial`; clock at 0.
pub fn simulated(secret: &[u8; 32], serial: [u8; 9]) -> Result<SimDevice, SoftSeError> {
    SimDevice::new(secret, serial)
}

impl SimDevice {
    /// See [`simulated`]. The button is wired active-low with default timings.
    pub fn new(secret: &[u8; 32], serial: [u8; 9]) -> Result<Self, SoftSeError> {
        // Active-low button: the pin idles high (pull-up).
        let mut pin = SimPin::default();
        pin.set_level(true);
        Ok(Self {
            led: StatusLed::new(RgbPins::new(
                SimPin::default(),
                SimPin::default(),
                SimPin::default(),
                Polarity::ActiveHigh,
            )),
            button: Button::new(pin, ButtonConfig::default()),
            gnss: SimGnss::new(),
            secure_element: SoftSecureElement::new(secret, serial)?,
            radio: SimRadio::new(),
            clock: ManualClock::default(),
        })
    }

    /// Sets the clock (monotonic never goes back; see [`ManualClock::set`]) and lets the GNSS
    /// receiver emit the current second's sentences.
    pub fn set_time(&mut self, monotonic_ms: u64, wall_ms: u64) {
        self.clock.set(monotonic_ms, wall_ms);
        self.radio.wall_ms = self.clock.wall_ms();
        self.gnss.set_wall_ms(self.clock.wall_ms());
    }

    /// Advances both clocks by `ms`.
    pub fn advance(&mut self, ms: u64) {
        let (m, w) = (self.clock.monotonic_ms(), self.clock.wall_ms());
        self.set_time(m.saturating_add(ms), w.saturating_add(ms));
    }

    /// Sets the simulated receiver's position (`None`: no fix) from the next UTC second on.
    pub fn set_position(&mut self, position: Option<SimPosition>) {
        self.gnss.set_position(position);
    }

    /// Presses the button (drives the active-low pin low).
    pub fn press_button(&mut self) {
        self.button.pin_mut().set_level(false);
    }

    /// Releases the button.
    pub fn release_button(&mut self) {
        self.button.pin_mut().set_level(true);
    }

    /// Delivers a received frame; see [`SimRadio::inject`].
    pub fn inject_frame(&mut self, frame: RadioFrame) -> bool {
        self.radio.inject(frame)
    }

    /// Takes what the device transmitted; see [`SimRadio::drain_transmitted`].
    pub fn drain_transmitted(&mut self) -> Drain<'_, Transmission> {
        self.radio.drain_transmitted()
    }

    /// The radio, for its counters and settings.
    pub fn sim_radio(&mut self) -> &mut SimRadio {
        &mut self.radio
    }

    /// The GNSS receiver model, for its counters.
    pub fn sim_gnss(&self) -> &SimGnss {
        &self.gnss
    }

    /// The LED's pattern.
    pub fn led_pattern(&self) -> Pattern {
        self.led.pattern()
    }

    /// The colour the LED pins show now (each channel fully on or off).
    pub fn led_color(&self) -> Rgb {
        let (r, g, b) = self.led.output().pins();
        let level = |p: &SimPin| if p.is_high() { 255 } else { 0 };
        Rgb::new(level(r), level(g), level(b))
    }

    /// Total writes to the LED pins, a measure of bus traffic.
    pub fn led_pin_writes(&self) -> u64 {
        let (r, g, b) = self.led.output().pins();
        r.writes() + g.writes() + b.writes()
    }
}

impl Device for SimDevice {
    type Led = StatusLed<RgbPins<SimPin, SimPin, SimPin>>;
    type Button = Button<SimPin>;
    type Gnss = SimGnss;
    type SecureElement = SoftSecureElement;
    type Radio = SimRadio;
    type Clock = ManualClock;

    fn led(&mut self) -> &mut Self::Led {
        &mut self.led
    }

    fn button(&mut self) -> &mut Self::Button {
        &mut self.button
    }

    fn gnss(&mut self) -> &mut SimGnss {
        &mut self.gnss
    }

    fn secure_element(&mut self) -> &mut SoftSecureElement {
        &mut self.secure_element
    }

    fn radio(&mut self) -> &mut SimRadio {
        &mut self.radio
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }
}
