//! The carrier's side of carrier reports (docs/PROTOCOL.md §5.12): an offload partner's RADIUS
//! accounting turned into signed `carrier_report` envelopes, sans-IO.
//!
//! - [`detail`]: the FreeRADIUS `detail` file format, parsed into records.
//! - [`Accounting`]: one record read as a session's accounting: its status, its session,
//!   its NAS, its station and its counters (octets with their gigawords; RADIUS *Input* is
//!   what the subscriber sent, so `bytes_up`).
//! - [`Stations`]: which hotspot a record's traffic went through, from a mapping file of
//!   `Called-Station-Id` or `NAS-Identifier` to the hotspot's peer id.
//! - [`session_id`]: the 16-byte session id, a keyed hash of the NAS and the Acct-Session-Id
//!   under a key derived from the carrier's own secret, so nobody else can predict (and take)
//!   it.
//! - [`Ledger`]: what the carrier reported, per session — the last sequence number and
//!   counters, and the envelope signed for each record — kept in a state file by the CLI, and
//!   [`Ledger::plan`], which turns records into envelopes: a record reported before gets its
//!   stored envelope again (the oracle answers it as a duplicate), a new one the session's
//!   next sequence number. So a sequence number is never used twice, and running over the
//!   same file again changes nothing.
//!
//! The clock (`now_ms`), the epoch and the key are inputs; the CLI (`wisp-client carrier
//! report`) reads them, posts the envelopes to `POST /v1/usage/carrier/batch` and saves the
//! ledger before it posts.

pub mod detail;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wisp_protocol::envelope::{Envelope, Message as _};
use wisp_protocol::msg::CarrierReport;
use wisp_protocol::{NodeId, NodeKey};

pub use detail::{DetailError, Record};

/// The largest cumulative counter a report may state (docs/PROTOCOL.md §5.12).
pub const BYTES_MAX: u64 = 1 << 48;

/// Most sessions a ledger holds; a carrier with more runs one ledger per site.
pub const SESSIONS_MAX: usize = 1 << 20;

/// Most entries of a station mapping file.
pub const STATIONS_MAX: usize = 1 << 16;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A session started: nothing used yet, nothing to report.
    Start,
    /// A session's counters so far.
    Interim,
    /// A session's final counters.
    Stop,
    /// The NAS (re)started or stopped accounting: no session.
    AccountingOnOff,
}

/// A record read as accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// The record's first line.
    pub line: usize,
    /// Its status.
    pub status: Status,
    /// `Acct-Session-Id` (none for `Accounting-On`/`-Off`).
    pub acct_session_id: String,
    /// The NAS: `NAS-Identifier`, else `NAS-IP-Address`, else `NAS-IPv6-Address`.
    pub nas: String,
    /// `Called-Station-Id`, if written.
    pub station: Option<String>,
    /// `NAS-Identifier`, if written.
    pub nas_identifier: Option<String>,
    /// Bytes delivered to the subscriber (`Acct-Output-Octets` and `-Gigawords`).
    pub bytes_down: u64,
    /// Bytes the subscriber sent (`Acct-Input-Octets` and `-Gigawords`).
    pub bytes_up: u64,
    /// When the session started, Unix ms: `Event-Timestamp` less `Acct-Session-Time`, when
    /// both are written.
    pub start_ms: Option<u64>,
}

/// A record that cannot be reported, or a report that cannot be made, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// The file is not a `detail` file there.
    #[error(transparent)]
    Detail(#[from] DetailError),
    /// A record lacks an attribute it needs, or has a value that is not what RADIUS writes.
    #[error("line {line}: {why}")]
    Record {
        /// The line of the record or of the attribute.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// No hotspot is mapped for the record's station or NAS.
    #[error(
        "line {line}: no hotspot mapped for Called-Station-Id {station:?} or NAS-Identifier \
         {nas:?}; add one to the stations file"
    )]
    UnknownStation {
        /// The record's line.
        line: usize,
        /// Its `Called-Station-Id`.
        station: Option<String>,
        /// Its `NAS-Identifier`.
        nas: Option<String>,
    },
    /// A session's counters went down from a report made before.
    #[error(
        "line {line}: the counters of session {acct_session_id:?} went down (reported \
         {was_down} down and {was_up} up before, now {down} and {up})"
    )]
    Decreased {
        /// The record's line.
        line: usize,
        /// The session.
        acct_session_id: String,
        /// Down before.
        was_down: u64,
        /// Up before.
        was_up: u64,
        /// Down now.
        down: u64,
        /// Up now.
        up: u64,
    },
    /// A line of the stations file is wrong.
    #[error("stations file line {line}: {why}")]
    Stations {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The report would break a rule of §5.12, or the ledger is full.
    #[error("line {line}: {why}")]
    Report {
        /// The record's line.
        line: usize,
        /// Why.
        why: String,
    },
}

