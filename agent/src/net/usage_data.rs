//! `/wisp/usage-data/1`: the hotspot's test endpoint for proof of usage. A subscriber's client
//! asks for bytes down and sends bytes up, so that there is traffic for both ends to count and
//! sign for (devnets and tests; on a router, the subscribers' real traffic is counted by the
//! firewall or the radio, usage's `command` counter source). The endpoint counts what it serves
//! per peer: that is usage's `endpoint` counter source ([`Endpoint::counts`]).
//!
//! A request is `want_down` (u32, little-endian) followed by up to [`CHUNK_MAX`] bytes up; the
//! response is one status byte, then, when [`STATUS_OK`], `min(want_down, CHUNK_MAX)` bytes
//! down. Both travel length-prefixed ([`super::codec`]), bounded by [`REQUEST_MAX`] and
//! [`RESPONSE_MAX`]; the request-response behaviour bounds the concurrent streams per
//! connection. The network task answers at once, without the daemon: a blocked peer
//! ([`Endpoint::set_blocked`], the usage driver's decisions) gets [`STATUS_BLOCKED`] and no
//! bytes, and nothing is counted for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use libp2p::PeerId;

use super::{Command, NetError, NetHandle, Proto};

/// The most bytes down one response carries, and up one request.
pub const CHUNK_MAX: usize = 256 * 1024;
/// The largest request: `want_down` and a chunk up.
pub const REQUEST_MAX: usize = 4 + CHUNK_MAX;
/// The largest response: the status byte and a chunk down.
pub const RESPONSE_MAX: usize = 1 + CHUNK_MAX;
/// Most peers counted; beyond it the one counted first is forgotten (its counters restart,
/// which the usage core takes as the router counting afresh).
pub const MAX_PEERS: usize = 1024;

/// The response's status: served.
pub const STATUS_OK: u8 = 0;
/// The response's status: this peer is blocked (it does not sign for what it uses).
pub const STATUS_BLOCKED: u8 = 1;
/// The response's status: the request was malformed.
pub const STATUS_BAD_REQUEST: u8 = 2;

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataAnswer {
    /// Bytes down (as many as asked, up to [`CHUNK_MAX`]).
    Served(Vec<u8>),
    /// The hotspot stopped serving this peer.
    Blocked,
    /// The hotspot could not read the request.
    BadRequest,
}

/// Per-peer byte counts of the test endpoint, and the peers it refuses. Shared between the
/// network task (which serves and counts) and the usage driver (which reads the counts and
/// sets the blocks); bounded by [`MAX_PEERS`].
#[derive(Debug, Default)]
pub struct Endpoint {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Cumulative (down, up) payload bytes per peer.
    counts: HashMap<PeerId, (u64, u64)>,
    /// Insertion order of `counts`, for the bound.
    order: VecDeque<PeerId>,
    blocked: HashSet<PeerId>,
}

impl Endpoint {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cumulative bytes (down, up) served to and taken from `peer`.
    pub fn counts(&self, peer: &PeerId) -> Option<(u64, u64)> {
        self.lock().counts.get(peer).copied()
    }

    /// Every peer counted, with its cumulative bytes (down, up).
    pub fn snapshot(&self) -> Vec<(PeerId, u64, u64)> {
        self.lock()
            .counts
            .iter()
            .map(|(p, (d, u))| (*p, *d, *u))
            .collect()
    }

    /// Stops (`true`) or resumes serving `peer`. At most [`MAX_PEERS`] are blocked at once.
    pub fn set_blocked(&self, peer: PeerId, blocked: bool) {
        let mut i = self.lock();
        if !blocked {
            i.blocked.remove(&peer);
        } else if i.blocked.len() < MAX_PEERS {
            i.blocked.insert(peer);
        }
    }

