//! The world: every node's identity, role, where its radio is, what it asserts, its radio and
//! backhaul, its clock; and the radio neighbourhoods (who can hear whom, with the per-link
//! shadowing already drawn).
//!
//! Everything about node `i` comes from streams keyed by `(seed, i, purpose)`; helper
//! identities of bandwidth-inflation cheaters are numbered after the `nodes` hotspots.

pub mod placement;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use wisp_protocol::geo::{ASSERT_RESOLUTION, Cell};
use wisp_protocol::{NodeId, NodeKey};

use crate::backhaul::{self, Link};
use crate::cheaters::{self, Archetype, Role};
use crate::radio::{self, Grid, Profile};
use crate::rng::{self, Draw, Purpose};
use crate::scenario::Scenario;
pub use placement::Projection;

/// The RSSI a cheater with inflated gain claims on top of the real antenna, dB.
pub const GAIN_INFLATION_DB: f64 = 12.0;

/// A place, in degrees and in metres from the area's centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pos {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Metres east of the centre.
    pub x: f64,
    /// Metres north of the centre.
    pub y: f64,
}

impl Pos {
    /// A position from planar coordinates.
    pub fn from_xy(proj: &Projection, x: f64, y: f64) -> Pos {
        let (lat, lon) = proj.to_latlon(x, y);
        Pos { lat, lon, x, y }
    }

    /// Planar distance, metres.
    pub fn dist(&self, o: &Pos) -> f64 {
        ((self.x - o.x).powi(2) + (self.y - o.y).powi(2)).sqrt()
    }

    /// `self` moved by `d` metres at angle `a` radians.
    pub fn offset(&self, proj: &Projection, d: f64, a: f64) -> Pos {
        Pos::from_xy(proj, self.x + d * a.cos(), self.y + d * a.sin())
    }
}

/// Who may hear one transmitter (or what one sniffer may hear): `(node, mean RSSI dBm)`.
pub type Hearers = Vec<(u32, f32)>;

/// One simulated identity.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Index in the world.
    pub idx: u32,
    /// The node's key (the core gets a copy; cheaters sign with it outside the core).
    pub key: NodeKey,
    /// Its id.
    pub id: NodeId,
    /// Honest or which cheater.
    pub role: Role,
    /// Where its radio is.
    pub phys: Pos,
    /// Where it says it is.
    pub asserted: Pos,
    /// The asserted cell (resolution 12).
    pub cell: Cell,
    /// Index into [`World::profiles`].
    pub profile: usize,
    /// The real antenna gain, dBi.
    pub gain_dbi: f64,
    /// The gain it onboards and beacons with, dBi.
    pub declared_gain_dbi: f64,
    /// Clock offset from true time, ms.
    pub clock_skew_ms: i64,
    /// Its internet link.
    pub link: Link,
    /// Whether its radio transmits and receives over the air.
    pub radio_on_air: bool,
    /// Where a remote accomplice listens for it (relay, inflated gain).
    pub sniffer: Option<Pos>,
}

/// The whole world.
#[derive(Debug)]
pub struct World {
    /// The planar projection.
    pub proj: Projection,
    /// The radio profiles in use.
    pub profiles: Vec<Profile>,
    /// Every identity: hotspots first, then helpers.
    pub nodes: Vec<NodeSpec>,
    /// Hotspots (identities below this index).
    pub hotspots: u32,
    /// Per transmitter: receivers that may hear it, with the mean RSSI after shadowing (dBm).
    pub neighbours: Vec<Vec<(u32, f32)>>,
    /// Per node with a sniffer: transmitters the sniffer may hear, with mean RSSI (dBm).
    pub sniffed: Vec<Vec<(u32, f32)>>,
}

fn gnss_noise_m() -> f64 {
    3.0
}

