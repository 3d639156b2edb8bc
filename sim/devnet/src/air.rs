//! The shared simulated air of a devnet: simulated devices of separate agent processes hear
//! each other through it, with the simulator's own radio model ([`wisp_sim::radio`]).
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
//! A devnet's relaying cheaters are part of the air, as a real relay is part of the world: a
//! [`Relay`] is a radio at a listening post that forwards what it hears to a cheater's device
//! far away, a fixed delay later (an internet link, or a recording played back), and, both
//! ways, re-transmits at the post what the cheater transmits.
//!
//! Everything the air decides is in [`Air::deliver`], [`Air::handle`] and [`Air::due`], pure
//! functions of their inputs (the clock is an argument); the socket loop around them is
//! [`Air::serve`].

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wisp_agent::air::{AirMsg, HELLO_EVERY, MAX_DATAGRAM, Station};

use wisp_sim::radio::{self, Profile};

/// A device not heard from for this long is off the air.
pub const FORGET_AFTER: Duration = Duration::from_secs(3 * HELLO_EVERY.as_secs());

/// Most devices on one air (a devnet is small; this bounds the air's memory whatever arrives).
pub const MAX_STATIONS: usize = 4_096;

/// Most relayed frames waiting for their delay (bounds the air's memory).
pub const MAX_PENDING: usize = 65_536;

/// A relay run by a cheater: a radio at `post` hears what a device there would, and the air
/// delivers it to the cheater's device (the one whose `Hello` puts it at `device_at`) `delay`
/// later; with `both_ways`, what the cheater transmits goes on the air at `post` `delay` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    /// The cheater's device, by its place (1e-7 degrees latitude, longitude).
    pub device_at: (i32, i32),
    /// The listening post's radio (place, power and gain).
    pub post: Station,
    /// Delay each way.
    pub delay: Duration,
    /// Whether the cheater's own transmissions are re-sent from the post.
    pub both_ways: bool,
}

