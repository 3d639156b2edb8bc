//! Location: H3 cells and great-circle distance.
//!
//! A node asserts its location as an H3 cell (by default resolution 12, edges of about 9.4 m);
//! proofs carry cells, never raw coordinates, except the GNSS fix in heartbeats. Distances
//! between cells are great-circle distances between their centres.

use core::fmt;

use h3o::{CellIndex, LatLng, Resolution};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The resolution at which nodes assert their location (H3 res 12: ~307 m² per cell).
pub const ASSERT_RESOLUTION: u8 = 12;

/// Mean Earth radius in metres (IUGG R1 = 6,371,008.8 m), used by [`haversine_m`].
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A valid H3 cell index. On the wire it is the 64-bit index as a varint; decoding rejects any
/// value that is not a valid cell, so a decoded `Cell` is always usable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell(CellIndex);

/// An invalid coordinate or cell index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    /// The 64-bit value is not a valid H3 cell index.
    #[error("not a valid H3 cell index: {0:#x}")]
    InvalidCell(u64),
    /// Latitude/longitude out of range or not finite.
    #[error("invalid coordinates")]
    InvalidCoordinates,
    /// The resolution is not 0..=15.
    #[error("invalid H3 resolution {0}")]
    InvalidResolution(u8),
}

impl Cell {
    /// The cell containing `(lat, lon)` degrees at `resolution`.
    pub fn from_degrees(lat: f64, lon: f64, resolution: u8) -> Result<Cell, GeoError> {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::InvalidCoordinates);
        }
        let ll = LatLng::new(lat, lon).map_err(|_| GeoError::InvalidCoordinates)?;
        let res = Resolution::try_from(resolution)
            .map_err(|_| GeoError::InvalidResolution(resolution))?;
        Ok(Cell(ll.to_cell(res)))
    }

    /// The cell containing a GNSS position in 1e-7 degrees.
    pub fn from_e7(lat_e7: i32, lon_e7: i32, resolution: u8) -> Result<Cell, GeoError> {
        Cell::from_degrees(f64::from(lat_e7) / 1e7, f64::from(lon_e7) / 1e7, resolution)
    }

    /// The cell for a raw 64-bit index.
    pub fn from_u64(index: u64) -> Result<Cell, GeoError> {
        CellIndex::try_from(index)
            .map(Cell)
            .map_err(|_| GeoError::InvalidCell(index))
    }

    /// The raw 64-bit index.
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// The h3o index.
    pub fn index(self) -> CellIndex {
        self.0
    }

    /// The resolution, 0..=15.
    pub fn resolution(self) -> u8 {
        u8::from(self.0.resolution())
    }

    /// The centre as `(lat, lon)` degrees.
    pub fn center(self) -> (f64, f64) {
        let ll = LatLng::from(self.0);
        (ll.lat(), ll.lng())
    }

    /// The ancestor at a coarser resolution (itself if `resolution` is not coarser).
    pub fn parent(self, resolution: u8) -> Cell {
        Resolution::try_from(resolution)
            .ok()
            .and_then(|r| self.0.parent(r))
            .map_or(self, Cell)
    }

    /// Great-circle distance in metres between the two cells' centres.
    pub fn distance_m(self, other: Cell) -> f64 {
        let (a_lat, a_lon) = self.center();
        let (b_lat, b_lon) = other.center();
        haversine_m(a_lat, a_lon, b_lat, b_lon)
    }

    /// Distance in metres from this cell's centre to a point in degrees.
    pub fn distance_to_m(self, lat: f64, lon: f64) -> f64 {
        let (c_lat, c_lon) = self.center();
        haversine_m(c_lat, c_lon, lat, lon)
    }
}

/// Great-circle distance in metres by the haversine formula:
/// `d = 2R · asin(√(sin²(Δφ/2) + cos φ1 · cos φ2 · sin²(Δλ/2)))`, R = [`EARTH_RADIUS_M`].
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cell({})", self.0)
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&self.0)
        } else {
            s.serialize_u64(self.as_u64())
        }
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = alloc::string::String::deserialize(d)?;
            let v = u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)?;
            Cell::from_u64(v).map_err(serde::de::Error::custom)
        } else {
            Cell::from_u64(u64::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn one_degree_of_longitude_on_the_equator() {
        // R · π/180 = 6,371,008.8 × 0.017453292519943295 = 111,195.08 m.
        assert!(close(haversine_m(0.0, 0.0, 0.0, 1.0), 111_195.08, 0.01));
    }

    #[test]
    fn antipodes_are_half_the_circumference() {
        // π R = 20,015,114.4 m.
        assert!(close(haversine_m(0.0, 0.0, 0.0, 180.0), 20_015_114.4, 0.1));
        assert!(close(haversine_m(90.0, 0.0, -90.0, 0.0), 20_015_114.4, 0.1));
    }

    #[test]
    fn paris_to_london_matches_h3o() {
        // Notre-Dame (48.8530, 2.3499) to Trafalgar Square (51.5080, -0.1281): about 343.5 km.
        let d = haversine_m(48.8530, 2.3499, 51.5080, -0.1281);
        assert!(close(d, 343_500.0, 1_000.0), "{d}");
        let a = LatLng::new(48.8530, 2.3499).unwrap();
        let b = LatLng::new(51.5080, -0.1281).unwrap();
        // h3o uses a radius 1.6 m smaller: agreement to 1e-6 relative.
        assert!(close(d, a.distance_m(b), d * 1e-6));
    }

    #[test]
    fn cells_round_trip_and_reject_garbage() {
        let c = Cell::from_degrees(48.8530, 2.3499, ASSERT_RESOLUTION).unwrap();
        assert_eq!(c.resolution(), 12);
        assert_eq!(Cell::from_u64(c.as_u64()).unwrap(), c);
        let enc = postcard::to_allocvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<Cell>(&enc).unwrap(), c);
        assert!(Cell::from_u64(0).is_err());
        assert!(postcard::from_bytes::<Cell>(&postcard::to_allocvec(&0x1234u64).unwrap()).is_err());
        assert_eq!(
            Cell::from_degrees(91.0, 0.0, 12),
            Err(GeoError::InvalidCoordinates)
        );
        assert_eq!(
            Cell::from_degrees(0.0, 0.0, 16),
            Err(GeoError::InvalidResolution(16))
        );
        assert_eq!(
            Cell::from_degrees(f64::NAN, 0.0, 1),
            Err(GeoError::InvalidCoordinates)
        );
    }

    #[test]
    fn cell_centre_is_within_the_cell_size() {
        let c = Cell::from_e7(488_530_000, 23_499_000, 12).unwrap();
        // A res-12 cell's edge is ~9.4 m, so its centre is within ~10 m of any point in it.
        assert!(c.distance_to_m(48.8530, 2.3499) < 10.0);
        let parent = c.parent(8);
        assert_eq!(parent.resolution(), 8);
        assert_eq!(c.parent(13), c);
    }

    #[test]
    fn json_uses_the_h3_string() {
        let c = Cell::from_degrees(48.8530, 2.3499, 12).unwrap();
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, alloc::format!("\"{c}\""));
        assert_eq!(serde_json::from_str::<Cell>(&j).unwrap(), c);
    }
}
