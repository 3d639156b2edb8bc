//! The outbox log's bytes: the file header, the frame around each record and the operations a
//! record holds. No I/O here; `mod.rs` writes frames and replays them.
//!
//! ```text
//! file    = header frame*
//! header  = "WISPOBX\n" version:u32le                      12 bytes, version 1
//! frame   = len:u32le sum:[u8; 8] check:[u8; 4] payload   16 bytes + len
//!           sum   = BLAKE3(payload)[..8]
//!           check = BLAKE3(len ‖ sum)[..4]
//! payload = op*
//! op      = 1 seq:u64 id:[u8; 32] kind:u8 created_ms:u64 len:u32 envelope  insert, or ignore
//!         | 2 id:[u8; 32]                                                  delete
//!         | 3 key_len:u8 key value:u64                                     set a counter
//!         | 4 key_len:u8 key len:u32 value                                 set a blob
//! ```
//!
//! Integers are little-endian. The frame's own `check` tells a damaged length from a torn
//! write: a length that passes it is trusted, so a bad record in the middle of the file is
//! found as corruption instead of being mistaken for the file's end (which would drop every
//! commit after it).

use wisp_protocol::ProofId;
use wisp_protocol::kind::Kind;

/// The file's first bytes: what it is, and the format version.
pub(super) const MAGIC: &[u8; 8] = b"WISPOBX\n";
/// The format this build writes and reads.
pub(super) const VERSION: u32 = 1;
/// Magic and version.
pub(super) const HEADER_LEN: usize = 12;
/// Length, payload checksum and frame check.
pub(super) const FRAME_LEN: usize = 16;
/// The largest payload read or written. A commit is at most a few hundred KiB (64 proofs of a
/// few KiB each); a length above this is damage, refused before anything is allocated for it.
pub(super) const MAX_RECORD: usize = 64 * 1024 * 1024;

/// The file header this build writes.
pub(super) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn sum(payload: &[u8]) -> [u8; 8] {
    let mut s = [0u8; 8];
    s.copy_from_slice(&blake3::hash(payload).as_bytes()[..8]);
    s
}

fn check(len: [u8; 4], sum: &[u8]) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    h.update(&len);
    h.update(sum);
    let mut c = [0u8; 4];
    c.copy_from_slice(&h.finalize().as_bytes()[..4]);
    c
}

/// `payload` in its frame, ready to append; `None` above [`MAX_RECORD`].
pub(super) fn frame(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_RECORD {
        return None;
    }
    let len = u32::try_from(payload.len()).ok()?.to_le_bytes();
    let s = sum(payload);
    let mut out = Vec::with_capacity(FRAME_LEN + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&s);
    out.extend_from_slice(&check(len, &s));
    out.extend_from_slice(payload);
    Some(out)
}

/// A frame header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameHead {
    /// It passes its check: the payload is `len` bytes with checksum `sum`.
    Valid {
        /// Payload length (not yet compared with [`MAX_RECORD`]).
        len: usize,
        /// The payload's checksum.
        sum: [u8; 8],
    },
    /// It fails its check: torn or damaged.
    Invalid,
}

/// Reads a frame header (`FRAME_LEN` bytes).
pub(super) fn frame_head(b: &[u8; FRAME_LEN]) -> FrameHead {
    let len: [u8; 4] = [b[0], b[1], b[2], b[3]];
    if check(len, &b[4..12]) != b[12..16] {
        return FrameHead::Invalid;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[4..12]);
    match usize::try_from(u32::from_le_bytes(len)) {
        Ok(len) => FrameHead::Valid { len, sum: s },
        Err(_) => FrameHead::Invalid,
    }
}

/// Whether `payload` has checksum `expected`.
pub(super) fn payload_ok(payload: &[u8], expected: &[u8; 8]) -> bool {
    sum(payload) == *expected
}

/// Whether a whole valid frame starts anywhere in `rest`: bytes after a bad frame that hold
/// one are not a torn tail (an append writes one frame at the file's end) but damage.
pub(super) fn holds_valid_frame(rest: &[u8]) -> bool {
    (0..rest.len().saturating_sub(FRAME_LEN - 1)).any(|at| {
        let mut head = [0u8; FRAME_LEN];
        head.copy_from_slice(&rest[at..at + FRAME_LEN]);
        match frame_head(&head) {
            FrameHead::Valid { len, sum } if len <= MAX_RECORD => rest
                .get(at + FRAME_LEN..at + FRAME_LEN + len)
                .is_some_and(|p| payload_ok(p, &sum)),
            _ => false,
        }
    })
}