impl World {
    /// Builds the world of `sc`. With `honest_only`, every node keeps its draws but behaves
    /// honestly (the fair baseline): it asserts where it is and has a working radio.
    pub fn build(sc: &Scenario, honest_only: bool) -> Result<World> {
        let seed = sc.seed;
        let proj = Projection {
            lat0: sc.placement.center_lat,
            lon0: sc.placement.center_lon,
        };
        let mut profiles = Vec::new();
        for name in &sc.radio.profiles {
            profiles.push(radio::profile(name).with_context(|| {
                format!("radio.profiles: unknown profile {name:?} (wifi24, wifi5, wifi6, wifi60)")
            })?);
        }
        if profiles.is_empty() {
            bail!("radio.profiles: at least one profile is needed");
        }
        let weights: Vec<f64> = if sc.radio.weights.is_empty() {
            vec![1.0; profiles.len()]
        } else if sc.radio.weights.len() == profiles.len() {
            sc.radio.weights.clone()
        } else {
            bail!("radio.weights must have one entry per profile");
        };
        let wsum: f64 = weights.iter().sum();
        let n = sc.nodes;
        let pts = placement::place(&sc.placement, &proj, seed, n)?;
        let c = &sc.cheaters;
        let mut roles: Vec<Role> = (0..n)
            .map(|i| {
                if honest_only {
                    Role::HONEST
                } else {
                    cheaters::assign(seed, i, n, c)
                }
            })
            .collect();
        cheaters::fill_groups(&mut roles, c);
        // Helper identities: two per bandwidth-inflation cheater.
        let mut helpers: Vec<(u32, Role)> = Vec::new();
        for (i, r) in roles.iter().enumerate() {
            if r.archetype == Archetype::BandwidthInflation {
                for _ in 0..2 {
                    helpers.push((
                        u32::try_from(i).unwrap_or(u32::MAX),
                        Role {
                            helper_of: Some(u32::try_from(i).unwrap_or(u32::MAX)),
                            ..*r
                        },
                    ));
                }
            }
        }
        let total = n as usize + helpers.len();
        let (w, h) = (
            sc.placement.width_km * 1000.0,
            sc.placement.height_km * 1000.0,
        );
        let nodes: Vec<NodeSpec> = (0..total)
            .into_par_iter()
            .map(|i| {
                let idx = u32::try_from(i).unwrap_or(u32::MAX);
                let (role, base) = if i < n as usize {
                    (roles[i], pts[i])
                } else {
                    let (owner, role) = helpers[i - n as usize];
                    (role, pts[owner as usize])
                };
                let mut key_seed = [0u8; 32];
                let k = blake3::Hasher::new_derive_key("wisp-sim node key")
                    .update(&seed.to_le_bytes())
                    .update(&u64::from(idx).to_le_bytes())
                    .finalize();
                key_seed.copy_from_slice(k.as_bytes());
                let key = NodeKey::from_seed(&key_seed);
                let mut r = rng::stream(seed, u64::from(idx), Purpose::Cheat);
                let mut phys = Pos::from_xy(&proj, base.0, base.1);
                let mut asserted = phys;
                let mut radio_on_air = true;
                let mut sniffer = None;
                let group_anchor = |tag: u64| {
                    let mut g = rng::stream(
                        seed,
                        (tag << 40) | u64::from(role.group),
                        Purpose::Placement,
                    );
                    Pos::from_xy(
                        &proj,
                        g.range(-w / 2.0, w / 2.0),
                        g.range(-h / 2.0, h / 2.0),
                    )
                };
                match role.archetype {
                    Archetype::Honest | Archetype::ForgedRssi | Archetype::ColludingMeasurer => {}
                    Archetype::FakeLocation => {
                        let d = r.range(c.fake_distance_km[0], c.fake_distance_km[1]) * 1000.0;
                        asserted = phys.offset(&proj, d, r.range(0.0, std::f64::consts::TAU));
                    }
                    Archetype::CollusionRing => {
                        // One house; cells spread 300–800 m around a remote spot.
                        let anchor = group_anchor(1);
                        phys = anchor;
                        asserted = anchor.offset(
                            &proj,
                            r.range(300.0, 800.0),
                            r.range(0.0, std::f64::consts::TAU),
                        );
                        radio_on_air = false;
                    }
                    Archetype::Relay | Archetype::InflatedGain => {
                        // The accomplice listens where there is something to hear: next to a
                        // hotspot at the relay distance, picked among hotspots (so mostly where
                        // they are dense), not among places.
                        let (lo, hi) = (c.relay_distance_km[0] * 1e3, c.relay_distance_km[1] * 1e3);
                        let dist = |p: &(f64, f64)| (p.0 - phys.x).hypot(p.1 - phys.y);
                        let in_range: Vec<&(f64, f64)> = pts
                            .iter()
                            .filter(|p| (lo..=hi).contains(&dist(p)))
                            .collect();
                        sniffer = Some(if in_range.is_empty() {
                            let d = r.range(lo, hi);
                            phys.offset(&proj, d, r.range(0.0, std::f64::consts::TAU))
                        } else {
                            // Below the length of the list.
                            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                            let k = (r.uniform() * in_range.len() as f64) as usize;
                            let p = in_range[k.min(in_range.len() - 1)];
                            Pos::from_xy(&proj, p.0 + 20.0, p.1)
                        });
                    }
                    Archetype::SybilFarm => {
                        phys = group_anchor(2).offset(
                            &proj,
                            r.range(0.0, 3.0),
                            r.range(0.0, std::f64::consts::TAU),
                        );
                        asserted = phys;
                    }
                    Archetype::BandwidthInflation => {
                        if role.helper_of.is_some() {
                            radio_on_air = false;
                        }
                    }
                    Archetype::FakeHeartbeat => radio_on_air = false,
                }
                let mut pr = rng::stream(seed, u64::from(idx), Purpose::Keys);
                let pick = pr.uniform() * wsum;
                let mut acc = 0.0;
                let mut profile = profiles.len() - 1;
                for (j, wgt) in weights.iter().enumerate() {
                    acc += wgt;
                    if pick < acc {
                        profile = j;
                        break;
                    }
                }
                let gain = profiles[profile].antenna_gain_dbi;
                let declared = if role.archetype == Archetype::InflatedGain {
                    gain + GAIN_INFLATION_DB
                } else {
                    gain
                };
                let mut cr = rng::stream(seed, u64::from(idx), Purpose::Clock);
                let mut skew = sc.faults.clock_sigma_ms * cr.normal();
                if cr.chance(sc.faults.bad_clock_share) {
                    let sign = if cr.chance(0.5) { 1.0 } else { -1.0 };
                    skew = sign * sc.faults.bad_clock_ms as f64;
                }
                let cell = Cell::from_degrees(asserted.lat, asserted.lon, ASSERT_RESOLUTION)
                    .unwrap_or_else(|_| unreachable!("positions are valid coordinates"));
                // Clock offsets are a few seconds at most.
                #[allow(clippy::cast_possible_truncation)]
                let clock_skew_ms = skew.round() as i64;
                NodeSpec {
                    idx,
                    id: key.id(),
                    key,
                    role,
                    phys,
                    asserted,
                    cell,
                    profile,
                    gain_dbi: gain,
                    declared_gain_dbi: declared,
                    clock_skew_ms,
                    link: backhaul::draw_link(&sc.backhaul, seed, idx),
                    radio_on_air,
                    sniffer,
                }
            })
            .collect();
        let (neighbours, sniffed) = neighbourhoods(seed, &profiles, &nodes);
        Ok(World {
            proj,
            profiles,
            hotspots: n,
            nodes,
            neighbours,
            sniffed,
        })
    }

