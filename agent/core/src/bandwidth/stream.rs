//! The test content and the receiver's state machine, sans-IO.
//!
//! Content is a ChaCha20 keystream keyed by `BLAKE3-derive-key("wisp/v1 bw stream", secret ||
//! test_id || direction)`. The secret is the measurer's, committed to in the negotiation and
//! revealed on the QUIC control stream only when the test starts, so neither side can have the
//! bytes before then: they cannot be pre-sent, cached by a middlebox or compressed (they are
//! indistinguishable from random), and the receiver checks every byte against its own copy of
//! the stream. A replayed, garbled or re-ordered byte fails the check.
//!
//! [`Receiver`] is driven by `handle_data` / `handle_fin` / `handle_timeout` with the time
//! since the direction began, and `poll_timeout` says when to call `handle_timeout` next. It
//! ends the direction at the byte cap or the time cap, and fails it on a wrong byte
//! ([`BwFailure::BadContent`]), an early end of stream ([`BwFailure::Truncated`]) or a silence
//! longer than the stall limit ([`BwFailure::Timeout`]).

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use wisp_protocol::msg::{BwFailure, Direction};

use super::stats::{Bins, Summary, summarize};

/// The most bins a report may carry (8 s of 100 ms bins, plus the spare one).
pub const MAX_REPORT_BINS: usize = 81;

const STREAM_CONTEXT: &str = "wisp/v1 bw stream";
const COMMIT_CONTEXT: &str = "wisp/v1 bw secret commitment";

/// The commitment to a stream secret sent in the negotiation: `BLAKE3-derive-key("wisp/v1 bw
/// secret commitment", secret)`.
pub fn commitment(secret: &[u8; 32]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(COMMIT_CONTEXT)
        .update(secret)
        .finalize()
        .as_bytes()
}

fn direction_byte(d: Direction) -> u8 {
    match d {
        Direction::Down => 0,
        Direction::Up => 1,
    }
}

/// Keystream bytes generated at a time. A multiple of 4: the ChaCha RNG hands out whole
/// 32-bit words, so only refills of whole words keep the stream independent of how callers
/// split it.
const BLOCK: usize = 16 * 1024;

/// The keyed byte stream of one direction of one test. Byte-exact: any split of reads yields
/// the same bytes.
pub struct Keystream {
    rng: ChaCha20Rng,
    buf: Box<[u8; BLOCK]>,
    pos: usize,
}

impl std::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("Keystream(..)")
    }
}

impl Keystream {
    /// The stream for `direction` of test `test_id` under `secret`.
    pub fn new(secret: &[u8; 32], test_id: &[u8; 16], direction: Direction) -> Self {
        let key = blake3::Hasher::new_derive_key(STREAM_CONTEXT)
            .update(secret)
            .update(test_id)
            .update(&[direction_byte(direction)])
            .finalize();
        Self {
            rng: ChaCha20Rng::from_seed(*key.as_bytes()),
            buf: Box::new([0; BLOCK]),
            pos: BLOCK,
        }
    }

    /// The next `n ≤ BLOCK` bytes of the stream, possibly fewer (up to the end of the block).
    fn next_slice(&mut self, n: usize) -> &[u8] {
        if self.pos == BLOCK {
            self.rng.fill_bytes(&mut self.buf[..]);
            self.pos = 0;
        }
        let m = n.min(BLOCK - self.pos);
        let s = &self.buf[self.pos..self.pos + m];
        self.pos += m;
        s
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let s = self.next_slice(buf.len() - done);
            buf[done..done + s.len()].copy_from_slice(s);
            done += s.len();
        }
    }

    /// Whether `data` are the next bytes of the stream (the stream advances either way).
    pub fn matches(&mut self, data: &[u8]) -> bool {
        let mut done = 0;
        let mut ok = true;
        while done < data.len() {
            let s = self.next_slice(data.len() - done);
            ok &= s == &data[done..done + s.len()];
            done += s.len();
        }
        ok
    }
}

/// The per-direction budget both sides enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Stop after this many verified bytes.
    pub bytes: u64,
    /// Stop this long after the first byte.
    pub duration: Duration,
    /// Fail if no byte arrives for this long (also before the first byte).
    pub stall: Duration,
}

/// How a direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The byte cap was reached.
    ByteCap,
    /// The time cap was reached.
    TimeCap,
    /// The test failed.
    Failed(BwFailure),
}

