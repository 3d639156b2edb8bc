//! The durable outbox store: an append-only log, `outbox.log`, fsync'd at every commit.
//!
//! Every commit is one record appended to the file (its inserts, deletions and counters
//! together, checksummed) and then `fdatasync`'d; `commit` returns `Ok` only after that. Once
//! the kernel reports the data synced, the file holds it through `kill -9` and power loss, as
//! far as the storage beneath honours a flush (a drive or flash controller that acknowledges
//! writes it only caches can still lose them; no file format fixes that). Commits are batched
//! by the shell (many proofs, and the acks' deletions, per record; `outbox.commit_interval_ms`)
//! so that flash is not worn by one write and one sync per message. Small state the agent must
//! never repeat (the heartbeat sequence number, and when the last heartbeat was signed, so that
//! a restart keeps the heartbeat interval) is in the same record as the proofs that use it.
//!
//! [`Store::open`] replays the records into memory. A crash in the middle of an append leaves
//! a torn last record; that commit never returned `Ok`, so it is cut off (with a warning) and
//! nothing accepted is lost. A bad record with valid ones after it is damage, not a crash, and
//! `open` refuses it ([`StoreError::Corrupt`]) rather than drop accepted proofs. A last record
//! damaged after it was synced cannot be told from a torn one and is cut off too.
//!
//! When the file outgrows its live data (over `max(1 MiB, 4 × live)`), it is compacted: the
//! live state is written to `outbox.log.tmp`, synced, renamed over `outbox.log`, and the
//! directory synced. A crash at any point leaves the old file or the new one, whole.
//!
//! `journal.rs` has the file format.

mod journal;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use journal::{FRAME_LEN, FrameHead, HEADER_LEN, MAX_RECORD, Op};
use wisp_protocol::ProofId;
use wisp_protocol::kind::Kind;

/// A stored proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Insertion order.
    pub seq: u64,
    /// The proof id.
    pub id: ProofId,
    /// Its kind.
    pub kind: Kind,
    /// When it was signed.
    pub created_ms: u64,
    /// The envelope length.
    pub len: usize,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or syncing the file failed.
    #[error("outbox log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file could not be created.
    #[error("creating the outbox log: {0}")]
    Create(std::io::Error),
    /// Another process has the file open (two agents on one data directory).
    #[error("outbox log {0} is in use by another process: two agents on one data directory?")]
    Locked(PathBuf),
    /// The file holds something this build cannot read: damage, or a newer format.
    #[error(
        "outbox log damaged or unreadable: {0}. The agent will not start on it: keep a copy \
         for inspection; moving it away starts an empty outbox and loses its pending proofs"
    )]
    Corrupt(String),
    /// A commit larger than a record may be.
    #[error("outbox commit too large: {0}")]
    TooLarge(&'static str),
}

/// The file's name in the data directory.
pub const FILE_NAME: &str = "outbox.log";

/// The file grows to at least this before it is compacted.
const COMPACT_MIN: u64 = 1024 * 1024;
/// A snapshot's live state is written in records of about this size.
const SNAPSHOT_RECORD: usize = 1024 * 1024;

/// A pending proof in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    id: ProofId,
    kind: Kind,
    created_ms: u64,
    envelope: Vec<u8>,
}

/// Everything the log's records add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    proofs: BTreeMap<u64, Pending>,
    ids: HashMap<ProofId, u64>,
    meta: BTreeMap<String, u64>,
    blobs: BTreeMap<String, Vec<u8>>,
    /// The encoded size of all of it: what a snapshot holds.
    live: usize,
}

impl State {
    /// Applies one operation, as replay does and as a commit does once it is durable.
    fn apply(&mut self, op: &Op<'_>) {
        match *op {
            Op::Insert {
                seq,
                id,
                kind,
                created_ms,
                envelope,
            } => {
                // INSERT OR IGNORE: a stored id (or seq) keeps its first row.
                if self.ids.contains_key(&id) || self.proofs.contains_key(&seq) {
                    return;
                }
                self.live += journal::encoded_len(op);
                self.ids.insert(id, seq);
                self.proofs.insert(
                    seq,
                    Pending {
                        id,
                        kind,
                        created_ms,
                        envelope: envelope.to_vec(),
                    },
                );
            }
            Op::Delete(id) => {
                if let Some(seq) = self.ids.remove(&id)
                    && let Some(p) = self.proofs.remove(&seq)
                {
                    self.live -= journal::encoded_len(&p.insert_op(seq));
                }
            }
            Op::Meta(k, v) => {
                if self.meta.insert(k.to_owned(), v).is_none() {
                    self.live += journal::encoded_len(op);
                }
            }
            Op::Blob(k, v) => {
                let old = self.blobs.insert(k.to_owned(), v.to_vec());
                self.live += journal::encoded_len(op);
                if let Some(old) = old {
                    self.live -= journal::encoded_len(&Op::Blob(k, &old));
                }
            }
        }
    }