fn record_error(line: usize, why: impl Into<String>) -> CarrierError {
    CarrierError::Record {
        line,
        why: why.into(),
    }
}

impl Accounting {
    /// Reads `record` as accounting (see [`Accounting`] for the attributes read).
    pub fn read(record: &Record) -> Result<Accounting, CarrierError> {
        let line = record.line;
        let text = |name: &str| record.get(name).map(|a| a.value.clone());
        let status = record
            .get("Acct-Status-Type")
            .ok_or_else(|| record_error(line, "the record has no Acct-Status-Type"))?;
        let status = match status.value.as_str() {
            "Start" | "1" => Status::Start,
            "Stop" | "2" => Status::Stop,
            "Interim-Update" | "Alive" | "3" => Status::Interim,
            "Accounting-On" | "Accounting-Off" | "7" | "8" => Status::AccountingOnOff,
            other => {
                return Err(record_error(
                    status.line,
                    format!("Acct-Status-Type {other:?} is not Start, Interim-Update or Stop"),
                ));
            }
        };
        let nas = text("NAS-Identifier")
            .or_else(|| text("NAS-IP-Address"))
            .or_else(|| text("NAS-IPv6-Address"))
            .unwrap_or_default();
        let mut a = Accounting {
            line,
            status,
            acct_session_id: String::new(),
            nas,
            station: text("Called-Station-Id"),
            nas_identifier: text("NAS-Identifier"),
            bytes_down: 0,
            bytes_up: 0,
            start_ms: None,
        };
        if status == Status::AccountingOnOff {
            return Ok(a);
        }
        a.acct_session_id = text("Acct-Session-Id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| record_error(line, "the record has no Acct-Session-Id"))?;
        if a.nas.is_empty() {
            return Err(record_error(
                line,
                "the record names no NAS (NAS-Identifier, NAS-IP-Address or NAS-IPv6-Address)",
            ));
        }
        a.bytes_down = counter(record, "Acct-Output-Octets", "Acct-Output-Gigawords")?;
        a.bytes_up = counter(record, "Acct-Input-Octets", "Acct-Input-Gigawords")?;
        let event_s = record
            .get("Event-Timestamp")
            .map(|t| {
                unix_seconds(&t.value).ok_or_else(|| {
                    record_error(
                        t.line,
                        format!(
                            "Event-Timestamp {:?} is neither Unix seconds nor like \"Dec  6 2026 \
                         12:00:00 UTC\"",
                            t.value
                        ),
                    )
                })
            })
            .transpose()?;
        let session_s = record
            .get("Acct-Session-Time")
            .map(|t| {
                t.value.parse::<u64>().map_err(|_| {
                    record_error(
                        t.line,
                        format!("Acct-Session-Time {:?} is not seconds", t.value),
                    )
                })
            })
            .transpose()?;
        if let (Some(e), Some(s)) = (event_s, session_s) {
            let start = e.checked_sub(s).ok_or_else(|| {
                record_error(line, "Acct-Session-Time is longer than the time since 1970")
            })?;
            a.start_ms = start.checked_mul(1000);
        }
        Ok(a)
    }
}

/// `octets + gigawords × 2^32`, each a RADIUS integer (32 bits), the sum at most 2^48.
fn counter(record: &Record, octets: &str, gigawords: &str) -> Result<u64, CarrierError> {
    let read = |name: &str| -> Result<u64, CarrierError> {
        let Some(a) = record.get(name) else {
            return Ok(0);
        };
        let v: u64 = a
            .value
            .parse()
            .map_err(|_| record_error(a.line, format!("{name} {:?} is not a number", a.value)))?;
        if v > u64::from(u32::MAX) {
            return Err(record_error(
                a.line,
                format!("{name} {v} overflows its 32 bits (RADIUS counts the rest in gigawords)"),
            ));
        }
        Ok(v)
    };
    let total = (read(gigawords)? << 32) + read(octets)?;
    if total > BYTES_MAX {
        let at = record.get(gigawords).map_or(record.line, |a| a.line);
        return Err(record_error(
            at,
            format!("{octets} with {gigawords} is {total} bytes, over the 2^48 a report may state"),
        ));
    }
    Ok(total)
}

/// Unix seconds from an integer or FreeRADIUS's `"%b %e %Y %H:%M:%S %Z"` in UTC.
fn unix_seconds(text: &str) -> Option<u64> {
    if let Ok(s) = text.trim().parse::<u64>() {
        return Some(s);
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (mon, day, year, clock) = match parts.as_slice() {
        [m, d, y, c] => (*m, *d, *y, *c),
        [m, d, y, c, "UTC" | "GMT" | "Z"] => (*m, *d, *y, *c),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == mon)? as i64 + 1;
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(0..24).contains(h) || !(0..60).contains(m) || !(0..61).contains(s) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// Which hotspot carried a record's traffic: `Called-Station-Id` or `NAS-Identifier` values
/// (compared case-insensitively) to hotspot peer ids.
///
/// The file has one `<station-or-nas> <hotspot peer id>` a line; blank lines and `#` comments
/// are ignored. A record's `Called-Station-Id` is looked up first, then its `NAS-Identifier`,
/// so a hotspot can be named by its access point's MAC and SSID as the NAS reports it, or a
/// NAS that is the hotspot itself by its identifier.
#[derive(Debug, Clone, Default)]
pub struct Stations(BTreeMap<String, NodeId>);

impl Stations {
    /// Parses a mapping file's text.
    pub fn parse(text: &str) -> Result<Stations, CarrierError> {
        let mut map = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let bad = |why: String| CarrierError::Stations { line, why };
            let mut words = content.split_whitespace();
            let (Some(station), Some(peer), None) = (words.next(), words.next(), words.next())
            else {
                return Err(bad(format!(
                    "`{content}` is not `<Called-Station-Id or NAS-Identifier> <hotspot peer id>`"
                )));
            };
            let hotspot: NodeId = peer
                .parse()
                .map_err(|_| bad(format!("`{peer}` is not a hotspot's peer id")))?;
            if map.len() >= STATIONS_MAX {
                return Err(bad(format!("more than {STATIONS_MAX} stations")));
            }
            if map.insert(station.to_ascii_lowercase(), hotspot).is_some() {
                return Err(bad(format!("`{station}` is mapped twice")));
            }
        }
        Ok(Stations(map))
    }

    /// The hotspot of a record: by its station, else by its NAS identifier.
    pub fn hotspot(&self, a: &Accounting) -> Option<NodeId> {
        [&a.station, &a.nas_identifier]
            .into_iter()
            .flatten()
            .find_map(|k| self.0.get(&k.to_ascii_lowercase()).copied())
    }
}

/// A session's 16-byte id: a keyed BLAKE3 hash of the NAS and the `Acct-Session-Id` (each
/// length-prefixed), under a key derived from the carrier's secret seed, truncated. The same
/// session always gets the same id from the same carrier; nobody without its key can tell
/// which id a session will get.
pub fn session_id(carrier: &NodeKey, nas: &str, acct_session_id: &str) -> [u8; 16] {
    let key = blake3::derive_key("wisp/v1 carrier session id", carrier.seed().as_slice());
    let mut h = blake3::Hasher::new_keyed(&key);
    for part in [nas, acct_session_id] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// What the carrier reported of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLedger {
    /// The last sequence number used.
    pub seq: u64,
    /// The last bytes down reported.
    pub down: u64,
    /// The last bytes up reported.
    pub up: u64,
    /// Each record reported, by its digest (a hash of its session, status, counters and
    /// timestamp line): the envelope signed for it, in hex.
    pub reports: BTreeMap<String, String>,
}

/// What the carrier reported, by session id in hex: the state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// The sessions.
    pub sessions: BTreeMap<String, SessionLedger>,
}

/// One envelope to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The record's first line.
    pub line: usize,
    /// The RADIUS session.
    pub acct_session_id: String,
    /// The report's sequence number.
    pub seq: u64,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// Signed now (else signed by an earlier run and sent again).
    pub fresh: bool,
}

