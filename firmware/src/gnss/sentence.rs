//! Writing NMEA sentences: what a receiver would send for a given fix.
//!
//! The simulated GNSS (`device::SimDevice`, feature `sim`) speaks through these, so the simulator
//! exercises the real parser end to end. Positions are written with 7 decimals of minutes,
//! which represents every 1e-7° value exactly: `writer → parser` round-trips a [`Fix`] bit for
//! bit.

use core::fmt::Write as _;

use heapless::String;

use super::{Date, Fix, MAX_SENTENCE_LEN, checksum};

/// One sentence, `$` to CR LF.
pub type SentenceBuf = String<MAX_SENTENCE_LEN>;

/// Why a sentence could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SentenceError {
    /// The sentence would exceed the 82 characters NMEA allows (absurd altitude or HDOP).
    #[error("NMEA sentence longer than 82 characters")]
    TooLong,
    /// A value is out of its range (latitude beyond ±90°, time of day beyond 24 h …).
    #[error("value out of range for an NMEA sentence")]
    OutOfRange,
}

/// A two-letter talker ID, e.g. `*b"GP"` (GPS) or `*b"GN"` (multi-constellation).
pub type Talker = [u8; 2];

struct Body(String<MAX_SENTENCE_LEN>);

impl Body {
    fn start(talker: Talker, kind: &str) -> Result<Self, SentenceError> {
        let mut s = String::new();
        s.push('$').map_err(|_| SentenceError::TooLong)?;
        for &c in &talker {
            if !c.is_ascii_uppercase() {
                return Err(SentenceError::OutOfRange);
            }
            s.push(char::from(c)).map_err(|_| SentenceError::TooLong)?;
        }
        s.push_str(kind).map_err(|_| SentenceError::TooLong)?;
        Ok(Self(s))
    }

    fn field(&mut self, args: core::fmt::Arguments<'_>) -> Result<(), SentenceError> {
        self.0.push(',').map_err(|_| SentenceError::TooLong)?;
        self.0.write_fmt(args).map_err(|_| SentenceError::TooLong)
    }

    fn finish(mut self) -> Result<SentenceBuf, SentenceError> {
        let sum = checksum(&self.0.as_bytes()[1..]);
        write!(self.0, "*{sum:02X}\r\n").map_err(|_| SentenceError::TooLong)?;
        Ok(self.0)
    }
}

fn time_field(time_ms: u32) -> Result<(u32, u32, u32, u32), SentenceError> {
    // 86 400 000 and above: a leap second (hh=23, mm=59, ss=60).
    if time_ms >= 86_401_000 {
        return Err(SentenceError::OutOfRange);
    }
    let (s, ms) = (time_ms / 1_000, time_ms % 1_000);
    let (h, m, sec) = if s >= 86_400 {
        (23, 59, 60)
    } else {
        (s / 3_600, s / 60 % 60, s % 60)
    };
    Ok((h, m, sec, ms))
}

/// `(degrees, whole minutes, minutes' 7 decimals, hemisphere)` of an angle in 1e-7°.
fn angle(
    e7: i32,
    max_deg: u32,
    pos: char,
    neg: char,
) -> Result<(u32, u32, u32, char), SentenceError> {
    let abs = e7.unsigned_abs();
    if abs > max_deg * 10_000_000 {
        return Err(SentenceError::OutOfRange);
    }
    let deg = abs / 10_000_000;
    // The fraction of a degree in 1e-7 minutes: rem · 60 < 6e8, no overflow in u32.
    let minutes_e7 = (abs % 10_000_000) * 60;
    let hemisphere = if e7 < 0 { neg } else { pos };
    Ok((
        deg,
        minutes_e7 / 10_000_000,
        minutes_e7 % 10_000_000,
        hemisphere,
    ))
}

fn position_fields(body: &mut Body, fix: &Fix) -> Result<(), SentenceError> {
    let (d, m, f, h) = angle(fix.lat_e7, 90, 'N', 'S')?;
    body.field(format_args!("{d:02}{m:02}.{f:07}"))?;
    body.field(format_args!("{h}"))?;
    let (d, m, f, h) = angle(fix.lon_e7, 180, 'E', 'W')?;
    body.field(format_args!("{d:03}{m:02}.{f:07}"))?;
    body.field(format_args!("{h}"))
}

fn time(body: &mut Body, time_ms: u32) -> Result<(), SentenceError> {
    let (h, m, s, ms) = time_field(time_ms)?;
    body.field(format_args!("{h:02}{m:02}{s:02}.{ms:03}"))
}

/// A GGA sentence for `fix` (quality 1, GPS fix), or a no-fix GGA (quality 0, empty position)
/// at `time_ms` when `fix` is `None`.
pub fn gga(talker: Talker, time_ms: u32, fix: Option<&Fix>) -> Result<SentenceBuf, SentenceError> {
    let mut body = Body::start(talker, "GGA")?;
    time(&mut body, time_ms)?;
    match fix {
        Some(fix) => {
            position_fields(&mut body, fix)?;
            body.field(format_args!("1"))?;
            body.field(format_args!("{:02}", fix.satellites))?;
            let h = fix.hdop_centi;
            body.field(format_args!("{}.{:02}", h / 100, h % 100))?;
            let sign = if fix.alt_mm < 0 { "-" } else { "" };
            let a = fix.alt_mm.unsigned_abs();
            body.field(format_args!("{sign}{}.{:03}", a / 1_000, a % 1_000))?;
        }
        None => {
            for _ in 0..4 {
                body.field(format_args!(""))?;
            }
            body.field(format_args!("0"))?;
            body.field(format_args!("00"))?;
            body.field(format_args!("99.99"))?;
            body.field(format_args!(""))?;
        }
    }
    // Altitude unit, geoid separation (not modelled), its unit, DGPS age, station.
    for f in ["M", "", "M", "", ""] {
        body.field(format_args!("{f}"))?;
    }
    body.finish()
}