/// Something a relay does later.
#[derive(Clone, Debug)]
enum Later {
    /// Hand a frame to a device.
    Deliver(SocketAddr, AirMsg),
    /// Transmit from a post, on behalf of the device at `from`.
    Transmit {
        from: SocketAddr,
        post: Station,
        freq_khz: u32,
        payload: Vec<u8>,
    },
}

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
    /// Frames relayed by cheaters' relays (forwarded to them, or re-sent from their posts).
    pub relayed: AtomicU64,
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
    relays: Vec<Relay>,
    /// Relayed frames in the order they are due (delays are fixed per relay, so arrival order
    /// is nearly due order; [`Air::due`] takes every entry that is due wherever it sits).
    later: VecDeque<(Instant, Later)>,
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
            relays: Vec::new(),
            later: VecDeque::new(),
        }
    }

    /// The same air with cheaters' relays on it.
    #[must_use]
    pub fn with_relays(mut self, relays: Vec<Relay>) -> Air {
        self.relays = relays;
        self
    }

    /// The registered device at `at` (1e-7 degrees), if any.
    fn device_at(&self, at: (i32, i32)) -> Option<SocketAddr> {
        self.stations
            .iter()
            .find(|(_, e)| (e.station.lat_e7, e.station.lon_e7) == at)
            .map(|(a, _)| *a)
    }

    fn schedule(&mut self, at: Instant, what: Later) {
        if self.later.len() >= MAX_PENDING {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.later.push_back((at, what));
    }

    /// When the next relayed frame is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.later.iter().map(|(t, _)| *t).min()
    }

    /// The relayed frames due at `now`: what to send, to whom.
    pub fn due(&mut self, now: Instant) -> Vec<(SocketAddr, AirMsg)> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.later.len());
        for (t, what) in std::mem::take(&mut self.later) {
            if t > now {
                keep.push_back((t, what));
                continue;
            }
            self.stats.relayed.fetch_add(1, Ordering::Relaxed);
            match what {
                Later::Deliver(to, msg) => out.push((to, msg)),
                Later::Transmit {
                    from,
                    post,
                    freq_khz,
                    payload,
                } => out.extend(self.deliver(from, &post, freq_khz, &payload)),
            }
        }
        self.later = keep;
        out
    }

    /// Puts a transmission from `from` (a device at `tx`) through the cheaters' relays.
    fn relay(
        &mut self,
        from: SocketAddr,
        tx: &Station,
        freq_khz: u32,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(p) = self.profile(freq_khz).cloned() else {
            return;
        };
        let n = self.transmissions;
        for r in self.relays.clone() {
            if (tx.lat_e7, tx.lon_e7) == r.device_at {
                if r.both_ways {
                    let post = Station {
                        tx_power_ddbm: tx.tx_power_ddbm,
                        ..r.post
                    };
                    self.schedule(
                        now + r.delay,
                        Later::Transmit {
                            from,
                            post,
                            freq_khz,
                            payload: payload.to_vec(),
                        },
                    );
                }
                continue;
            }
            let Some(to) = self.device_at(r.device_at) else {
                continue;
            };
            if to == from {
                continue;
            }
            if let Some(rx) = self.hear(&p, tx, &r.post, n, freq_khz, payload) {
                self.schedule(now + r.delay, Later::Deliver(to, rx));
            }
        }
    }

    /// The profile of the band holding `freq_khz`.
    fn profile(&self, freq_khz: u32) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| (p.band.0..=p.band.1).contains(&freq_khz))
    }

    /// What a radio at `rx` reports of transmission `n` from `tx`, if it decodes it.
    fn hear(
        &self,
        p: &Profile,
        tx: &Station,
        rx: &Station,
        n: u64,
        freq_khz: u32,
        payload: &[u8],
    ) -> Option<AirMsg> {
        let (tx_id, rx_id) = (place_id(tx), place_id(rx));
        if rx_id == tx_id {
            return None;
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
        let (rssi, snr) = p.decode(rssi)?;
        Some(AirMsg::Rx {
            payload: payload.to_vec(),
            rssi_ddbm: decidb(rssi),
            snr_ddb: decidb(snr),
            freq_khz,
        })
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
        let Some(p) = self.profile(freq_khz).cloned() else {
            return Vec::new();
        };
        self.transmissions += 1;
        let n = self.transmissions;
        self.stations
            .iter()
            .filter(|(addr, _)| **addr != from)
            .filter_map(|(addr, e)| {
                self.hear(&p, tx, &e.station, n, freq_khz, payload)
                    .map(|m| (*addr, m))
            })
            .collect()
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
                if !self.register(from, station, now) || self.profile(freq_khz).is_none() {
                    return drop(&self.stats);
                }
                self.stats.transmissions.fetch_add(1, Ordering::Relaxed);
                let out = self.deliver(from, &station, freq_khz, &payload);
                if !self.relays.is_empty() {
                    self.relay(from, &station, freq_khz, &payload, now);
                }
                out
            }
            Ok(AirMsg::Rx { .. }) | Err(_) => drop(&self.stats),
        }
    }

    /// Serves `sock` until `stop` is set (checked at least every 200 ms).
    pub fn serve(mut self, sock: &UdpSocket, stop: &AtomicBool) -> std::io::Result<()> {
        const TICK: Duration = Duration::from_millis(200);
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .next_due()
                .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK))
                .max(Duration::from_millis(1));
            sock.set_read_timeout(Some(wait))?;
            let mut out = match sock.recv_from(&mut buf) {
                Ok((n, from)) => self.handle(from, &buf[..n], Instant::now()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Vec::new()
                }
                // A receiver gone away (ICMP unreachable) surfaces here on some systems.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Vec::new(),
                Err(e) => return Err(e),
            };
            out.extend(self.due(Instant::now()));
            for (to, msg) in out {
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
    fn a_relay_forwards_what_its_post_hears_after_its_delay_and_resends_the_cheater() {
        let stats = Arc::new(AirStats::default());
        let far = station(50_000.0);
        let post = Station {
            lat_e7: station(20.0).lat_e7,
            lon_e7: station(20.0).lon_e7 + 100,
            ..station(20.0)
        };
        let delay = Duration::from_millis(40);
        let mut air = Air::new(7, stats.clone()).with_relays(vec![Relay {
            device_at: (far.lat_e7, far.lon_e7),
            post,
            delay,
            both_ways: true,
        }]);
        let now = Instant::now();
        let hello = |s: Station| AirMsg::Hello { station: s }.encode();
        air.handle(addr(2), &hello(station(40.0)), now);
        air.handle(addr(9), &hello(far), now);
        let tx = |s: Station, p: &[u8]| {
            AirMsg::Tx {
                station: s,
                freq_khz: 2_412_000,
                width_mhz: 20,
                payload: p.to_vec(),
            }
            .encode()
        };
        // A neighbour's beacon: heard next door at once; at the far device only after the
        // delay, through the post.
        let out = air.handle(addr(1), &tx(station(0.0), b"near"), now);
        let to: Vec<SocketAddr> = out.iter().map(|(a, _)| *a).collect();
        assert_eq!(to, vec![addr(2)]);
        assert!(air.due(now + delay / 2).is_empty());
        assert_eq!(air.next_due(), Some(now + delay));
        let late = air.due(now + delay);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0, addr(9));
        assert!(matches!(&late[0].1, AirMsg::Rx { payload, .. } if payload == b"near"));
        // The far device's own beacon reaches nobody directly, and is re-sent from the post.
        assert!(
            air.handle(addr(9), &tx(far, b"far"), now + delay)
                .is_empty()
        );
        let resent = air.due(now + 2 * delay);
        let to: Vec<SocketAddr> = resent.iter().map(|(a, _)| *a).collect();
        assert_eq!(to, vec![addr(1), addr(2)]);
        assert_eq!(stats.relayed.load(Ordering::Relaxed), 2);
        assert!(air.due(now + 10 * delay).is_empty());
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
