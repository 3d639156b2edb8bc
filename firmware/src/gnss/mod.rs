//! GNSS position from NMEA 0183.
//!
//! [`NmeaParser`] turns a byte stream from any source (a UART, a file, a TCP socket from
//! `gpsd`, the simulator) into [`Fix`]es. It is allocation-free and built for the bytes a real
//! receiver sends: sentences split across reads, garbage and binary protocol frames between
//! sentences (u-blox UBX on the same port), corrupted bytes, lines cut short at power-up.
//!
//! # What is parsed
//!
//! - Lines start at `$` (a `$` anywhere resynchronises) and end at CR or LF. NMEA caps a sentence
//!   at 82 characters including `$` and CR LF; longer lines are dropped and counted.
//! - The `*HH` checksum is required and checked.
//! - GGA (position, altitude, quality, satellites, HDOP) and RMC (date, validity) from any talker
//!   (`GP`, `GN`, `GL`, `GA`, `GB`, …). Other sentences are counted as unsupported.
//! - A GGA and an RMC with the same UTC time are combined: the fix carries RMC's date. A fix is
//!   produced when the pair is complete, or (for receivers that send GGA alone) when the next
//!   second's first sentence arrives, or on [`NmeaParser::flush`].
//! - No fix: GGA quality 0 or ≥ 6 (estimated, manual, simulated), RMC status `V` or mode `N`/`E`,
//!   or empty position fields. A no-fix epoch clears [`NmeaParser::current_fix`].
//!
//! # Integers only
//!
//! `ddmm.mmmm` is converted exactly with integer arithmetic to 1e-7 degrees (rounded half up at
//! the last digit), so a fix has one canonical encoding in signed heartbeats. 1e-7° is 1.1 cm.

pub mod sentence;
#[cfg(feature = "linux")]
pub mod tty;

use heapless::Vec;

/// The longest NMEA sentence in bytes, including `$` and CR LF (NMEA 0183 v4.11 §5.3).
pub const MAX_SENTENCE_LEN: usize = 82;

// From `$` to the last checksum digit: the sentence without CR LF.
const MAX_LINE: usize = MAX_SENTENCE_LEN - 2;

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    /// Full year, e.g. 2017. NMEA sends two digits: 80–99 read as 19xx, 00–79 as 20xx.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of month, 1..=31.
    pub day: u8,
}