/// What the receiver saw, for the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    /// How it ended.
    pub end: End,
    /// Verified bytes.
    pub bytes: u64,
    /// From the first byte to the end.
    pub duration: Duration,
    /// The 100 ms bins.
    pub bins: Vec<u64>,
    /// The figures, when the direction did not fail and at least one bin is full.
    pub summary: Option<Summary>,
}

/// The receiving side of one direction (see the module docs for the call order).
#[derive(Debug)]
pub struct Receiver {
    stream: Keystream,
    caps: Caps,
    created: Duration,
    first: Option<Duration>,
    last_progress: Duration,
    received: u64,
    bins: Bins,
    end: Option<(End, Duration)>,
}

impl Receiver {
    /// A receiver expecting `stream`, created at `now`.
    pub fn new(stream: Keystream, caps: Caps, now: Duration) -> Self {
        Self {
            stream,
            caps,
            created: now,
            first: None,
            last_progress: now,
            received: 0,
            // One spare bin: the bin the time cap falls in.
            bins: Bins::new(caps.duration + super::stats::BIN),
            end: None,
        }
    }

    fn finish(&mut self, end: End, now: Duration) -> Option<End> {
        if self.end.is_none() {
            self.end = Some((end, now));
        }
        self.end.map(|(e, _)| e)
    }

    /// Bytes arrived at `now`. Returns the end once the direction is over.
    pub fn handle_data(&mut self, now: Duration, data: &[u8]) -> Option<End> {
        if let Some((e, _)) = self.end {
            return Some(e);
        }
        let first = *self.first.get_or_insert(now);
        if now.saturating_sub(first) >= self.caps.duration {
            // Bytes after the time cap are not counted.
            return self.finish(End::TimeCap, now);
        }
        let room = self.caps.bytes.saturating_sub(self.received);
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        let data = &data[..take];
        if !self.stream.matches(data) {
            return self.finish(End::Failed(BwFailure::BadContent), now);
        }
        self.received += take as u64;
        self.bins.record(now.saturating_sub(first), take as u64);
        if take > 0 {
            self.last_progress = now;
        }
        if self.received >= self.caps.bytes {
            return self.finish(End::ByteCap, now);
        }
        None
    }

    /// The sender ended the stream at `now`.
    pub fn handle_fin(&mut self, now: Duration) -> End {
        if let Some((e, _)) = self.end {
            return e;
        }
        let end = match self.first {
            _ if self.received >= self.caps.bytes => End::ByteCap,
            Some(first) if now.saturating_sub(first) >= self.caps.duration => End::TimeCap,
            _ => End::Failed(BwFailure::Truncated),
        };
        self.finish(end, now).unwrap_or(end)
    }

    /// The transport failed at `now` (connection lost, stream reset).
    pub fn handle_transport_error(&mut self, now: Duration) -> End {
        self.finish(End::Failed(BwFailure::Transport), now)
            .unwrap_or(End::Failed(BwFailure::Transport))
    }

    /// The time is `now`: ends the direction at the time cap or on a stall.
    pub fn handle_timeout(&mut self, now: Duration) -> Option<End> {
        if let Some((e, _)) = self.end {
            return Some(e);
        }
        if let Some(first) = self.first
            && now.saturating_sub(first) >= self.caps.duration
        {
            return self.finish(End::TimeCap, first + self.caps.duration);
        }
        if now.saturating_sub(self.last_progress) >= self.caps.stall {
            return self.finish(End::Failed(BwFailure::Timeout), now);
        }
        None
    }

    /// When to call [`Receiver::handle_timeout`] next; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.end.is_some() {
            return None;
        }
        let stall = self.last_progress + self.caps.stall;
        Some(match self.first {
            Some(first) => stall.min(first + self.caps.duration),
            None => stall,
        })
    }

    /// Whether the direction is over.
    pub fn is_done(&self) -> bool {
        self.end.is_some()
    }

    /// When the first byte arrived (in the caller's time), if one did.
    pub fn first(&self) -> Option<Duration> {
        self.first
    }

    /// The verified bytes so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// What the receiver saw; `None` until the direction is over.
    pub fn report(&self) -> Option<ReceiverReport> {
        let (end, at) = self.end?;
        let duration = self
            .first
            .map_or(Duration::ZERO, |f| at.saturating_sub(f))
            .min(self.caps.duration);
        let summary = match end {
            End::Failed(_) => None,
            End::ByteCap | End::TimeCap => summarize(self.bins.counts(), duration),
        };
        let _ = self.created;
        Some(ReceiverReport {
            end,
            bytes: self.received,
            duration,
            bins: self.bins.counts().to_vec(),
            summary,
        })
    }
}

