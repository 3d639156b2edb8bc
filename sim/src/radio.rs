//! The radio model: log-distance path loss with per-link log-normal shadowing, per-transmission
//! fading, receiver sensitivity and SNR threshold, and the spatial grid that keeps a beacon
//! from considering nodes that cannot hear it.
//!
//! `PL(d) = FSPL(1 m, f) + 10·n·log10(d / 1 m) + α·d + X_link + Y_tx`, where `X_link ~ N(0, σ_s)`
//! is drawn once per unordered pair of nodes (the same walls stand between them in both
//! directions and every epoch) and `Y_tx ~ N(0, σ_f)` once per transmission and receiver.
//! A receiver decodes when `RSSI ≥ sensitivity` and `SNR = RSSI − N ≥ snr_min`, with
//! `N = −174 dBm/Hz + 10·log10(B) + NF`. RSSI and SNR are reported in whole dB, as nl80211
//! does.
//!
//! Both draws come from a fast integer mixer over `(seed, pair or transmission)` rather than
//! from a stream, so they do not depend on how many other links were drawn first (adding a
//! node changes no existing link).

/// Receivers saturate: no chipset reports more than this RSSI, dBm (front ends compress
/// around −20 dBm; 802.11 requires correct reception only up to −20 dBm for OFDM, clause 17).
pub const RSSI_MAX_DBM: f64 = -20.0;

/// No receiver reports a better SNR than this, dB: the transmitter's EVM and the receiver's
/// ADC limit it (802.11ax requires −35 dB EVM at the highest rates; typical reports top out near
/// 40–45 dB).
pub const SNR_MAX_DB: f64 = 45.0;

/// One radio technology's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Name used in scenarios.
    pub name: &'static str,
    /// Centre frequency, kHz.
    pub freq_khz: u32,
    /// Channel width, MHz.
    pub width_mhz: u16,
    /// The declared band: low, high (kHz) and the regulatory EIRP limit (dBm).
    pub band: (u32, u32, f64),
    /// Conducted transmit power, dBm.
    pub tx_power_dbm: f64,
    /// Antenna gain, dBi.
    pub antenna_gain_dbi: f64,
    /// Path-loss exponent n.
    pub exponent: f64,
    /// Shadowing standard deviation σ_s, dB.
    pub shadow_sigma_db: f64,
    /// Fading standard deviation σ_f, dB.
    pub fading_sigma_db: f64,
    /// Extra attenuation, dB per km (oxygen absorption at 60 GHz).
    pub absorption_db_per_km: f64,
    /// Receiver noise figure, dB.
    pub noise_figure_db: f64,
    /// Receiver sensitivity at the lowest rate, dBm.
    pub sensitivity_dbm: f64,
    /// Lowest SNR that decodes the lowest rate, dB.
    pub snr_min_db: f64,
}

/// The parameter sets. Sources, per number:
///
/// - 2.4 GHz: 20 dBm EIRP is the ETSI EN 300 328 limit (we use 17 dBm conducted + 3 dBi);
///   exponent 3.0 and σ_s = 7 dB are the suburban/urban values of Rappaport, *Wireless
///   Communications* (2nd ed.), table 4.2 and §4.9.2 (3.0 has the floor-and-wall losses of
///   ITU-R P.1238 folded in); −94 dBm at 1 Mbit/s DSSS is a typical datasheet value (802.11b
///   clause 16 requires only −80 dBm); 4 dB SNR for DBPSK with DSSS spreading gain.
/// - 5 GHz: 23 dBm EIRP for 5150–5350 MHz in ETSI EN 301 893; exponent 3.2 and σ_s = 8 dB
///   (higher diffraction and wall loss, IEEE 802.11 TGax channel model D/E); −92 dBm at
///   6 Mbit/s OFDM (datasheets; 802.11a requires −82 dBm); 5 dB SNR for BPSK 1/2.
/// - 6 GHz: 23 dBm EIRP low-power indoor in ETSI EN 303 687 (FCC LPI: 5 dBm/MHz, 18 dBm in
///   20 MHz); propagation as 5 GHz plus the 20·log10(6.1/5.2) free-space difference;
///   −91 dBm at MCS0.
/// - 60 GHz: 40 dBm EIRP from ETSI EN 302 567 and FCC §15.255 (phased arrays of ~25 dBi
///   conducted 15 dBm); exponent 2.0 (line of sight links only, IEEE 802.11ad channel
///   models); 15 dB/km oxygen absorption from ITU-R P.676 at 60 GHz; σ_s = 4 dB; −78 dBm at
///   MCS0 (802.11ad, table 20-3 of IEEE 802.11-2016); 1 dB SNR for π/2-BPSK with spreading.
pub fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            name: "wifi24",
            freq_khz: 2_412_000,
            width_mhz: 20,
            band: (2_400_000, 2_483_500, 20.0),
            tx_power_dbm: 17.0,
            antenna_gain_dbi: 3.0,
            exponent: 3.0,
            shadow_sigma_db: 7.0,
            fading_sigma_db: 3.0,
            absorption_db_per_km: 0.0,
            noise_figure_db: 7.0,
            sensitivity_dbm: -94.0,
            snr_min_db: 4.0,
        },
        Profile {
            name: "wifi5",
            freq_khz: 5_180_000,
            width_mhz: 20,
            band: (5_150_000, 5_350_000, 23.0),
            tx_power_dbm: 18.0,
            antenna_gain_dbi: 5.0,
            exponent: 3.2,
            shadow_sigma_db: 8.0,
            fading_sigma_db: 3.0,
            absorption_db_per_km: 0.0,
            noise_figure_db: 7.0,
            sensitivity_dbm: -92.0,
            snr_min_db: 5.0,
        },
        Profile {
            name: "wifi6",
            freq_khz: 5_955_000,
            width_mhz: 20,
            band: (5_925_000, 6_425_000, 23.0),
            tx_power_dbm: 18.0,
            antenna_gain_dbi: 5.0,
            exponent: 3.2,
            shadow_sigma_db: 8.0,
            fading_sigma_db: 3.0,
            absorption_db_per_km: 0.0,
            noise_figure_db: 7.0,
            sensitivity_dbm: -91.0,
            snr_min_db: 5.0,
        },
        Profile {
            name: "wifi60",
            freq_khz: 60_480_000,
            width_mhz: 2160,
            band: (57_240_000, 70_200_000, 40.0),
            tx_power_dbm: 15.0,
            antenna_gain_dbi: 25.0,
            exponent: 2.0,
            shadow_sigma_db: 4.0,
            fading_sigma_db: 2.0,
            absorption_db_per_km: 15.0,
            noise_figure_db: 10.0,
            sensitivity_dbm: -78.0,
            snr_min_db: 1.0,
        },
    ]
}