/// An RMC sentence: status `A` with the position of `fix`, or status `V` with empty position
/// when `fix` is `None`. Speed and course are written as zero (a hotspot does not move).
pub fn rmc(
    talker: Talker,
    time_ms: u32,
    date: Date,
    fix: Option<&Fix>,
) -> Result<SentenceBuf, SentenceError> {
    let mut body = Body::start(talker, "RMC")?;
    time(&mut body, time_ms)?;
    match fix {
        Some(fix) => {
            body.field(format_args!("A"))?;
            position_fields(&mut body, fix)?;
            body.field(format_args!("0.0"))?;
            body.field(format_args!("0.0"))?;
        }
        None => {
            body.field(format_args!("V"))?;
            for _ in 0..6 {
                body.field(format_args!(""))?;
            }
        }
    }
    body.field(format_args!(
        "{:02}{:02}{:02}",
        date.day,
        date.month,
        date.year % 100
    ))?;
    body.field(format_args!(""))?;
    body.field(format_args!(""))?;
    body.field(format_args!("{}", if fix.is_some() { "A" } else { "N" }))?;
    body.finish()
}

#[cfg(test)]
mod tests {
    use super::super::{NmeaParser, UtcTime};
    use super::*;

    fn fix(lat_e7: i32, lon_e7: i32, alt_mm: i32, time_ms: u32, date: Date) -> Fix {
        Fix {
            lat_e7,
            lon_e7,
            alt_mm,
            hdop_centi: 87,
            satellites: 11,
            utc: UtcTime {
                date: Some(date),
                time_ms,
            },
        }
    }

    #[test]
    fn writes_the_sentences_a_receiver_would() {
        let date = Date {
            year: 2017,
            month: 3,
            day: 31,
        };
        let f = fix(550_888_498, 389_764_554, 2_177_000, 39_684_000, date);
        let g = gga(*b"GP", f.utc.time_ms, Some(&f)).unwrap();
        assert_eq!(
            g.as_str(),
            "$GPGGA,110124.000,5505.3309880,N,03858.5873240,E,1,11,0.87,2177.000,M,,M,,*4C\r\n"
        );
        let r = rmc(*b"GN", f.utc.time_ms, date, Some(&f)).unwrap();
        assert_eq!(
            r.as_str(),
            "$GNRMC,110124.000,A,5505.3309880,N,03858.5873240,E,0.0,0.0,310317,,,A*75\r\n"
        );
        let none = gga(*b"GN", 65_764_000, None).unwrap();
        assert_eq!(
            none.as_str(),
            "$GNGGA,181604.000,,,,,0,00,99.99,,M,,M,,*42\r\n"
        );
    }

    #[test]
    fn round_trips_through_the_parser_exactly() {
        let date = Date {
            year: 2030,
            month: 12,
            day: 31,
        };
        let cases = [
            fix(0, 0, 0, 0, date),
            fix(-338_567_890, 1_512_153_011, -12_345, 86_399_999, date),
            fix(899_999_999, -1_799_999_999, 8_848_860, 43_200_001, date),
            fix(-900_000_000, 1_800_000_000, 1, 1, date),
            fix(1, -1, -1, 123_456, date),
        ];
        for f in cases {
            let mut p = NmeaParser::new();
            let g = gga(*b"GN", f.utc.time_ms, Some(&f)).unwrap();
            let r = rmc(*b"GN", f.utc.time_ms, date, Some(&f)).unwrap();
            assert!(g.len() <= MAX_SENTENCE_LEN && r.len() <= MAX_SENTENCE_LEN);
            assert_eq!(p.push(g.as_bytes()), None, "waits for the RMC");
            assert_eq!(p.push(r.as_bytes()), Some(f), "{g}{r}");
            assert_eq!(p.stats().sentences_ok, 2);
        }
    }

    #[test]
    fn rejects_what_nmea_cannot_carry() {
        let date = Date {
            year: 2030,
            month: 1,
            day: 1,
        };
        let mut f = fix(900_000_001, 0, 0, 0, date);
        assert_eq!(gga(*b"GP", 0, Some(&f)), Err(SentenceError::OutOfRange));
        f.lat_e7 = 0;
        assert_eq!(
            gga(*b"GP", 86_401_000, Some(&f)),
            Err(SentenceError::OutOfRange)
        );
        assert_eq!(gga(*b"gp", 0, Some(&f)), Err(SentenceError::OutOfRange));
        f.alt_mm = i32::MIN;
        f.hdop_centi = u16::MAX;
        assert_eq!(gga(*b"GP", 0, Some(&f)), Err(SentenceError::TooLong));
    }
}
