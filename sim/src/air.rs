//! The shared simulated air of a devnet: simulated devices of separate agent processes hear
//! each other through it, with the simulator's own radio model ([`crate::radio`]).
//!
//! Devices speak [`wisp_agent::air`] over UDP: a `Hello` registers a device (its place, transmit
//! power and antenna gain) and keeps it registered; a `Tx` is a transmission, delivered as an
//! `Rx` to every other device registered within the last [`FORGET_AFTER`] whose radio decodes
//! it: the level is the transmission's EIRP plus the receiver's gain less the profile's path
//! loss at their distance, with the pair's shadowing and the transmission's fading drawn from
//! the same mixers as in a simulation run (keyed by the air's seed and the devices' places),
//! and the profile's sensitivity, SNR threshold, saturation and EVM limit. The profile is the
//! one whose band holds the transmission's frequency; others are dropped and counted.
//!
//! Everything the air decides is in [`Air::deliver`], a pure function of its inputs; the
//! socket loop around it is [`Air::serve`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wisp_agent::air::{AirMsg, HELLO_EVERY, MAX_DATAGRAM, Station};

use crate::radio::{self, Profile};

/// A device not heard from for this long is off the air.
pub const FORGET_AFTER: Duration = Duration::from_secs(3 * HELLO_EVERY.as_secs());

/// Most devices on one air (a devnet is small; this bounds the air's memory whatever arrives).
pub const MAX_STATIONS: usize = 4_096;

/// Counters a devnet's summary shows.
#[derive(Debug, Default)]
pub struct AirStats {
    /// Transmissions put on the air.
    pub transmissions: AtomicU64,
    /// Frames delivered to receivers.
    pub deliveries: AtomicU64,
    /// Datagrams dropped: malformed, too large, an unknown band, or no room for a station.
    pub dropped: AtomicU64,
    /// Devices on the air now.
    pub stations: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    station: Station,
    seen: Instant,
}

/// The air: registered devices and the radio model.
#[derive(Debug)]
pub struct Air {
    seed: u64,
    profiles: Vec<Profile>,
    stations: BTreeMap<SocketAddr, Entry>,
    transmissions: u64,
    stats: Arc<AirStats>,
}

/// A device's place as the radio model's pair key: stable for a device that stays put.
fn place_id(s: &Station) -> u32 {
    let h = radio::mix(
        (u64::from(s.lat_e7.cast_unsigned()) << 32) | u64::from(s.lon_e7.cast_unsigned()),
    );
    // The low 31 bits: the high bit marks sniffers in the simulator's draws.
    u32::try_from(h & 0x7fff_ffff).unwrap_or(0)
}

fn degrees(e7: i32) -> f64 {
    f64::from(e7) / 1e7
}

/// Tenths of a dB, rounded to whole dB first as a driver reports them.
fn decidb(db: f64) -> i16 {
    // Levels are within ±300 dB.
    #[allow(clippy::cast_possible_truncation)]
    let v = db.round().clamp(-300.0, 300.0) as i16;
    v * 10
}

impl Air {
    /// An empty air whose draws are keyed by `seed`.
    pub fn new(seed: u64, stats: Arc<AirStats>) -> Air {
        Air {
            seed,
            profiles: radio::profiles(),
            stations: BTreeMap::new(),
            transmissions: 0,
            stats,
        }
    }

    /// Registers (or refreshes) a device at `from`. False when the air is full.
    fn register(&mut self, from: SocketAddr, station: Station, now: Instant) -> bool {
        self.stations
            .retain(|_, e| now.duration_since(e.seen) < FORGET_AFTER);
        if !self.stations.contains_key(&from) && self.stations.len() >= MAX_STATIONS {
            return false;
        }
        self.stations.insert(from, Entry { station, seen: now });
        self.stats
            .stations
            .store(self.stations.len() as u64, Ordering::Relaxed);
        true
    }

    /// Who hears a transmission from the device at `from`, and what each reports: (receiver,
    /// the `Rx` datagram). Pure: the registered devices, the seed and the transmission count.
    pub fn deliver(
        &mut self,
        from: SocketAddr,
        tx: &Station,
        freq_khz: u32,
        payload: &[u8],
    ) -> Vec<(SocketAddr, AirMsg)> {
        let Some(p) = self
            .profiles
            .iter()
            .find(|p| (p.band.0..=p.band.1).contains(&freq_khz))
        else {
            return Vec::new();
        };
        self.transmissions += 1;
        let n = self.transmissions;
        let tx_id = place_id(tx);
        let mut out = Vec::new();
        for (addr, e) in &self.stations {
            if *addr == from {
                continue;
            }
            let rx = &e.station;
            let rx_id = place_id(rx);
            if rx_id == tx_id {
                continue;
            }
            let d = wisp_protocol::geo::haversine_m(
                degrees(tx.lat_e7),
                degrees(tx.lon_e7),
                degrees(rx.lat_e7),
                degrees(rx.lon_e7),
            );
            let mean = p.mean_rx_dbm(
                f64::from(tx.tx_power_ddbm) / 10.0,
                f64::from(tx.gain_ddbi) / 10.0,
                f64::from(rx.gain_ddbi) / 10.0,
                d,
                radio::shadowing(self.seed, tx_id, rx_id),
            );
            let rssi = mean + p.fading_sigma_db * radio::fading(self.seed, n, tx_id, rx_id);
            if let Some((rssi, snr)) = p.decode(rssi) {
                out.push((
                    *addr,
                    AirMsg::Rx {
                        payload: payload.to_vec(),
                        rssi_ddbm: decidb(rssi),
                        snr_ddb: decidb(snr),
                        freq_khz,
                    },
                ));
            }
        }
        out
    }