impl Date {
    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(&self) -> i64 {
        let (y, m, d) = (
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`); `None` outside years 0–65535.
    pub fn from_days_since_epoch(days: i64) -> Option<Self> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Some(Self {
            year: u16::try_from(year).ok()?,
            month: u8::try_from(month).ok()?,
            day: u8::try_from(day).ok()?,
        })
    }
}

/// UTC time of a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UtcTime {
    /// The date, when an RMC of the same second supplied it.
    pub date: Option<Date>,
    /// Milliseconds since midnight UTC (a leap second reads as 86 400 000 and above).
    pub time_ms: u32,
}

impl UtcTime {
    /// Milliseconds since the Unix epoch, when the date is known.
    pub fn unix_ms(&self) -> Option<u64> {
        let days = u64::try_from(self.date?.days_since_epoch()).ok()?;
        Some(days * 86_400_000 + u64::from(self.time_ms))
    }
}

/// A position fix. Integers only, so it encodes canonically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fix {
    /// Latitude in 1e-7 degrees, north positive.
    pub lat_e7: i32,
    /// Longitude in 1e-7 degrees, east positive.
    pub lon_e7: i32,
    /// Altitude above mean sea level (GGA field 9) in millimetres.
    pub alt_mm: i32,
    /// Horizontal dilution of precision × 100.
    pub hdop_centi: u16,
    /// Satellites used in the fix.
    pub satellites: u8,
    /// When the receiver computed the fix.
    pub utc: UtcTime,
}

/// Counters of what the parser saw. They only grow (saturating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NmeaStats {
    /// GGA and RMC sentences with a valid checksum that parsed.
    pub sentences_ok: u32,
    /// Sentences whose `*HH` did not match their contents.
    pub checksum_errors: u32,
    /// Lines longer than [`MAX_SENTENCE_LEN`], dropped.
    pub overlong: u32,
    /// Sentences with a valid checksum of a type other than GGA/RMC (GSV, VTG, proprietary …).
    pub unsupported: u32,
    /// Lines cut short by a new `$`, with control or binary bytes, without a checksum, or
    /// GGA/RMC sentences whose fields did not parse.
    pub malformed: u32,
    /// Fixes produced.
    pub fixes: u32,
}

fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Between sentences: everything up to the next `$` is ignored.
    Idle,
    /// Collecting a sentence.
    InLine,
    /// Dropping the rest of an overlong line.
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    lat_e7: i32,
    lon_e7: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GgaFix {
    pos: Position,
    alt_mm: i32,
    hdop_centi: u16,
    satellites: u8,
}

/// One UTC epoch's sentences, waiting for their partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Epoch {
    time_ms: u32,
    // Some(None): a GGA without a usable fix.
    gga: Option<Option<GgaFix>>,
    // Some((valid, date)).
    rmc: Option<(bool, Option<Date>)>,
}

/// The NMEA 0183 parser. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct NmeaParser {
    line: Vec<u8, MAX_LINE>,
    state: LineState,
    epoch: Option<Epoch>,
    current: Option<Fix>,
    stats: NmeaStats,
}

impl Default for NmeaParser {
    fn default() -> Self {
        Self::new()
    }
}

impl NmeaParser {
    /// An empty parser.
    pub const fn new() -> Self {
        Self {
            line: Vec::new(),
            state: LineState::Idle,
            epoch: None,
            current: None,
            stats: NmeaStats {
                sentences_ok: 0,
                checksum_errors: 0,
                overlong: 0,
                unsupported: 0,
                malformed: 0,
                fixes: 0,
            },
        }
    }

    /// The counters.
    pub fn stats(&self) -> NmeaStats {
        self.stats
    }

    /// The latest fix, or `None` if there never was one or the receiver has since reported
    /// that it lost it.
    pub fn current_fix(&self) -> Option<Fix> {
        self.current
    }

    /// Feeds bytes and returns the newest fix they completed, if any.
    pub fn push(&mut self, data: &[u8]) -> Option<Fix> {
        let mut newest = None;
        for &b in data {
            if let Some(fix) = self.push_byte(b) {
                newest = Some(fix);
            }
        }
        newest
    }

    /// Feeds bytes and calls `on_fix` for every fix they complete, in order.
    pub fn push_each(&mut self, data: &[u8], mut on_fix: impl FnMut(Fix)) {
        for &b in data {
            if let Some(fix) = self.push_byte(b) {
                on_fix(fix);
            }
        }
    }

    /// Completes a pending GGA that is still waiting for an RMC of its second.
    pub fn flush(&mut self) -> Option<Fix> {
        let epoch = self.epoch.take()?;
        self.close_epoch(epoch)
    }

    /// Feeds one byte and returns the fix it completes, if any.
    pub fn push_byte(&mut self, b: u8) -> Option<Fix> {
        match b {
            b'$' => {
                if self.state == LineState::InLine {
                    // The previous sentence was cut off (receiver reset, dropped bytes).
                    bump(&mut self.stats.malformed);
                }
                self.line.clear();
                // Capacity is MAX_LINE > 0 and the line was just cleared.
                let _ = self.line.push(b);
                self.state = LineState::InLine;
                None
            }
            b'\r' | b'\n' => {
                let was = core::mem::replace(&mut self.state, LineState::Idle);
                if was == LineState::InLine {
                    self.finish_line()
                } else {
                    None
                }
            }
            _ => {
                if self.state == LineState::InLine {
                    if !(0x20..=0x7e).contains(&b) {
                        // Binary bytes never occur inside a sentence: this line is noise.
                        bump(&mut self.stats.malformed);
                        self.state = LineState::Idle;
                    } else if self.line.push(b).is_err() {
                        bump(&mut self.stats.overlong);
                        self.state = LineState::Discard;
                    }
                }
                None
            }
        }
    }

    fn finish_line(&mut self) -> Option<Fix> {
        let line = core::mem::take(&mut self.line);
        match parse_sentence(&line) {
            Err(LineError::Checksum) => {
                bump(&mut self.stats.checksum_errors);
                None
            }
            Err(LineError::Malformed) => {
                bump(&mut self.stats.malformed);
                None
            }
            Ok(Sentence::Unsupported) => {
                bump(&mut self.stats.unsupported);
                None
            }
            Ok(Sentence::Gga { time_ms, fix }) => {
                bump(&mut self.stats.sentences_ok);
                self.record(time_ms, |e| e.gga = Some(fix))
            }
            Ok(Sentence::Rmc {
                time_ms,
                valid,
                date,
            }) => {
                bump(&mut self.stats.sentences_ok);
                self.record(time_ms, |e| e.rmc = Some((valid, date)))
            }
        }
    }

    fn record(&mut self, time_ms: Option<u32>, set: impl FnOnce(&mut Epoch)) -> Option<Fix> {
        let Some(time_ms) = time_ms else {
            // A no-fix report without a time: it ends the previous epoch and any fix.
            let out = self.flush();
            self.current = None;
            return out;
        };
        let mut out = None;
        if let Some(epoch) = self.epoch.take_if(|e| e.time_ms != time_ms) {
            out = self.close_epoch(epoch);
        }
        let epoch = self.epoch.get_or_insert(Epoch {
            time_ms,
            gga: None,
            rmc: None,
        });
        set(epoch);
        if epoch.gga.is_some() && epoch.rmc.is_some() {
            // Both halves are in: no need to wait for the next second.
            if let Some(epoch) = self.epoch.take() {
                out = self.close_epoch(epoch).or(out);
            }
        }
        out
    }

    fn close_epoch(&mut self, epoch: Epoch) -> Option<Fix> {
        let rmc_valid = epoch.rmc.is_none_or(|(valid, _)| valid);
        match (epoch.gga, rmc_valid) {
            (Some(Some(gga)), true) => {
                let fix = Fix {
                    lat_e7: gga.pos.lat_e7,
                    lon_e7: gga.pos.lon_e7,
                    alt_mm: gga.alt_mm,
                    hdop_centi: gga.hdop_centi,
                    satellites: gga.satellites,
                    utc: UtcTime {
                        date: epoch.rmc.and_then(|(_, date)| date),
                        time_ms: epoch.time_ms,
                    },
                };
                self.current = Some(fix);
                bump(&mut self.stats.fixes);
                Some(fix)
            }
            // An RMC alone that says "valid" carries no altitude or HDOP: keep the last fix.
            (None, true) => None,
            _ => {
                self.current = None;
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineError {
    Checksum,
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sentence {
    // `time_ms` is `None` only in no-fix sentences: receivers without a time fix leave it empty.
    Gga {
        time_ms: Option<u32>,
        fix: Option<GgaFix>,
    },
    Rmc {
        time_ms: Option<u32>,
        valid: bool,
        date: Option<Date>,
    },
    Unsupported,
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// XOR of the bytes between `$` and `*`: the NMEA checksum.
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0, |acc, b| acc ^ b)
}

const MAX_FIELDS: usize = 24;

fn parse_sentence(line: &[u8]) -> Result<Sentence, LineError> {
    // line = "$" body "*" H H
    let n = line.len();
    if n < 4 || line[n - 3] != b'*' {
        return Err(LineError::Malformed);
    }
    let (hi, lo) = (hex_value(line[n - 2]), hex_value(line[n - 1]));
    let (Some(hi), Some(lo)) = (hi, lo) else {
        return Err(LineError::Malformed);
    };
    let body = &line[1..n - 3];
    if checksum(body) != (hi << 4 | lo) {
        return Err(LineError::Checksum);
    }
    let address = body.split(|&b| b == b',').next().unwrap_or_default();
    // Talker sentences have a two-letter talker and a three-letter type; `$P…` is proprietary.
    // Decide before splitting: other sentences may have more fields than GGA/RMC need room for.
    let talker_ok =
        address.len() == 5 && address[0] != b'P' && address[..2].iter().all(u8::is_ascii_uppercase);
    let parse: fn(&[&[u8]]) -> Option<Sentence> = match address.get(2..) {
        Some(b"GGA") if talker_ok => parse_gga,
        Some(b"RMC") if talker_ok => parse_rmc,
        _ => return Ok(Sentence::Unsupported),
    };
    let mut fields: Vec<&[u8], MAX_FIELDS> = Vec::new();
    for field in body.split(|&b| b == b',') {
        fields.push(field).map_err(|_| LineError::Malformed)?;
    }
    parse(&fields).ok_or(LineError::Malformed)
}

fn parse_gga(f: &[&[u8]]) -> Option<Sentence> {
    // GGA,time,lat,N,lon,E,quality,sats,hdop,alt,M,sep,M,age,station
    if f.len() < 10 {
        return None;
    }
    let time_ms = parse_optional(f[1], parse_time)?;
    let quality = match f[6] {
        [] => 0,
        [d @ b'0'..=b'9'] => d - b'0',
        _ => return None,
    };
    // 1 GPS, 2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float. 6 estimated, 7 manual, 8 simulation are
    // not measurements of where the hotspot is.
    let usable = (1..=5).contains(&quality);
    let fix = if usable { parse_fix_fields(f)? } else { None };
    if fix.is_some() && time_ms.is_none() {
        return None;
    }
    Some(Sentence::Gga { time_ms, fix })
}

// The fields of a GGA that claims a fix. Ok(None): the receiver left some of them empty.
fn parse_fix_fields(f: &[&[u8]]) -> Option<Option<GgaFix>> {
    let (Some(pos), sats, hdop, alt) = (parse_position(&f[2..6])?, f[7], f[8], f[9]) else {
        return Some(None);
    };
    if sats.is_empty() || hdop.is_empty() || alt.is_empty() {
        return Some(None);
    }
    let satellites = u8::try_from(parse_uint(sats)?).ok()?;
    let hdop_centi = u16::try_from(parse_decimal(hdop, 2)?).ok()?;
    let alt_mm = i32::try_from(parse_decimal(alt, 3)?).ok()?;
    Some(Some(GgaFix {
        pos,
        alt_mm,
        hdop_centi,
        satellites,
    }))
}

fn parse_rmc(f: &[&[u8]]) -> Option<Sentence> {
    // RMC,time,status,lat,N,lon,E,speed,course,date,magvar,E[,mode[,navstatus]]
    if f.len() < 10 {
        return None;
    }
    let time_ms = parse_optional(f[1], parse_time)?;
    let status_ok = match f[2] {
        b"A" => true,
        b"V" | b"" => false,
        _ => return None,
    };
    // NMEA 2.3+ mode: N = not valid, E = estimated (dead reckoning).
    let mode_ok = !matches!(f.get(12), Some(&(b"N" | b"E")));
    let date = parse_optional(f[9], parse_date)?;
    // A valid RMC must have a position and a time.
    let valid = status_ok && mode_ok && parse_position(&f[3..7])?.is_some();
    if valid && time_ms.is_none() {
        return None;
    }
    Some(Sentence::Rmc {
        time_ms,
        valid,
        date,
    })
}

/// An empty field is `Some(None)`; a field that does not parse is `None`.
fn parse_optional<T>(s: &[u8], parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        parse(s).map(Some)
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn parse_uint(s: &[u8]) -> Option<u32> {
    digits(s)
}

/// `hhmmss[.f…]` → ms since midnight. Fractions beyond milliseconds are truncated.
fn parse_time(s: &[u8]) -> Option<u32> {
    if s.len() < 6 {
        return None;
    }
    let (h, m, sec) = (digits(&s[0..2])?, digits(&s[2..4])?, digits(&s[4..6])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0;
    match &s[6..] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
            for (i, &d) in frac.iter().take(3).enumerate() {
                ms += u32::from(d - b'0') * [100, 10, 1][i];
            }
        }
        _ => return None,
    }
    Some(((h * 60 + m) * 60 + sec) * 1_000 + ms)
}

/// `ddmmyy`.
fn parse_date(s: &[u8]) -> Option<Date> {
    if s.len() != 6 {
        return None;
    }
    let (day, month, yy) = (digits(&s[0..2])?, digits(&s[2..4])?, digits(&s[4..6])?);
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let year = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    Some(Date {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
    })
}

/// A signed decimal with up to `scale` fraction digits kept, as an integer × 10^scale.
/// Further digits round half away from zero.
fn parse_decimal(s: &[u8], scale: u32) -> Option<i64> {
    let (neg, s) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &s[s.len()..]),
    };
    if (int.is_empty() && frac.is_empty())
        || int.len() > 12
        || !int.iter().chain(frac).all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut value: i64 = 0;
    for &d in int {
        value = value * 10 + i64::from(d - b'0');
    }
    for i in 0..scale as usize {
        let d = frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        value = value * 10 + d;
    }
    if frac.get(scale as usize).is_some_and(|&d| d >= b'5') {
        value += 1;
    }
    Some(if neg { -value } else { value })
}

/// `[lat, N|S, lon, E|W]` → position. `Some(None)` when the fields are empty (no fix).
fn parse_position(f: &[&[u8]]) -> Option<Option<Position>> {
    let [lat, ns, lon, ew] = f else {
        return None;
    };
    if lat.is_empty() || lon.is_empty() || ns.is_empty() || ew.is_empty() {
        return Some(None);
    }
    let lat_e7 = parse_angle(lat, 90)?;
    let lon_e7 = parse_angle(lon, 180)?;
    let lat_e7 = match *ns {
        b"N" => lat_e7,
        b"S" => -lat_e7,
        _ => return None,
    };
    let lon_e7 = match *ew {
        b"E" => lon_e7,
        b"W" => -lon_e7,
        _ => return None,
    };
    Some(Some(Position { lat_e7, lon_e7 }))
}

/// `d…dmm[.m…]` (degrees, then two digits of whole minutes, then fractional minutes) → 1e-7°.
///
/// Exact: with k fraction digits, minutes are `M / 10^k` and the degree fraction is
/// `M / (60 · 10^k)`, so 1e-7° = round(M · 10^7 / (60 · 10^k)), computed in u128.
fn parse_angle(s: &[u8], max_deg: u32) -> Option<i32> {
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &s[s.len()..]),
    };
    // At least "mm", at most "dddmm"; NMEA fraction digits are receiver-specific (≤ 10 seen).
    if !(2..=5).contains(&int.len()) || frac.len() > 12 {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let whole = digits(int)?;
    let (deg, min) = (whole / 100, whole % 100);
    if min >= 60 || deg > max_deg {
        return None;
    }
    let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
    let frac_value = frac
        .iter()
        .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    let minutes_scaled = u128::from(min) * scale + frac_value;
    let den = 60 * scale;
    let frac_e7 = (minutes_scaled * 10_000_000 * 2 + den) / (2 * den);
    let total = u128::from(deg) * 10_000_000 + frac_e7;
    if total > u128::from(max_deg) * 10_000_000 {
        return None;
    }
    i32::try_from(total).ok()
}

/// Something that reports position fixes without blocking: a GNSS receiver or the simulator.
pub trait PositionSource {
    /// The error of the underlying transport.
    type Error;
    /// Processes whatever input is available now and returns the newest fix it completed.
    fn poll_fix(&mut self) -> Result<Option<Fix>, Self::Error>;
    /// The latest fix, `None` without a fix (never had one, or lost it).
    fn current_fix(&self) -> Option<Fix>;
    /// Parser counters.
    fn stats(&self) -> NmeaStats;
}

/// Errors of [`Gnss`], generic over the serial port's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// Reading the port failed.
    #[error("GNSS serial read failed: {0:?}")]
    Read(E),
    /// The port reported end of input (a file or a closed socket; never a live UART).
    #[error("GNSS input ended")]
    Eof,
}

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64;
/// At most this many reads per [`Gnss::poll_fix`], so one call stays short even on a fast port.
const MAX_READS_PER_POLL: usize = 16;

/// A GNSS receiver on a serial port ([`embedded_io::Read`]).
#[derive(Debug)]
pub struct Gnss<R> {
    uart: R,
    parser: NmeaParser,
}

impl<R: embedded_io::Read> Gnss<R> {
    /// Takes the port.
    pub fn new(uart: R) -> Self {
        Self {
            uart,
            parser: NmeaParser::new(),
        }
    }

    /// Reads once (blocking as the port does) and returns the newest fix completed.
    pub fn read_fix(&mut self) -> Result<Option<Fix>, Error<R::Error>> {
        match self.read_chunk()? {
            (0, _) => Err(Error::Eof),
            (_, fix) => Ok(fix),
        }
    }

    fn read_chunk(&mut self) -> Result<(usize, Option<Fix>), Error<R::Error>> {
        let mut buf = [0u8; READ_CHUNK];
        let n = self.uart.read(&mut buf).map_err(Error::Read)?;
        Ok((n, self.parser.push(&buf[..n])))
    }
}

impl<R> Gnss<R> {
    /// The parser (counters, current fix).
    pub fn parser(&self) -> &NmeaParser {
        &self.parser
    }

    /// The port, mutably: the simulator writes its sentences into an in-memory port.
    pub fn port_mut(&mut self) -> &mut R {
        &mut self.uart
    }

    /// Gives the port back.
    pub fn release(self) -> R {
        self.uart
    }
}

impl<R: embedded_io::Read + embedded_io::ReadReady> PositionSource for Gnss<R> {
    type Error = Error<R::Error>;

    /// Reads only what the port already holds (`read_ready`), at most 1 KiB per call.
    fn poll_fix(&mut self) -> Result<Option<Fix>, Self::Error> {
        let mut newest = None;
        for _ in 0..MAX_READS_PER_POLL {
            if !self.uart.read_ready().map_err(Error::Read)? {
                break;
            }
            // Buffers that are always "ready" (slices, `VecDeque`) read 0 bytes when empty.
            let (n, fix) = self.read_chunk()?;
            newest = fix.or(newest);
            if n == 0 {
                break;
            }
        }
        Ok(newest)
    }

    fn current_fix(&self) -> Option<Fix> {
        self.parser.current_fix()
    }

    fn stats(&self) -> NmeaStats {
        self.parser.stats()
    }
}

#[cfg(test)]
mod tests;
