//! Physical bounds the oracle uses to reject impossible claims.
//!
//! These are upper bounds on what physics allows, never estimates: an honest node must always
//! pass them, so the margins err on the side of the node.

/// Speed of light in vacuum, m/s.
pub const SPEED_OF_LIGHT_M_S: f64 = 299_792_458.0;

/// Light in optical fibre, metres per microsecond (≈ c / 1.5, i.e. 200 km/ms). Internet paths
/// are fibre and never straight, so real RTTs are longer than this bound needs.
pub const FIBRE_M_PER_US: f64 = 200.0;

/// Light in vacuum (microwave and free-space links), metres per microsecond. The strictest
/// physical bound: nothing carries a signal faster.
pub const VACUUM_M_PER_US: f64 = 299.792_458;

/// Free-space path loss in dB at `distance_m` metres and `freq_hz` hertz:
/// `FSPL = 20·log10(4π·d·f / c)` (Friis). Equivalently `20·log10(d_km) + 20·log10(f_MHz) +
/// 32.45`. Returns 0 for distances inside one wavelength, where the far-field formula does not
/// hold (and would go negative).
pub fn fspl_db(distance_m: f64, freq_hz: f64) -> f64 {
    let wavelength = SPEED_OF_LIGHT_M_S / freq_hz;
    // Also catches NaN: a comparison with NaN is false.
    if distance_m.partial_cmp(&wavelength) != Some(core::cmp::Ordering::Greater) {
        return 0.0;
    }
    20.0 * (4.0 * core::f64::consts::PI * distance_m * freq_hz / SPEED_OF_LIGHT_M_S).log10()
}

/// The strongest RSSI (dBm) a receiver can see from a transmitter at `distance_m`:
/// `tx_power + tx_gain + rx_gain − FSPL(d, f) + margin`. Free space is the best case (real
/// paths lose more: walls, foliage, Fresnel-zone blockage), so a stronger reading means the
/// distance, the power or the gains are not what was claimed. `margin_db` absorbs calibration
/// error and constructive multipath (a two-ray path can add up to +6 dB).
pub fn max_rssi_dbm(
    tx_power_dbm: f64,
    tx_gain_dbi: f64,
    rx_gain_dbi: f64,
    distance_m: f64,
    freq_hz: f64,
    margin_db: f64,
) -> f64 {
    tx_power_dbm + tx_gain_dbi + rx_gain_dbi - fspl_db(distance_m, freq_hz) + margin_db
}

/// The farthest a node can be from a measurer that saw round-trip time `rtt_us`, at signal speed
/// `m_per_us` ([`FIBRE_M_PER_US`] or [`VACUUM_M_PER_US`]): `d ≤ (rtt / 2) · v`.
pub fn rtt_max_distance_m(rtt_us: u64, m_per_us: f64) -> f64 {
    (rtt_us as f64 / 2.0) * m_per_us
}

/// The shortest round-trip time physically possible over `distance_m`: `2·d / v`.
pub fn min_rtt_us(distance_m: f64, m_per_us: f64) -> f64 {
    2.0 * distance_m / m_per_us
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn fspl_hand_computed() {
        // 1 km at 2.4 GHz: 20·log10(4π·1000·2.4e9 / 299792458) = 20·log10(100 600.8) = 100.05 dB.
        assert!(close(fspl_db(1_000.0, 2.4e9), 100.052, 0.001));
        // 100 m at 5.8 GHz: 20·log10(0.1) + 20·log10(5800) + 32.448 = −20 + 75.269 + 32.448 = 87.716 dB.
        assert!(close(fspl_db(100.0, 5.8e9), 87.716, 0.001));
        // 200 m at 60.48 GHz (802.11ad channel 2): −13.979 + 95.632 + 32.448 = 114.101 dB.
        assert!(close(fspl_db(200.0, 60.48e9), 114.101, 0.001));
        // Doubling the distance adds 20·log10(2) = 6.02 dB.
        assert!(close(
            fspl_db(2_000.0, 2.4e9) - fspl_db(1_000.0, 2.4e9),
            6.0206,
            0.0001
        ));
    }

    #[test]
    fn fspl_near_field_is_zero() {
        // λ at 2.4 GHz is 12.5 cm.
        assert_eq!(fspl_db(0.1, 2.4e9), 0.0);
        assert_eq!(fspl_db(0.0, 2.4e9), 0.0);
        assert_eq!(fspl_db(f64::NAN, 2.4e9), 0.0);
    }

    #[test]
    fn rssi_bound_hand_computed() {
        // 20 dBm, 3 dBi each side, 1 km at 2.4 GHz, 6 dB margin: 20 + 3 + 3 − 100.05 + 6 = −68.05.
        assert!(close(
            max_rssi_dbm(20.0, 3.0, 3.0, 1_000.0, 2.4e9, 6.0),
            -68.052,
            0.001
        ));
    }

    #[test]
    fn rtt_bounds_hand_computed() {
        // 10 ms RTT in fibre: 5 ms one way × 200 km/ms = 1000 km.
        assert!(close(
            rtt_max_distance_m(10_000, FIBRE_M_PER_US),
            1_000_000.0,
            1e-6
        ));
        // Paris–New York (5837 km) needs at least 2 × 5837 km / 299.792 km/ms = 38.940 ms in vacuum.
        assert!(close(
            min_rtt_us(5_837_000.0, VACUUM_M_PER_US),
            38_940.27,
            0.01
        ));
        assert!(close(rtt_max_distance_m(0, VACUUM_M_PER_US), 0.0, 0.0));
    }
}
