//! Node placement: uniform over an area, clustered (city cores, suburbs, rural rest), or read
//! from a CSV file of `lat,lon`.
//!
//! Node `i`'s position comes from its own stream `(seed, i, Placement)`; city centres from
//! streams keyed above every node index. Adding a node moves nobody else.

use anyhow::{Context, Result, bail};

use crate::rng::{self, Draw, Purpose};
use crate::scenario::{PlacementCfg, PlacementKind};

/// A planar projection around the area's centre (equirectangular; fine for areas up to a few
/// hundred kilometres, which is all the radio model needs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    /// Centre latitude, degrees.
    pub lat0: f64,
    /// Centre longitude, degrees.
    pub lon0: f64,
}

const M_PER_DEG_LAT: f64 = 110_574.0;
const M_PER_DEG_LON_EQ: f64 = 111_320.0;

impl Projection {
    /// Degrees to metres east/north of the centre.
    pub fn to_xy(&self, lat: f64, lon: f64) -> (f64, f64) {
        let kx = M_PER_DEG_LON_EQ * self.lat0.to_radians().cos();
        ((lon - self.lon0) * kx, (lat - self.lat0) * M_PER_DEG_LAT)
    }

    /// Metres east/north of the centre to degrees.
    pub fn to_latlon(&self, x: f64, y: f64) -> (f64, f64) {
        let kx = M_PER_DEG_LON_EQ * self.lat0.to_radians().cos();
        (self.lat0 + y / M_PER_DEG_LAT, self.lon0 + x / kx)
    }
}

/// Reads `lat,lon` lines (a non-numeric first line is a header).
pub fn read_csv(path: &str) -> Result<Vec<(f64, f64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading placement CSV {path}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split(',');
        let (Some(a), Some(b)) = (it.next(), it.next()) else {
            bail!("{path}:{}: expected lat,lon", n + 1);
        };
        match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(lat), Ok(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                out.push((lat, lon));
            }
            _ if n == 0 => {}
            _ => bail!("{path}:{}: not a latitude,longitude pair: {line}", n + 1),
        }
    }
    if out.is_empty() {
        bail!("{path}: no positions");
    }
    Ok(out)
}

/// Positions (x, y metres) of nodes `0..n`.
pub fn place(cfg: &PlacementCfg, proj: &Projection, seed: u64, n: u32) -> Result<Vec<(f64, f64)>> {
    let (w, h) = (cfg.width_km * 1000.0, cfg.height_km * 1000.0);
    match cfg.kind {
        PlacementKind::Uniform => Ok((0..n)
            .map(|i| {
                let mut r = rng::stream(seed, u64::from(i), Purpose::Placement);
                (r.range(-w / 2.0, w / 2.0), r.range(-h / 2.0, h / 2.0))
            })
            .collect()),
        PlacementKind::Clustered => {
            let cities: Vec<(f64, f64)> = (0..cfg.cities.max(1))
                .map(|c| {
                    let mut r = rng::stream(seed, u64::MAX - u64::from(c), Purpose::Placement);
                    (r.range(-w / 3.0, w / 3.0), r.range(-h / 3.0, h / 3.0))
                })
                .collect();
            Ok((0..n)
                .map(|i| {
                    let mut r = rng::stream(seed, u64::from(i), Purpose::Placement);
                    let u = r.uniform();
                    let c = r.uniform();
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let city = cities[((c * cities.len() as f64) as usize).min(cities.len() - 1)];
                    let sigma = if u < cfg.city_share {
                        Some(cfg.city_sigma_km * 1000.0)
                    } else if u < cfg.city_share + cfg.suburb_share {
                        Some(cfg.suburb_sigma_km * 1000.0)
                    } else {
                        None
                    };
                    let (x, y) = match sigma {
                        Some(s) => (city.0 + s * r.normal(), city.1 + s * r.normal()),
                        None => (r.range(-w / 2.0, w / 2.0), r.range(-h / 2.0, h / 2.0)),
                    };
                    (x.clamp(-w / 2.0, w / 2.0), y.clamp(-h / 2.0, h / 2.0))
                })
                .collect())
        }
        PlacementKind::Csv => {
            let pts = read_csv(&cfg.csv)?;
            Ok((0..n as usize)
                .map(|i| {
                    let (lat, lon) = pts[i % pts.len()];
                    // Repeated rows get a few metres of jitter so they are distinct sites.
                    let mut r = rng::stream(seed, i as u64, Purpose::Placement);
                    let (x, y) = proj.to_xy(lat, lon);
                    if i >= pts.len() {
                        (x + r.range(-50.0, 50.0), y + r.range(-50.0, 50.0))
                    } else {
                        (x, y)
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_round_trips() {
        let p = Projection {
            lat0: 38.7,
            lon0: -9.1,
        };
        let (x, y) = p.to_xy(38.71, -9.08);
        let (lat, lon) = p.to_latlon(x, y);
        assert!((lat - 38.71).abs() < 1e-9 && (lon + 9.08).abs() < 1e-9);
        let d = wisp_protocol::geo::haversine_m(38.7, -9.1, 38.71, -9.08);
        assert!(((x * x + y * y).sqrt() - d).abs() / d < 0.01);
    }

    #[test]
    fn adding_a_node_moves_nobody() {
        let cfg = PlacementCfg::default();
        let p = Projection {
            lat0: 38.7,
            lon0: -9.1,
        };
        let a = place(&cfg, &p, 5, 100).unwrap_or_default();
        let b = place(&cfg, &p, 5, 101).unwrap_or_default();
        assert_eq!(a[..], b[..100]);
    }

    #[test]
    fn csv_is_read_with_a_header() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = dir.path().join("p.csv");
        std::fs::write(&f, "lat,lon\n38.7,-9.1\n38.71,-9.12\n").unwrap_or_else(|e| panic!("{e}"));
        let pts = read_csv(f.to_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(pts, vec![(38.7, -9.1), (38.71, -9.12)]);
    }
}
