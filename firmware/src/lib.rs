//! The wisp device layer: everything `wisp-agent` needs from a hotspot's hardware.
//!
//! A hotspot has a status LED, a button, a GNSS receiver on a UART, an ATECC608-class secure
//! element on I²C and a radio that carries proof-of-coverage beacons. Each is a driver here,
//! generic over the embedded-hal 1.0 / embedded-io 0.7 traits, so the same code runs on a
//! microcontroller, on a Linux router (through `linux-embedded-hal` or the backends in this
//! crate) and against the simulated parts the simulator drives.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`led`] | [`led::StatusLed`]: RGB status patterns as a non-blocking `tick(now)` state machine, over three GPIOs or three PWM channels |
//! | [`button`] | [`button::Button`]: debounced polling with short / long (pairing) / very long (factory reset) presses; [`button::AsyncButton`] over `embedded-hal-async` |
//! | [`gnss`] | [`gnss::NmeaParser`]: an allocation-free NMEA 0183 parser (GGA + RMC) producing integer-only [`gnss::Fix`]es; [`gnss::Gnss`] reads it from a UART |
//! | [`se`] | [`se::SecureElement`], the [`se::Atecc608`] I²C driver, [`se::SoftSecureElement`] and device attestation |
//! | [`radio`] | the [`radio::Radio`] trait, [`radio::RadioFrame`], the WiFi vendor-IE codec ([`radio::ie`]) and, with `linux`, hostapd + nl80211 |
//! | [`clock`] | the [`clock::Clock`] trait (monotonic and wall milliseconds) |
//! | `i2cdev` | (feature `linux`) Linux i2c-dev as an embedded-hal `I2c` bus (`I2C_RDWR`), and a sleeping `DelayNs` |
//! | `gpiocdev` | (feature `linux`) GPIO lines through the character device (uAPI v2) as embedded-hal `OutputPin` / `InputPin` |
//! | [`device`] | the [`device::Device`] bundle the agent takes, [`device::Hardware`], and (feature `sim`) `device::SimDevice` |
//!
//! # Invariants
//!
//! - **Drivers own their bus**: `new(bus)` takes it by value and `release()` gives it back.
//! - **Nothing here sleeps or blocks on time**, except the secure element, whose protocol is
//!   built on an injected `DelayNs` (wake pulse, execution times). LED and button are advanced by
//!   `tick(now_ms)` / `poll(now_ms)`; time always comes from the caller.
//! - **No floats in fixes**: positions are integer 1e-7 degrees converted exactly from NMEA's
//!   `ddmm.mmmm`, so they encode canonically in signed heartbeats.
//! - **Every buffer is bounded**: NMEA lines at 82 bytes, radio payloads at 255 bytes, simulated
//!   queues at fixed capacities (overflow drops the oldest entry and is counted).
//!
//! # Features
//!
//! - `std` (default): `std::error::Error` impls and a std clock.
//! - `linux`: hostapd control-socket beacon transmit and nl80211 scan receive (`radio::linux`),
//!   the GNSS tty (`gnss::tty`), i2c-dev for the secure element (`i2cdev`) and GPIO lines for
//!   the LED and button (`gpiocdev`).
//! - `sim`: `device::SimDevice` with an in-memory radio, settable GNSS and recorded pins.
//!
//! Without default features the crate is `#![no_std]` and allocation-free.
// Unit tests use std's prelude (Vec, vec!, format!); the library itself stays no_std.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod button;
pub mod clock;
pub mod device;
pub mod gnss;
#[cfg(feature = "linux")]
pub mod gpiocdev;
#[cfg(feature = "linux")]
pub mod i2cdev;
pub mod led;
pub mod radio;
pub mod se;