impl Profile {
    /// Frequency in Hz.
    pub fn freq_hz(&self) -> f64 {
        f64::from(self.freq_khz) * 1e3
    }

    /// Mean path loss at `d` metres (before shadowing and fading).
    pub fn path_loss_db(&self, d: f64) -> f64 {
        let d = d.max(1.0);
        let fspl_1m = wisp_protocol::physics::fspl_db(1.0, self.freq_hz());
        fspl_1m + 10.0 * self.exponent * d.log10() + self.absorption_db_per_km * d / 1000.0
    }

    /// Thermal noise plus noise figure in the channel, dBm.
    pub fn noise_dbm(&self) -> f64 {
        -174.0 + 10.0 * (f64::from(self.width_mhz) * 1e6).log10() + self.noise_figure_db
    }

    /// The mean level (dBm) at a receiver `d` metres away, after the link's shadowing
    /// (`shadow`, a standard normal drawn once per pair) and before fading.
    pub fn mean_rx_dbm(
        &self,
        tx_power_dbm: f64,
        tx_gain_dbi: f64,
        rx_gain_dbi: f64,
        d: f64,
        shadow: f64,
    ) -> f64 {
        tx_power_dbm + tx_gain_dbi + rx_gain_dbi - self.path_loss_db(d)
            + self.shadow_sigma_db * shadow
    }

    /// What a receiver makes of a signal arriving at `rssi_dbm`: nothing below its
    /// sensitivity or SNR threshold, else the (RSSI, SNR) it reports, dB, saturated and limited
    /// by EVM.
    pub fn decode(&self, rssi_dbm: f64) -> Option<(f64, f64)> {
        let snr = rssi_dbm - self.noise_dbm();
        if rssi_dbm < self.sensitivity_dbm || snr < self.snr_min_db {
            return None;
        }
        Some((rssi_dbm.min(RSSI_MAX_DBM), snr.min(SNR_MAX_DB)))
    }

