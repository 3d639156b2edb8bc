//! The discrete-event engine: a priority queue of events ordered by `(time_us, seq)` and the
//! event-log hash.
//!
//! Time is an integer number of simulated microseconds since the start of the run; there is
//! no wall clock anywhere in a run's results. `seq` is the order in which events were
//! scheduled, so two events at the same microsecond run in the order they were created, and a
//! run is a pure function of its scenario and seed.
//!
//! Every processed event is fed to a BLAKE3 hasher in a canonical encoding
//! ([`EventLog::record`]): time, sequence number, a kind tag and the event's fields as
//! little-endian integers. Two runs with the same hash processed the same events in the same
//! order with the same contents.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An entry of the queue: the event and when it is due.
#[derive(Debug)]
struct Entry<E> {
    time_us: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time_us, self.seq) == (other.time_us, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_us, other.seq).cmp(&(self.time_us, self.seq))
    }
}

/// The event queue and the simulated clock.
#[derive(Debug)]
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
    now_us: u64,
    processed: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> Queue<E> {
    /// An empty queue at time 0.
    pub fn new() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            next_seq: 0,
            now_us: 0,
            processed: 0,
        }
    }

    /// The current simulated time (the due time of the last event popped).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Events popped so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at `time_us`; a time in the past is moved to now, so the clock never
    /// runs backwards.
    pub fn schedule(&mut self, time_us: u64, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry {
            time_us: time_us.max(self.now_us),
            seq,
            event,
        });
    }

    /// Pops the earliest event (ties by scheduling order) and advances the clock to it.
    /// Returns `(time_us, seq, event)`.
    pub fn pop(&mut self) -> Option<(u64, u64, E)> {
        let e = self.heap.pop()?;
        self.now_us = e.time_us;
        self.processed += 1;
        Some((e.time_us, e.seq, e.event))
    }

    /// The due time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.time_us)
    }

    /// The next event and its due time, without popping it.
    pub fn peek(&self) -> Option<(u64, &E)> {
        self.heap.peek().map(|e| (e.time_us, &e.event))
    }
}

/// The running BLAKE3 hash of every processed event.
#[derive(Debug, Clone)]
pub struct EventLog {
    hasher: blake3::Hasher,
    events: u64,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        EventLog {
            hasher: blake3::Hasher::new_derive_key("wisp-sim event log v1"),
            events: 0,
        }
    }

    /// Records one event: `time_us || seq || tag || len(fields) || fields…`, all little-endian.
    pub fn record(&mut self, time_us: u64, seq: u64, tag: u8, fields: &[u64]) {
        self.hasher.update(&time_us.to_le_bytes());
        self.hasher.update(&seq.to_le_bytes());
        self.hasher.update(&[tag]);
        self.hasher.update(&(fields.len() as u64).to_le_bytes());
        for f in fields {
            self.hasher.update(&f.to_le_bytes());
        }
        self.events += 1;
    }

    /// Mixes raw bytes (a proof id, a verdict) into the log, attached to the last event.
    pub fn record_bytes(&mut self, bytes: &[u8]) {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The hash so far, hex.
    pub fn hex(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_scheduling_order() {
        let mut q = Queue::new();
        q.schedule(20, 'c');
        q.schedule(10, 'a');
        q.schedule(10, 'b');
        q.schedule(5, 'z');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, _, e)| e)).collect();
        assert_eq!(order, vec!['z', 'a', 'b', 'c']);
        assert_eq!(q.now_us(), 20);
        // The past is clamped to now.
        q.schedule(1, 'p');
        assert_eq!(q.pop().map(|(t, _, _)| t), Some(20));
    }

    #[test]
    fn log_hash_depends_on_every_field() {
        let mut a = EventLog::new();
        let mut b = EventLog::new();
        a.record(1, 2, 3, &[4, 5]);
        b.record(1, 2, 3, &[4, 5]);
        assert_eq!(a.hex(), b.hex());
        b.record(1, 2, 3, &[4]);
        a.record(1, 2, 3, &[5]);
        assert_ne!(a.hex(), b.hex());
    }
}