    /// The operations that rebuild this state: counters, blobs, then proofs in seq order.
    fn ops(&self) -> impl Iterator<Item = Op<'_>> {
        let meta = self.meta.iter().map(|(k, v)| Op::Meta(k, *v));
        let blobs = self.blobs.iter().map(|(k, v)| Op::Blob(k, v));
        let proofs = self.proofs.iter().map(|(seq, p)| p.insert_op(*seq));
        meta.chain(blobs).chain(proofs)
    }
}

impl Pending {
    fn insert_op(&self, seq: u64) -> Op<'_> {
        Op::Insert {
            seq,
            id: self.id,
            kind: self.kind,
            created_ms: self.created_ms,
            envelope: &self.envelope,
        }
    }
}

/// The outbox log.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// Open read-write and locked (`flock`) while the store lives.
    file: File,
    /// The end of the last whole record: where the next one goes.
    end: u64,
    /// A failed append may have left bytes past `end`: cut them before the next one.
    cut_tail: bool,
    /// A compaction renamed the file and the directory is not synced yet: sync it before the
    /// next append, or that append could land in a file the directory does not name after a
    /// power loss.
    sync_dir: bool,
    state: State,
}

impl Store {
    /// Opens (creating if needed, mode 0600) the log at `path` and replays it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        wisp_shell::keyfile::create_private_file(path).map_err(StoreError::Create)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        lock(&file, path)?;
        // A compaction that crashed before its rename: the old file is whole, drop the new one.
        let tmp = tmp_path(path);
        if tmp.exists() {
            tracing::warn!(path = %tmp.display(), "removing an unfinished outbox compaction");
            std::fs::remove_file(&tmp).map_err(|e| StoreError::Io {
                path: tmp.clone(),
                source: e,
            })?;
        }
        let len = file.metadata().map_err(io)?.len();
        let mut store = Store {
            path: path.to_owned(),
            file,
            end: 0,
            cut_tail: false,
            sync_dir: false,
            state: State::default(),
        };
        if len < HEADER_LEN as u64 {
            store.start_new(len)?;
            return Ok(store);
        }
        let (state, end) = replay(&store.file, len).map_err(|e| match e {
            Replay::Io(e) => io(e),
            Replay::Corrupt(m) => StoreError::Corrupt(format!("{}: {m}", path.display())),
        })?;
        store.state = state;
        store.end = end;
        if end < len {
            tracing::warn!(
                path = %path.display(),
                at = end,
                bytes = len - end,
                "the outbox log ends in a torn record (a crash during a commit that never \
                 returned): cutting it off"
            );
            store.file.set_len(end).map_err(io)?;
            store.file.sync_all().map_err(io)?;
        }
        Ok(store)
    }

    /// A new (or torn at its creation) file: writes the header.
    fn start_new(&mut self, len: u64) -> Result<(), StoreError> {
        let header = journal::header();
        let mut head = vec![0u8; usize::try_from(len).unwrap_or(HEADER_LEN)];
        self.file
            .read_exact_at(&mut head, 0)
            .map_err(|e| self.io(e))?;
        if !header.starts_with(&head) && head.iter().any(|&b| b != 0) {
            return Err(StoreError::Corrupt(format!(
                "{}: {len} bytes that are not an outbox log's header",
                self.path.display()
            )));
        }
        self.file
            .write_all_at(&header, 0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| self.io(e))?;
        sync_dir(&self.path)?;
        self.end = HEADER_LEN as u64;
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Every pending proof with its envelope bytes, in insertion order, each checked to hash
    /// to its proof id.
    pub fn load(&self) -> Result<Vec<(Row, Vec<u8>)>, StoreError> {
        self.state
            .proofs
            .iter()
            .map(|(&seq, p)| {
                if ProofId::of(&p.envelope) != p.id {
                    return Err(StoreError::Corrupt(format!(
                        "{}: proof {seq}: envelope does not hash to its proof id",
                        self.path.display()
                    )));
                }
                let row = Row {
                    seq,
                    id: p.id,
                    kind: p.kind,
                    created_ms: p.created_ms,
                    len: p.envelope.len(),
                };
                Ok((row, p.envelope.clone()))
            })
            .collect()
    }

    /// A stored counter (0 if never set).
    pub fn meta(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.state.meta.get(key).copied().unwrap_or(0))
    }

    /// A stored blob (the last epoch seed, so a restart does not wait for the broker).
    pub fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.blobs.get(key).cloned())
    }

    /// Stores a blob durably (a record of its own).
    pub fn set_blob(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(&[Op::Blob(key, value)])
    }

    /// One durable record: insert `new` proofs (a stored id or seq is left as it is), delete
    /// `gone` ones, set `meta` counters. When it returns `Ok`, all of it survives a crash or
    /// power loss; on `Err`, none of it is applied.
    pub fn commit(
        &mut self,
        new: &[(Row, &[u8])],
        gone: &[ProofId],
        meta: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        let inserts = new.iter().map(|(row, bytes)| Op::Insert {
            seq: row.seq,
            id: row.id,
            kind: row.kind,
            created_ms: row.created_ms,
            envelope: bytes,
        });
        let ops: Vec<Op<'_>> = inserts
            .chain(gone.iter().map(|id| Op::Delete(*id)))
            .chain(meta.iter().map(|(k, v)| Op::Meta(k, *v)))
            .collect();
        self.write(&ops)
    }

    /// Appends `ops` as one record, syncs it, then applies them in memory.
    fn write(&mut self, ops: &[Op<'_>]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut payload = Vec::new();
        for op in ops {
            journal::encode(op, &mut payload).map_err(|e| {
                StoreError::TooLarge(match e {
                    journal::Oversize::Key => "a key longer than 255 bytes",
                    journal::Oversize::Value => "a value longer than 4 GiB",
                })
            })?;
        }
        let frame =
            journal::frame(&payload).ok_or(StoreError::TooLarge("a record above 64 MiB"))?;
        self.append(&frame)?;
        for op in ops {
            self.state.apply(op);
        }
        self.compact_if_due();
        Ok(())
    }

    /// Writes `frame` at the end and syncs it; on failure the file is cut back to `end`.
    fn append(&mut self, frame: &[u8]) -> Result<(), StoreError> {
        if self.cut_tail {
            self.file
                .set_len(self.end)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| self.io(e))?;
            self.cut_tail = false;
        }
        if self.sync_dir {
            sync_dir(&self.path)?;
            self.sync_dir = false;
        }
        let written = self
            .file
            .write_all_at(frame, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Part of it may be in the file, even all of it: cut it, now or before the next
            // append, so that a commit that returned `Err` is never replayed.
            self.cut_tail = true;
            if self
                .file
                .set_len(self.end)
                .and_then(|()| self.file.sync_all())
                .is_ok()
            {
                self.cut_tail = false;
            }
            return Err(self.io(e));
        }
        self.end += frame.len() as u64;
        Ok(())
    }

    /// Compacts when the file is over `max(1 MiB, 4 × live)`. A failed compaction leaves the
    /// log as it was (still whole and valid) and is logged; the next commit tries again.
    fn compact_if_due(&mut self) {
        let live = u64::try_from(self.state.live).unwrap_or(u64::MAX);
        if self.end <= COMPACT_MIN.max(live.saturating_mul(4)) {
            return;
        }
        if let Err(e) = self.compact() {
            tracing::warn!("outbox log compaction failed, the log stays as it is: {e}");
        }
    }

    /// Rewrites the file as its live state: written to `outbox.log.tmp`, synced, renamed over
    /// `outbox.log`, the directory synced.
    fn compact(&mut self) -> Result<(), StoreError> {
        let tmp = tmp_path(&self.path);
        let tmp_io = |source| StoreError::Io {
            path: tmp.clone(),
            source,
        };
        let mut bytes = journal::header().to_vec();
        let mut payload = Vec::new();
        for op in self.state.ops() {
            journal::encode(&op, &mut payload)
                .map_err(|_| StoreError::TooLarge("a stored value"))?;
            if payload.len() >= SNAPSHOT_RECORD {
                bytes.extend(journal::frame(&payload).ok_or(StoreError::TooLarge("a proof"))?);
                payload.clear();
            }
        }
        if !payload.is_empty() {
            bytes.extend(journal::frame(&payload).ok_or(StoreError::TooLarge("a proof"))?);
        }
        let _ = std::fs::remove_file(&tmp);
        wisp_shell::keyfile::create_private_file(&tmp).map_err(StoreError::Create)?;
        let written = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .and_then(|f| {
                f.write_all_at(&bytes, 0)?;
                f.sync_all()?;
                Ok(f)
            })
            .map_err(tmp_io)
            .and_then(|f| {
                // Locked before it takes the name, so that no other process can open it
                // unlocked.
                lock(&f, &tmp)?;
                std::fs::rename(&tmp, &self.path).map_err(tmp_io)?;
                Ok(f)
            });
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // `outbox.log` names the new file from here: the next append goes there, after the
        // directory is synced.
        let before = self.end;
        self.file = file;
        self.end = bytes.len() as u64;
        self.cut_tail = false;
        self.sync_dir = true;
        if sync_dir(&self.path).is_ok() {
            self.sync_dir = false;
        }
        tracing::debug!(before, after = self.end, "outbox log compacted");
        Ok(())
    }

    /// The length of the file's whole records.
    #[cfg(test)]
    fn len(&self) -> u64 {
        self.end
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

fn lock(file: &File, path: &Path) -> Result<(), StoreError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// Syncs the directory holding `path`, so that a new name in it (creation, rename) is durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Why a replay stopped.
enum Replay {
    Io(std::io::Error),
    Corrupt(String),
}

impl From<std::io::Error> for Replay {
    fn from(e: std::io::Error) -> Replay {
        Replay::Io(e)
    }
}

/// Replays the file (`len` bytes, at least a header's): the state, and the end of the last
/// whole record (less than `len` when the file ends in a torn record).
fn replay(file: &File, len: u64) -> Result<(State, u64), Replay> {
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    if &header[..8] != journal::MAGIC {
        return Err(Replay::Corrupt(
            "it does not start as an outbox log (wrong magic)".into(),
        ));
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != journal::VERSION {
        return Err(Replay::Corrupt(format!(
            "format version {version}, this agent reads version {} (written by a newer agent?)",
            journal::VERSION
        )));
    }
    let mut state = State::default();
    let mut at = HEADER_LEN as u64;
    loop {
        let left = len - at;
        if left == 0 {
            return Ok((state, at));
        }
        if left < FRAME_LEN as u64 {
            // Part of a record's header: torn.
            return Ok((state, at));
        }
        let mut head = [0u8; FRAME_LEN];
        r.read_exact(&mut head)?;
        let (plen, sum) = match journal::frame_head(&head) {
            FrameHead::Valid { len: plen, sum } => (plen, sum),
            FrameHead::Invalid => {
                // Torn (its header never reached the disk whole) only if no whole record
                // follows it.
                let mut rest = Vec::new();
                r.read_to_end(&mut rest)?;
                if journal::holds_valid_frame(&rest) {
                    return Err(Replay::Corrupt(format!(
                        "a record at byte {at} has a damaged header and valid records follow it"
                    )));
                }
                return Ok((state, at));
            }
        };
        if plen > MAX_RECORD {
            return Err(Replay::Corrupt(format!(
                "a record at byte {at} claims {plen} bytes, above the {MAX_RECORD}-byte limit"
            )));
        }
        let end = at + (FRAME_LEN + plen) as u64;
        if end > len {
            // Cut short: torn.
            return Ok((state, at));
        }
        let mut payload = vec![0u8; plen];
        r.read_exact(&mut payload)?;
        if !journal::payload_ok(&payload, &sum) {
            if end == len {
                // The last record, its bytes not all on disk: torn.
                return Ok((state, at));
            }
            return Err(Replay::Corrupt(format!(
                "the record at byte {at} fails its checksum and {} bytes follow it",
                len - end
            )));
        }
        let ops = journal::decode(&payload)
            .map_err(|m| Replay::Corrupt(format!("the record at byte {at} holds {m}")))?;
        for op in &ops {
            state.apply(op);
        }
        at = end;
    }
}