    /// Whether `peer` is refused.
    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.lock().blocked.contains(peer)
    }

    /// Forgets `peer`'s counts: its last connection closed, so it left (the usage driver then
    /// ends its session). Blocks stay until the driver lifts them.
    pub(super) fn forget(&self, peer: &PeerId) {
        let mut i = self.lock();
        if i.counts.remove(peer).is_some() {
            i.order.retain(|p| p != peer);
        }
    }

    /// The response to `request` from `peer`, counting what it carries.
    pub(super) fn serve(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        let Some((want, up)) = request
            .split_first_chunk::<4>()
            .filter(|(_, up)| up.len() <= CHUNK_MAX)
        else {
            return vec![STATUS_BAD_REQUEST];
        };
        let mut i = self.lock();
        if i.blocked.contains(&peer) {
            return vec![STATUS_BLOCKED];
        }
        let down = usize::try_from(u32::from_le_bytes(*want))
            .unwrap_or(CHUNK_MAX)
            .min(CHUNK_MAX);
        if !i.counts.contains_key(&peer) {
            if i.counts.len() >= MAX_PEERS
                && let Some(old) = i.order.pop_front()
            {
                i.counts.remove(&old);
            }
            i.order.push_back(peer);
        }
        let c = i.counts.entry(peer).or_default();
        c.0 = c.0.saturating_add(down as u64);
        c.1 = c.1.saturating_add(up.len() as u64);
        let mut body = vec![0u8; 1 + down];
        body[0] = STATUS_OK;
        body
    }
}

/// A request for `want_down` bytes (at most [`CHUNK_MAX`] are served) carrying `up`.
pub fn encode_request(want_down: u32, up: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + up.len());
    b.extend_from_slice(&want_down.to_le_bytes());
    b.extend_from_slice(up);
    b
}

/// Reads a response.
pub fn decode_response(mut bytes: Vec<u8>) -> Result<DataAnswer, String> {
    if bytes.len() > RESPONSE_MAX {
        return Err(format!("response of {} bytes", bytes.len()));
    }
    match bytes.first().copied() {
        Some(STATUS_OK) => {
            bytes.remove(0);
            Ok(DataAnswer::Served(bytes))
        }
        Some(STATUS_BLOCKED) if bytes.len() == 1 => Ok(DataAnswer::Blocked),
        Some(STATUS_BAD_REQUEST) if bytes.len() == 1 => Ok(DataAnswer::BadRequest),
        Some(s) => Err(format!("unknown status {s} ({} bytes)", bytes.len())),
        None => Err("empty response".into()),
    }
}

impl NetHandle {
    /// Asks the hotspot `peer`'s test endpoint for `want_down` bytes (at most [`CHUNK_MAX`])
    /// and sends it `up` (at most [`CHUNK_MAX`] bytes) over `/wisp/usage-data/1`.
    pub async fn usage_data_request(
        &self,
        peer: PeerId,
        want_down: u32,
        up: &[u8],
    ) -> Result<DataAnswer, NetError> {
        if up.len() > CHUNK_MAX {
            return Err(NetError::TooLarge {
                len: up.len(),
                max: CHUNK_MAX,
            });
        }
        let body = encode_request(want_down, up);
        let bytes = self
            .ask(|reply| Command::Request {
                proto: Proto::UsageData,
                peer,
                body,
                reply,
            })
            .await??;
        decode_response(bytes).map_err(|why| NetError::Request {
            peer,
            why: format!("usage data: {why}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_and_counts_within_bounds_and_refuses_the_blocked() {
        let e = Endpoint::default();
        let p = PeerId::random();
        let r = e.serve(p, &encode_request(1000, &[7; 10]));
        assert_eq!(
            decode_response(r).unwrap(),
            DataAnswer::Served(vec![0; 1000])
        );
        let r = e.serve(p, &encode_request(u32::MAX, &[]));
        assert_eq!(r.len(), RESPONSE_MAX);
        assert_eq!(e.counts(&p), Some((1000 + CHUNK_MAX as u64, 10)));
        assert_eq!(e.serve(p, &[1, 2]), vec![STATUS_BAD_REQUEST]);
        assert_eq!(
            e.serve(p, &vec![0; REQUEST_MAX + 1]),
            vec![STATUS_BAD_REQUEST]
        );
        e.set_blocked(p, true);
        assert_eq!(
            decode_response(e.serve(p, &encode_request(10, &[]))).unwrap(),
            DataAnswer::Blocked
        );
        assert_eq!(e.counts(&p), Some((1000 + CHUNK_MAX as u64, 10)));
        e.set_blocked(p, false);
        assert!(!e.is_blocked(&p));
        assert!(decode_response(vec![]).is_err());
        assert!(decode_response(vec![9]).is_err());
        assert!(decode_response(vec![STATUS_BLOCKED, 0]).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let e = Endpoint::default();
        let first = PeerId::random();
        e.serve(first, &encode_request(1, &[]));
        for _ in 0..MAX_PEERS {
            e.serve(PeerId::random(), &encode_request(1, &[]));
        }
        assert_eq!(e.snapshot().len(), MAX_PEERS);
        assert_eq!(e.counts(&first), None);
    }
}