/// One operation of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op<'a> {
    /// Insert a proof unless its id or seq is stored already (SQL's INSERT OR IGNORE).
    Insert {
        /// Insertion order.
        seq: u64,
        /// The proof id.
        id: ProofId,
        /// Its kind.
        kind: Kind,
        /// When it was signed.
        created_ms: u64,
        /// The envelope.
        envelope: &'a [u8],
    },
    /// Delete a proof by id, if stored.
    Delete(ProofId),
    /// Set a counter.
    Meta(&'a str, u64),
    /// Set a blob.
    Blob(&'a str, &'a [u8]),
}

/// Why a payload could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Oversize {
    /// A key longer than 255 bytes.
    Key,
    /// A value longer than the record limit.
    Value,
}

/// Appends `op` to `out`.
pub(super) fn encode(op: &Op<'_>, out: &mut Vec<u8>) -> Result<(), Oversize> {
    fn key(k: &str, out: &mut Vec<u8>) -> Result<(), Oversize> {
        out.push(u8::try_from(k.len()).map_err(|_| Oversize::Key)?);
        out.extend_from_slice(k.as_bytes());
        Ok(())
    }
    fn bytes(b: &[u8], out: &mut Vec<u8>) -> Result<(), Oversize> {
        let len = u32::try_from(b.len()).map_err(|_| Oversize::Value)?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(b);
        Ok(())
    }
    match op {
        Op::Insert {
            seq,
            id,
            kind,
            created_ms,
            envelope,
        } => {
            out.push(1);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            out.push(kind.as_u8());
            out.extend_from_slice(&created_ms.to_le_bytes());
            bytes(envelope, out)
        }
        Op::Delete(id) => {
            out.push(2);
            out.extend_from_slice(id.as_bytes());
            Ok(())
        }
        Op::Meta(k, v) => {
            out.push(3);
            key(k, out)?;
            out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
        Op::Blob(k, v) => {
            out.push(4);
            key(k, out)?;
            bytes(v, out)
        }
    }
}

/// The encoded size of `op` (what it adds to a snapshot).
pub(super) fn encoded_len(op: &Op<'_>) -> usize {
    match op {
        Op::Insert { envelope, .. } => 1 + 8 + 32 + 1 + 8 + 4 + envelope.len(),
        Op::Delete(_) => 1 + 32,
        Op::Meta(k, _) => 1 + 1 + k.len() + 8,
        Op::Blob(k, v) => 1 + 1 + k.len() + 4 + v.len(),
    }
}

/// Decodes a payload's operations, in order.
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Op<'_>>, &'static str> {
    let mut r = Reader(payload);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let op = match r.u8()? {
            1 => {
                let seq = r.u64()?;
                let id = r.id()?;
                let kind = Kind::from_u8(r.u8()?).ok_or("an unknown proof kind")?;
                let created_ms = r.u64()?;
                let len = r.len()?;
                Op::Insert {
                    seq,
                    id,
                    kind,
                    created_ms,
                    envelope: r.take(len)?,
                }
            }
            2 => Op::Delete(r.id()?),
            3 => {
                let k = r.key()?;
                Op::Meta(k, r.u64()?)
            }
            4 => {
                let k = r.key()?;
                let len = r.len()?;
                Op::Blob(k, r.take(len)?)
            }
            _ => return Err("an unknown operation"),
        };
        ops.push(op);
    }
    Ok(ops)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("an operation cut short");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn len(&mut self) -> Result<usize, &'static str> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        usize::try_from(u32::from_le_bytes(b)).map_err(|_| "a length this machine cannot hold")
    }
    fn id(&mut self) -> Result<ProofId, &'static str> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(ProofId(b.into()))
    }
    fn key(&mut self) -> Result<&'a str, &'static str> {
        let n = usize::from(self.u8()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| "a key that is not UTF-8")
    }
}
