//! The shared simulated air: how simulated devices of separate processes hear each other.
//!
//! A devnet runs one air service (inside `wisp-devnet run`) on a UDP socket.
//! Each simulated device with `device.air` set says where it is ([`AirMsg::Hello`], at start
//! and every [`HELLO_EVERY`]), hands every transmission to the air ([`AirMsg::Tx`]), and
//! receives from it what the radio model says it heard ([`AirMsg::Rx`]): the level and SNR at
//! its place. The receive time is the receiver's own clock when the datagram arrives (a thread
//! waits on the socket), as a radio's driver stamps a frame.
//!
//! Datagrams are JSON, at most [`MAX_DATAGRAM`] bytes; anything longer or malformed is
//! dropped and counted, never trusted.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The largest datagram either side sends or accepts, bytes (a 251-byte payload as a JSON
/// array of numbers, plus the fields, fits with room to spare).
pub const MAX_DATAGRAM: usize = 2_048;

/// How often a device repeats its [`AirMsg::Hello`] (the air forgets a device it has not heard
/// from for three times this).
pub const HELLO_EVERY: Duration = Duration::from_secs(5);

/// Where a device's radio is and how it transmits and receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Station {
    /// Latitude of the antenna, 1e-7 degrees.
    pub lat_e7: i32,
    /// Longitude of the antenna, 1e-7 degrees.
    pub lon_e7: i32,
    /// Conducted transmit power, tenths of dBm.
    pub tx_power_ddbm: i16,
    /// Antenna gain, tenths of dBi.
    pub gain_ddbi: i16,
}

/// One datagram between a device and the air.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum AirMsg {
    /// Device → air: I am here (registration and keep-alive).
    Hello {
        /// The device's radio.
        station: Station,
    },
    /// Device → air: a transmission.
    Tx {
        /// The transmitting radio.
        station: Station,
        /// Centre frequency, kHz.
        freq_khz: u32,
        /// Channel width, MHz.
        width_mhz: u16,
        /// The payload as transmitted.
        payload: Vec<u8>,
    },
    /// Air → device: a frame heard.
    Rx {
        /// The payload.
        payload: Vec<u8>,
        /// Received level, tenths of dBm.
        rssi_ddbm: i16,
        /// Signal-to-noise ratio, tenths of dB.
        snr_ddb: i16,
        /// Frequency heard on, kHz.
        freq_khz: u32,
    },
}

/// A datagram that is not an [`AirMsg`].
#[derive(Debug, thiserror::Error)]
pub enum AirError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("air datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// Not a valid message.
    #[error("malformed air datagram: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl AirMsg {
    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a datagram, size first.
    pub fn decode(bytes: &[u8]) -> Result<AirMsg, AirError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(AirError::TooLarge(bytes.len()));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// A frame the air delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The payload.
    pub payload: Vec<u8>,
    /// Received level, tenths of dBm.
    pub rssi_ddbm: i16,
    /// Signal-to-noise ratio, tenths of dB.
    pub snr_ddb: i16,
    /// Frequency heard on, kHz.
    pub freq_khz: u32,
    /// When it arrived, by the system clock (Unix ms): the receive time a driver stamps.
    pub rx_ms: u64,
}

/// Frames waiting for the daemon, at most; more drop the oldest (counted).
const QUEUE: usize = 256;

#[derive(Debug, Default)]
struct Inbox {
    frames: VecDeque<Heard>,
    dropped: u64,
}

/// A device's link to the air: a UDP socket connected to the air service, and a receiver
/// thread that takes each datagram as it arrives and stamps it with the system clock (as a
/// radio driver stamps a frame), so the receive time does not depend on when the daemon's
/// loop next polls the device.
#[derive(Debug)]
pub struct AirLink {
    sock: UdpSocket,
    air: SocketAddr,
    station: Station,
    last_hello: Option<Instant>,
    send_errors: u64,
    inbox: Arc<Mutex<Inbox>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The receive time: on the oracle's clock, as every timestamp the agent signs.
fn unix_ms() -> u64 {
    crate::wallclock::wall_ms()
}

/// The receiver thread: blocks on the socket (waking every 200 ms to see `stop`).
fn receiver(sock: &UdpSocket, inbox: &Mutex<Inbox>, stop: &AtomicBool) {
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            // Timeouts, and ICMP port unreachable from an earlier send: nothing to read.
            Err(_) => continue,
        };
        let rx_ms = unix_ms();
        let Ok(mut inbox) = inbox.lock() else {
            return;
        };
        match AirMsg::decode(&buf[..n]) {
            Ok(AirMsg::Rx {
                payload,
                rssi_ddbm,
                snr_ddb,
                freq_khz,
            }) => {
                if inbox.frames.len() >= QUEUE {
                    inbox.frames.pop_front();
                    inbox.dropped += 1;
                }
                inbox.frames.push_back(Heard {
                    payload,
                    rssi_ddbm,
                    snr_ddb,
                    freq_khz,
                    rx_ms,
                });
            }
            Ok(_) | Err(_) => inbox.dropped += 1,
        }
    }
}