/// What [`Ledger::plan`] made of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The envelopes to post, in the file's order.
    pub reports: Vec<Planned>,
    /// `Start` records (nothing used yet: nothing to report).
    pub starts: usize,
    /// `Accounting-On`/`-Off` records (no session).
    pub nas_events: usize,
}

/// What identifies a record among runs: its session, status and counters and its timestamp
/// line, hashed.
fn digest(record: &Record, a: &Accounting) -> String {
    let mut h = blake3::Hasher::new_derive_key("wisp/v1 carrier record");
    for part in [
        a.nas.as_str(),
        a.acct_session_id.as_str(),
        record.written.as_str(),
        &format!("{:?} {} {}", a.status, a.bytes_down, a.bytes_up),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..32].to_owned()
}

impl Ledger {
    /// Turns `records` into envelopes signed by `carrier` for `epoch` at `now_ms`, recording
    /// each new one (see the module documentation). On an error nothing is planned and the
    /// ledger may hold part of the file: the caller saves it only on success.
    pub fn plan(
        &mut self,
        records: &[Record],
        stations: &Stations,
        carrier: &NodeKey,
        epoch: u64,
        now_ms: u64,
    ) -> Result<Plan, CarrierError> {
        let mut plan = Plan::default();
        for record in records {
            let a = Accounting::read(record)?;
            match a.status {
                Status::Start => {
                    plan.starts += 1;
                    continue;
                }
                Status::AccountingOnOff => {
                    plan.nas_events += 1;
                    continue;
                }
                Status::Interim | Status::Stop => {}
            }
            let hotspot = stations
                .hotspot(&a)
                .ok_or_else(|| CarrierError::UnknownStation {
                    line: a.line,
                    station: a.station.clone(),
                    nas: a.nas_identifier.clone(),
                })?;
            let session = session_id(carrier, &a.nas, &a.acct_session_id);
            let key = hex::encode(session);
            if !self.sessions.contains_key(&key) && self.sessions.len() >= SESSIONS_MAX {
                return Err(CarrierError::Report {
                    line: a.line,
                    why: format!("the state file holds {SESSIONS_MAX} sessions: start another"),
                });
            }
            let s = self.sessions.entry(key).or_default();
            let d = digest(record, &a);
            if let Some(stored) = s.reports.get(&d) {
                let envelope = hex::decode(stored).map_err(|e| CarrierError::Report {
                    line: a.line,
                    why: format!("the state file's envelope for this record is not hex: {e}"),
                })?;
                let seq = wisp_protocol::envelope::open::<CarrierReport>(&envelope)
                    .map(|o| o.msg.seq)
                    .unwrap_or_default();
                plan.reports.push(Planned {
                    line: a.line,
                    acct_session_id: a.acct_session_id.clone(),
                    seq,
                    envelope,
                    fresh: false,
                });
                continue;
            }
            if a.bytes_down < s.down || a.bytes_up < s.up {
                return Err(CarrierError::Decreased {
                    line: a.line,
                    acct_session_id: a.acct_session_id.clone(),
                    was_down: s.down,
                    was_up: s.up,
                    down: a.bytes_down,
                    up: a.bytes_up,
                });
            }
            let report = CarrierReport {
                session: session.into(),
                hotspot,
                carrier: carrier.id(),
                epoch,
                seq: s.seq + 1,
                bytes_down: a.bytes_down,
                bytes_up: a.bytes_up,
                signed_ms: now_ms,
                start_ms: a.start_ms.filter(|s| *s <= now_ms),
            };
            report
                .check(&carrier.id(), &[])
                .map_err(|e| CarrierError::Report {
                    line: a.line,
                    why: format!("not a valid carrier report: {e}"),
                })?;
            let envelope = Envelope::sign(carrier, &report).to_bytes();
            s.seq = report.seq;
            s.down = a.bytes_down;
            s.up = a.bytes_up;
            s.reports.insert(d, hex::encode(&envelope));
            plan.reports.push(Planned {
                line: a.line,
                acct_session_id: a.acct_session_id.clone(),
                seq: report.seq,
                envelope,
                fresh: true,
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests;