    /// The distance beyond which even a +3σ shadowing and +3σ fading draw leaves the signal
    /// below sensitivity, for a link with these gains: the grid's search radius.
    pub fn max_range_m(&self, eirp_dbm: f64, rx_gain_dbi: f64) -> f64 {
        let budget = eirp_dbm + rx_gain_dbi
            - self.sensitivity_dbm.max(self.noise_dbm() + self.snr_min_db)
            + 3.0 * (self.shadow_sigma_db + self.fading_sigma_db);
        // Bisection on the monotonic path loss (absorption makes it non-invertible in closed form).
        let (mut lo, mut hi) = (1.0_f64, 1_000_000.0_f64);
        for _ in 0..60 {
            let mid = (lo * hi).sqrt();
            if self.path_loss_db(mid) > budget {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

/// Looks a profile up by name.
pub fn profile(name: &str) -> Option<Profile> {
    profiles().into_iter().find(|p| p.name == name)
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash step.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal from a hash of `parts` (Box–Muller over two mixes).
pub fn mixed_normal(seed: u64, parts: &[u64]) -> f64 {
    let mut h = mix(seed);
    for p in parts {
        h = mix(h ^ *p);
    }
    let a = crate::rng::unit(h);
    let b = crate::rng::unit(mix(h ^ 0x5851_f42d_4c95_7f2d));
    crate::rng::box_muller(a, b)
}

/// Shadowing of the unordered pair `(a, b)`, dB (a standard normal; scale by σ_s).
pub fn shadowing(seed: u64, a: u32, b: u32) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    mixed_normal(seed ^ 0x5348_4144, &[(u64::from(lo) << 32) | u64::from(hi)])
}

/// Fading of one transmission (`tx` in `epoch`) at `rx`, a standard normal.
pub fn fading(seed: u64, epoch: u64, tx: u32, rx: u32) -> f64 {
    mixed_normal(
        seed ^ 0x4641_4445,
        &[epoch, (u64::from(tx) << 32) | u64::from(rx)],
    )
}

/// A uniform grid over planar coordinates (metres) with square cells.
#[derive(Debug, Clone)]
pub struct Grid {
    cell_m: f64,
    /// (cell key, item), sorted by key then item.
    entries: Vec<(u64, u32)>,
}

fn key(cx: i64, cy: i64) -> u64 {
    // Offsets keep keys positive for any area smaller than ±2^31 cells.
    #[allow(clippy::cast_sign_loss)]
    let k = (((cx + (1 << 31)) as u64) << 32) | ((cy + (1 << 31)) as u64 & 0xffff_ffff);
    k
}

fn cell_of(v: f64, cell_m: f64) -> i64 {
    // Coordinates are bounded by the area (a few thousand km at most).
    #[allow(clippy::cast_possible_truncation)]
    let c = (v / cell_m).floor() as i64;
    c
}

impl Grid {
    /// A grid of `cell_m` cells over `points` (x, y), item = index in `points`.
    pub fn new(cell_m: f64, points: &[(f64, f64)]) -> Grid {
        let cell_m = cell_m.max(1.0);
        let mut entries: Vec<(u64, u32)> = points
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                (
                    key(cell_of(*x, cell_m), cell_of(*y, cell_m)),
                    u32::try_from(i).unwrap_or(u32::MAX),
                )
            })
            .collect();
        entries.sort_unstable();
        Grid { cell_m, entries }
    }

    /// Items within `radius` cells-worth of `(x, y)` (a superset of those within `radius`
    /// metres), in ascending item order within each cell, cells in key order.
    pub fn near(&self, x: f64, y: f64, radius: f64, out: &mut Vec<u32>) {
        out.clear();
        let (cx, cy) = (cell_of(x, self.cell_m), cell_of(y, self.cell_m));
        let r = cell_of(radius, self.cell_m) + 1;
        for gx in cx - r..=cx + r {
            let lo = key(gx, cy - r);
            let hi = key(gx, cy + r);
            let start = self.entries.partition_point(|e| e.0 < lo);
            for e in &self.entries[start..] {
                if e.0 > hi {
                    break;
                }
                out.push(e.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_loss_matches_free_space_with_exponent_two() {
        let p = Profile {
            exponent: 2.0,
            ..profile("wifi24").unwrap_or_else(|| unreachable!())
        };
        let fspl = wisp_protocol::physics::fspl_db(1000.0, p.freq_hz());
        assert!((p.path_loss_db(1000.0) - fspl).abs() < 1e-9);
    }

    #[test]
    fn shadowing_is_symmetric_and_spread() {
        assert_eq!(shadowing(1, 3, 9), shadowing(1, 9, 3));
        let n = 20_000u32;
        let draws: Vec<f64> = (0..n).map(|i| shadowing(7, i, i + 1)).collect();
        let mean = draws.iter().sum::<f64>() / f64::from(n);
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / f64::from(n);
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn grid_finds_every_point_in_range() {
        let pts: Vec<(f64, f64)> = (0..400)
            .map(|i| {
                (
                    f64::from(i % 20) * 73.0 - 500.0,
                    f64::from(i / 20) * 61.0 - 300.0,
                )
            })
            .collect();
        let g = Grid::new(150.0, &pts);
        let mut out = Vec::new();
        g.near(100.0, 50.0, 300.0, &mut out);
        for (i, (x, y)) in pts.iter().enumerate() {
            let d = ((x - 100.0).powi(2) + (y - 50.0).powi(2)).sqrt();
            if d <= 300.0 {
                assert!(out.contains(&u32::try_from(i).unwrap_or(0)), "{i} at {d} m");
            }
        }
    }

    #[test]
    fn ranges_are_sane() {
        for p in profiles() {
            let r = p.max_range_m(p.tx_power_dbm + p.antenna_gain_dbi, p.antenna_gain_dbi);
            assert!(r > 50.0 && r < 50_000.0, "{} {r}", p.name);
        }
    }
}