    /// Handles one datagram from `from`: what to send, to whom.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Vec<(SocketAddr, AirMsg)> {
        let drop = |stats: &AirStats| {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        };
        match AirMsg::decode(bytes) {
            Ok(AirMsg::Hello { station }) => {
                if !self.register(from, station, now) {
                    return drop(&self.stats);
                }
                Vec::new()
            }
            Ok(AirMsg::Tx {
                station,
                freq_khz,
                payload,
                ..
            }) => {
                if !self.register(from, station, now) || !self.knows_band(freq_khz) {
                    return drop(&self.stats);
                }
                self.stats.transmissions.fetch_add(1, Ordering::Relaxed);
                self.deliver(from, &station, freq_khz, &payload)
            }
            Ok(AirMsg::Rx { .. }) | Err(_) => drop(&self.stats),
        }
    }

    fn knows_band(&self, freq_khz: u32) -> bool {
        self.profiles
            .iter()
            .any(|p| (p.band.0..=p.band.1).contains(&freq_khz))
    }

    /// Serves `sock` until `stop` is set (checked at least every 200 ms).
    pub fn serve(mut self, sock: &UdpSocket, stop: &AtomicBool) -> std::io::Result<()> {
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                // A receiver gone away (ICMP unreachable) surfaces here on some systems.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            for (to, msg) in self.handle(from, &buf[..n], Instant::now()) {
                if sock.send_to(&msg.encode(), to).is_ok() {
                    self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
// Test positions are small, known values.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn station(north_m: f64) -> Station {
        Station {
            lat_e7: 384_000_000 + (north_m / 111_195.0 * 1e7).round() as i32,
            lon_e7: -91_000_000,
            tx_power_ddbm: 170,
            gain_ddbi: 30,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn near_devices_hear_a_transmission_and_far_ones_do_not() {
        let stats = Arc::new(AirStats::default());
        let mut air = Air::new(7, stats.clone());
        let now = Instant::now();
        let hello = |s: Station| AirMsg::Hello { station: s }.encode();
        assert!(air.handle(addr(2), &hello(station(40.0)), now).is_empty());
        assert!(air.handle(addr(3), &hello(station(60.0)), now).is_empty());
        assert!(
            air.handle(addr(4), &hello(station(50_000.0)), now)
                .is_empty()
        );
        let tx = AirMsg::Tx {
            station: station(0.0),
            freq_khz: 2_412_000,
            width_mhz: 20,
            payload: b"beacon".to_vec(),
        };
        let out = air.handle(addr(1), &tx.encode(), now);
        let to: Vec<SocketAddr> = out.iter().map(|(a, _)| *a).collect();
        assert_eq!(to, vec![addr(2), addr(3)]);
        for (_, m) in &out {
            let AirMsg::Rx {
                payload,
                rssi_ddbm,
                snr_ddb,
                freq_khz,
            } = m
            else {
                panic!("{m:?}")
            };
            assert_eq!((payload.as_slice(), *freq_khz), (&b"beacon"[..], 2_412_000));
            assert!((-950..=-200).contains(rssi_ddbm), "{rssi_ddbm}");
            assert_eq!(rssi_ddbm % 10, 0);
            assert!(*snr_ddb > 0);
        }
        // The sender registered itself by transmitting, and hears its neighbours.
        let back = AirMsg::Tx {
            station: station(40.0),
            freq_khz: 2_412_000,
            width_mhz: 20,
            payload: b"reply".to_vec(),
        };
        let to: Vec<SocketAddr> = air
            .handle(addr(2), &back.encode(), now)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        assert_eq!(to, vec![addr(1), addr(3)]);
        // Garbage, replies sent to the air and unknown bands are dropped and counted.
        assert!(air.handle(addr(5), b"{}", now).is_empty());
        let unknown = AirMsg::Tx {
            station: station(0.0),
            freq_khz: 100,
            width_mhz: 20,
            payload: vec![],
        };
        assert!(air.handle(addr(1), &unknown.encode(), now).is_empty());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.transmissions.load(Ordering::Relaxed), 2);
        // Devices that stop saying hello leave the air.
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert!(air.handle(addr(1), &tx.encode(), later).is_empty());
    }

    #[test]
    fn levels_fall_with_distance_on_average() {
        let mut air = Air::new(3, Arc::new(AirStats::default()));
        let now = Instant::now();
        let mut means = Vec::new();
        for (k, d) in [30.0, 120.0].into_iter().enumerate() {
            let mut sum = 0.0;
            let mut heard = 0;
            for i in 0..200u16 {
                let rx = addr(10_000 + k as u16 * 1_000 + i);
                let mut s = station(d);
                s.lon_e7 += i32::from(i) * 10;
                air.register(rx, s, now);
            }
            let out = air.deliver(addr(1), &station(0.0), 2_412_000, b"x");
            for (_, m) in out {
                if let AirMsg::Rx { rssi_ddbm, .. } = m {
                    sum += f64::from(rssi_ddbm);
                    heard += 1;
                }
            }
            air.stations.clear();
            means.push(sum / f64::from(heard.max(1)));
        }
        assert!(means[0] > means[1] + 100.0, "{means:?}");
    }
}