/// What a sender wrote, in 100 ms bins from its first write: the bound a receiver's report
/// of the same direction must respect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendLog {
    /// Bytes handed to the transport per bin.
    pub bins: Vec<u64>,
    /// All bytes handed to the transport.
    pub total: u64,
}

impl SendLog {
    /// Records `bytes` written `at` after the first write.
    pub fn record(&mut self, at: Duration, bytes: u64) {
        let i = usize::try_from(at.as_millis() / super::stats::BIN.as_millis())
            .unwrap_or(usize::MAX)
            .min(MAX_REPORT_BINS * 2);
        if self.bins.len() <= i {
            self.bins.resize(i + 1, 0);
        }
        self.bins[i] += bytes;
        self.total += bytes;
    }
}

/// A receiver's report, as the sender got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedReport {
    /// How it ended.
    pub end: End,
    /// Verified bytes claimed.
    pub bytes: u64,
    /// Duration claimed.
    pub duration: Duration,
    /// Bins claimed.
    pub bins: Vec<u64>,
}

/// Checks a receiver's report against what the sender wrote: the bins add up to the bytes, no
/// more bytes than were written, within the caps, and at every bin the cumulative count is at
/// most what had been written `slack_bins` bins later (the receiver's clock starts at its first
/// byte, which left the sender at least one one-way delay earlier). A report that fails claims
/// bytes that were never sent, so the receipt says [`BwFailure::BadContent`].
pub fn check_report(report: &ClaimedReport, log: &SendLog, caps: &Caps, slack_bins: usize) -> bool {
    let sum = report.bins.iter().fold(0u64, |a, &b| a.saturating_add(b));
    if report.bins.len() > MAX_REPORT_BINS
        || sum != report.bytes
        || report.bytes > log.total
        || report.bytes > caps.bytes
        || report.duration > caps.duration
    {
        return false;
    }
    match report.end {
        End::ByteCap if report.bytes < caps.bytes => return false,
        End::TimeCap if report.duration < caps.duration => return false,
        _ => {}
    }
    let mut claimed = 0u64;
    let mut written = 0u64;
    let mut w = log.bins.iter();
    // Sender's cumulative up to bin k + slack.
    for _ in 0..slack_bins {
        written += w.next().copied().unwrap_or(0);
    }
    for &b in &report.bins {
        claimed += b;
        written += w.next().copied().unwrap_or(0);
        if claimed > written {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const ID: [u8; 16] = [1; 16];

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn caps() -> Caps {
        Caps {
            bytes: 10_000,
            duration: ms(2000),
            stall: ms(500),
        }
    }

    fn content(n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        Keystream::new(&SECRET, &ID, Direction::Down).fill(&mut v);
        v
    }

    fn receiver() -> Receiver {
        Receiver::new(Keystream::new(&SECRET, &ID, Direction::Down), caps(), ms(0))
    }

    #[test]
    fn the_stream_does_not_depend_on_how_it_is_read() {
        let mut whole = vec![0u8; 3 * BLOCK + 77];
        Keystream::new(&SECRET, &ID, Direction::Down).fill(&mut whole);
        let mut pieces = Keystream::new(&SECRET, &ID, Direction::Down);
        let mut at = 0;
        for n in [1usize, 1435, 3, BLOCK, 9000, 7].iter().cycle() {
            if at == whole.len() {
                break;
            }
            let n = (*n).min(whole.len() - at);
            assert!(pieces.matches(&whole[at..at + n]), "at {at}");
            at += n;
        }
    }

    #[test]
    fn directions_and_secrets_give_other_streams() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        let mut c = [0u8; 32];
        Keystream::new(&SECRET, &ID, Direction::Down).fill(&mut a);
        Keystream::new(&SECRET, &ID, Direction::Up).fill(&mut b);
        Keystream::new(&[8; 32], &ID, Direction::Down).fill(&mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(commitment(&SECRET), commitment(&[8; 32]));
    }

    #[test]
    fn honest_bytes_up_to_the_byte_cap() {
        let data = content(12_000);
        let mut r = receiver();
        assert_eq!(r.handle_data(ms(10), &data[..4000]), None);
        assert_eq!(r.handle_data(ms(150), &data[4000..9000]), None);
        // The chunk crosses the cap: only the first 1000 bytes count.
        assert_eq!(r.handle_data(ms(260), &data[9000..]), Some(End::ByteCap));
        let rep = r.report().unwrap();
        assert_eq!(rep.bytes, 10_000);
        assert_eq!(rep.duration, ms(250));
        assert_eq!(rep.bins, vec![4000, 5000, 1000]);
        // Two full bins, shorter than warm-up: rate over both = 9000 B / 0.2 s.
        assert_eq!(rep.summary.unwrap().median_bps, 360_000);
    }

    #[test]
    fn garbage_and_replay_are_bad_content() {
        let data = content(4000);
        let mut r = receiver();
        assert_eq!(r.handle_data(ms(0), &data[..2000]), None);
        // Replaying earlier bytes.
        assert_eq!(
            r.handle_data(ms(5), &data[..1000]),
            Some(End::Failed(BwFailure::BadContent))
        );
        assert_eq!(r.report().unwrap().summary, None);
        let mut r = receiver();
        let mut bad = data.clone();
        bad[1234] ^= 1;
        assert_eq!(
            r.handle_data(ms(0), &bad),
            Some(End::Failed(BwFailure::BadContent))
        );
        assert_eq!(r.received(), 0);
    }

    #[test]
    fn early_fin_is_truncation_and_late_fin_is_fine() {
        let data = content(3000);
        let mut r = receiver();
        r.handle_data(ms(0), &data);
        assert_eq!(r.handle_fin(ms(300)), End::Failed(BwFailure::Truncated));
        let mut r = receiver();
        r.handle_data(ms(100), &data);
        assert_eq!(r.handle_timeout(ms(400)), None);
        assert_eq!(r.handle_fin(ms(2100)), End::TimeCap);
        let mut r = receiver();
        assert_eq!(r.handle_fin(ms(10)), End::Failed(BwFailure::Truncated));
    }

    #[test]
    fn time_cap_and_stall() {
        let data = content(10_000);
        let mut r = receiver();
        r.handle_data(ms(100), &data[..100]);
        assert_eq!(r.poll_timeout(), Some(ms(600)));
        for i in 1..20usize {
            r.handle_data(ms(100 + i as u64 * 100), &data[i * 100..(i + 1) * 100]);
        }
        assert_eq!(r.poll_timeout(), Some(ms(2100)));
        assert_eq!(r.handle_timeout(ms(2150)), Some(End::TimeCap));
        let rep = r.report().unwrap();
        assert_eq!(rep.duration, ms(2000));
        assert_eq!(rep.bytes, 2000);
        // A sender that stops sending.
        let mut r = receiver();
        r.handle_data(ms(0), &data[..100]);
        assert_eq!(r.handle_timeout(ms(499)), None);
        assert_eq!(
            r.handle_timeout(ms(500)),
            Some(End::Failed(BwFailure::Timeout))
        );
        // A sender that never starts.
        let mut r = receiver();
        assert_eq!(
            r.handle_timeout(ms(600)),
            Some(End::Failed(BwFailure::Timeout))
        );
        assert!(r.poll_timeout().is_none());
    }

    #[test]
    fn reports_are_bounded_by_what_was_written() {
        let mut log = SendLog::default();
        for i in 0..5u64 {
            log.record(ms(i * 100 + 10), 1000);
        }
        assert_eq!((log.bins.clone(), log.total), (vec![1000; 5], 5000));
        let caps = Caps {
            bytes: 1_000_000,
            duration: ms(500),
            stall: ms(500),
        };
        let honest = ClaimedReport {
            end: End::TimeCap,
            bytes: 4500,
            duration: ms(500),
            bins: vec![500, 1000, 1000, 1000, 1000],
        };
        assert!(check_report(&honest, &log, &caps, 0));
        // Claims bytes earlier than they were written: 1500 by bin 0, only 1000 written.
        let early = ClaimedReport {
            bins: vec![1500, 1000, 1000, 1000, 0],
            ..honest.clone()
        };
        assert!(!check_report(&early, &log, &caps, 0));
        // With one bin of slack (the one-way delay) that is allowed.
        assert!(check_report(&early, &log, &caps, 1));
        // More than was written, whatever the slack.
        let inflated = ClaimedReport {
            bytes: 6000,
            bins: vec![1200; 5],
            ..honest.clone()
        };
        assert!(!check_report(&inflated, &log, &caps, 10));
        // Bins that do not add up.
        let bad_sum = ClaimedReport {
            bytes: 4000,
            ..honest.clone()
        };
        assert!(!check_report(&bad_sum, &log, &caps, 0));
        // A time cap claimed before the time.
        let short = ClaimedReport {
            duration: ms(300),
            ..honest
        };
        assert!(!check_report(&short, &log, &caps, 0));
    }
}