impl AirLink {
    /// Opens the link to the air at `air` (on loopback when the air is, else on any address).
    pub fn connect(air: SocketAddr, station: Station) -> std::io::Result<AirLink> {
        let local: SocketAddr = if air.ip().is_loopback() {
            (std::net::Ipv4Addr::LOCALHOST, 0).into()
        } else if air.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(air)?;
        sock.set_nonblocking(true)?;
        let rx = sock.try_clone()?;
        rx.set_nonblocking(false)?;
        rx.set_read_timeout(Some(Duration::from_millis(200)))?;
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            std::thread::Builder::new()
                .name("air-rx".into())
                .spawn(move || receiver(&rx, &inbox, &stop))?
        };
        let mut link = AirLink {
            sock,
            air,
            station,
            last_hello: None,
            send_errors: 0,
            inbox,
            stop,
            thread: Some(thread),
        };
        link.keepalive(Instant::now());
        Ok(link)
    }

    /// The air's address.
    pub fn air(&self) -> SocketAddr {
        self.air
    }

    /// Datagrams dropped: malformed, too large, or frames the daemon did not take in time.
    pub fn dropped(&self) -> u64 {
        self.inbox.lock().map_or(0, |i| i.dropped)
    }

    /// Sends that failed (the air not running, or the socket full).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    fn send(&mut self, msg: &AirMsg) -> bool {
        match self.sock.send(&msg.encode()) {
            Ok(_) => true,
            Err(e) => {
                self.send_errors += 1;
                // The air may not be up yet, or restarting: the next hello registers again.
                if self.send_errors.is_power_of_two() {
                    tracing::warn!(air = %self.air, error = %e, failures = self.send_errors,
                        "cannot reach the simulated air");
                }
                false
            }
        }
    }

    /// Repeats the hello when it is due.
    pub fn keepalive(&mut self, now: Instant) {
        if self
            .last_hello
            .is_none_or(|t| now.duration_since(t) >= HELLO_EVERY)
        {
            self.last_hello = Some(now);
            let station = self.station;
            self.send(&AirMsg::Hello { station });
        }
    }

    /// Puts a transmission on the air. False if it could not be sent.
    pub fn transmit(&mut self, freq_khz: u32, width_mhz: u16, payload: &[u8]) -> bool {
        let station = self.station;
        self.send(&AirMsg::Tx {
            station,
            freq_khz,
            width_mhz,
            payload: payload.to_vec(),
        })
    }

    /// What the air delivered since the last call, oldest first.
    pub fn receive(&mut self) -> Vec<Heard> {
        self.inbox
            .lock()
            .map(|mut i| i.frames.drain(..).collect())
            .unwrap_or_default()
    }
}

impl Drop for AirLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station() -> Station {
        Station {
            lat_e7: 524_000_000,
            lon_e7: 134_000_000,
            tx_power_ddbm: 200,
            gain_ddbi: 30,
        }
    }

    #[test]
    fn messages_round_trip_and_oversize_is_refused() {
        let msgs = [
            AirMsg::Hello { station: station() },
            AirMsg::Tx {
                station: station(),
                freq_khz: 2_412_000,
                width_mhz: 20,
                payload: vec![255; 251],
            },
            AirMsg::Rx {
                payload: vec![1, 2, 3],
                rssi_ddbm: -723,
                snr_ddb: 211,
                freq_khz: 2_412_000,
            },
        ];
        for m in msgs {
            let bytes = m.encode();
            assert!(bytes.len() <= MAX_DATAGRAM);
            assert_eq!(AirMsg::decode(&bytes).unwrap(), m);
        }
        assert!(matches!(
            AirMsg::decode(&[b' '; MAX_DATAGRAM + 1]),
            Err(AirError::TooLarge(_))
        ));
        assert!(matches!(
            AirMsg::decode(br#"{"t":"hello","station":{},"x":1}"#),
            Err(AirError::Malformed(_))
        ));
    }

    #[test]
    fn a_link_says_hello_sends_and_receives_over_udp() {
        let air = UdpSocket::bind("127.0.0.1:0").unwrap();
        air.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut link = AirLink::connect(air.local_addr().unwrap(), station()).unwrap();
        let mut buf = [0u8; MAX_DATAGRAM];
        let (n, from) = air.recv_from(&mut buf).unwrap();
        assert_eq!(
            AirMsg::decode(&buf[..n]).unwrap(),
            AirMsg::Hello { station: station() }
        );
        assert!(link.transmit(2_412_000, 20, b"beacon"));
        let (n, _) = air.recv_from(&mut buf).unwrap();
        assert!(
            matches!(AirMsg::decode(&buf[..n]).unwrap(), AirMsg::Tx { payload, .. } if payload == b"beacon")
        );
        // Garbage is dropped and counted; a reception comes through.
        air.send_to(b"garbage", from).unwrap();
        let rx = AirMsg::Rx {
            payload: b"theirs".to_vec(),
            rssi_ddbm: -700,
            snr_ddb: 200,
            freq_khz: 2_412_000,
        };
        air.send_to(&rx.encode(), from).unwrap();
        let mut heard = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while heard.is_empty() && Instant::now() < deadline {
            heard = link.receive();
            std::thread::yield_now();
        }
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].payload, b"theirs");
        assert_eq!(heard[0].rssi_ddbm, -700);
        assert!(heard[0].rx_ms.abs_diff(unix_ms()) < 60_000);
        assert_eq!(link.dropped(), 1);
    }
}