    /// The mean received power (dBm) from `tx` at a receiver `d` metres away with gain
    /// `rx_gain`, before shadowing.
    pub fn mean_rx_dbm(&self, tx: &NodeSpec, rx_gain: f64, d: f64) -> f64 {
        let p = &self.profiles[tx.profile];
        p.tx_power_dbm + tx.gain_dbi + rx_gain - p.path_loss_db(d)
    }
}

/// Who may hear whom: for every on-air transmitter, the on-air receivers on the same profile
/// whose mean RSSI with shadowing is within 3σ of fading of the sensitivity; and for every
/// sniffer, the transmitters it may hear.
fn neighbourhoods(
    seed: u64,
    profiles: &[Profile],
    nodes: &[NodeSpec],
) -> (Vec<Hearers>, Vec<Hearers>) {
    let range = profiles
        .iter()
        .map(|p| p.max_range_m(p.tx_power_dbm + p.antenna_gain_dbi, p.antenna_gain_dbi))
        .fold(1.0_f64, f64::max);
    let pts: Vec<(f64, f64)> = nodes.iter().map(|n| (n.phys.x, n.phys.y)).collect();
    let grid = Grid::new(range, &pts);
    let link = |tx: &NodeSpec, rx_gain: f64, rx_idx: u32, d: f64| -> Option<f32> {
        let p = &profiles[tx.profile];
        let mean = p.mean_rx_dbm(
            p.tx_power_dbm,
            tx.gain_dbi,
            rx_gain,
            d,
            radio::shadowing(seed, tx.idx, rx_idx),
        );
        let floor = p.sensitivity_dbm.max(p.noise_dbm() + p.snr_min_db);
        // Within reach of a +3σ fade: f32 is plenty for dBm.
        #[allow(clippy::cast_possible_truncation)]
        let m = mean as f32;
        (mean + 3.0 * p.fading_sigma_db >= floor).then_some(m)
    };
    let neighbours: Vec<Vec<(u32, f32)>> = nodes
        .par_iter()
        .map(|tx| {
            let mut out = Vec::new();
            if !tx.radio_on_air {
                return out;
            }
            let mut near = Vec::new();
            grid.near(tx.phys.x, tx.phys.y, range, &mut near);
            near.sort_unstable();
            for j in near {
                let rx = &nodes[j as usize];
                if j == tx.idx || !rx.radio_on_air || rx.profile != tx.profile {
                    continue;
                }
                let d = tx.phys.dist(&rx.phys);
                if d > range {
                    continue;
                }
                if let Some(m) = link(tx, rx.gain_dbi, j, d) {
                    out.push((j, m));
                }
            }
            out
        })
        .collect();
    let sniffed: Vec<Vec<(u32, f32)>> = nodes
        .par_iter()
        .map(|me| {
            let mut out = Vec::new();
            let Some(s) = me.sniffer else {
                return out;
            };
            let mut near = Vec::new();
            grid.near(s.x, s.y, range, &mut near);
            near.sort_unstable();
            for j in near {
                let tx = &nodes[j as usize];
                if j == me.idx || !tx.radio_on_air || tx.profile != me.profile {
                    continue;
                }
                let d = tx.phys.dist(&s);
                if d > range {
                    continue;
                }
                // The sniffer is a separate radio: its shadowing is its own pair draw.
                if let Some(m) = link(tx, me.gain_dbi, me.idx | 0x8000_0000, d) {
                    out.push((j, m));
                }
            }
            out
        })
        .collect();
    (neighbours, sniffed)
}

/// A GNSS fix at `p` with a few metres of noise.
pub fn fix_at(
    seed: u64,
    node: u32,
    epoch: u64,
    p: &Pos,
    proj: &Projection,
    utc_ms: u64,
) -> wisp_protocol::msg::GnssFix {
    let e = rng::hash_normal(seed, Purpose::Gnss, &[u64::from(node), epoch, 0]) * gnss_noise_m();
    let n = rng::hash_normal(seed, Purpose::Gnss, &[u64::from(node), epoch, 1]) * gnss_noise_m();
    let q = Pos::from_xy(proj, p.x + e, p.y + n);
    // Degrees × 1e7 fit an i32 for every valid coordinate.
    #[allow(clippy::cast_possible_truncation)]
    let (lat_e7, lon_e7) = ((q.lat * 1e7).round() as i32, (q.lon * 1e7).round() as i32);
    wisp_protocol::msg::GnssFix {
        lat_e7,
        lon_e7,
        alt_mm: 50_000,
        hdop_centi: 90,
        satellites: 9,
        utc_ms,
    }
}
