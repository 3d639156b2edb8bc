//! Key files: PKCS#8 PEM (RFC 8410 Ed25519), written atomically with mode 0600; and the
//! owner-only directories (0700) and database files (0600) that hold them and the rest of a
//! node's or the oracle's state.
//!
//! The format is the standard one OpenSSL writes (`openssl genpkey -algorithm ed25519`) and
//! reads, so operators can inspect, back up or generate keys with standard tools. This module
//! is the one place in the crate that does I/O; only the shells call it, at start-up.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use pkcs8::LineEnding;

use wisp_protocol::NodeKey;

/// Key files are small; anything larger is not a key file.
const MAX_KEY_FILE: u64 = 4096;

/// What went wrong with a key file. Messages name the path and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "key file {path} has mode {mode:o}, readable by group or others; \
         run `chmod 600 {path}` (and check who could have copied it)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Too large to be a key.
    #[error("key file {path} is larger than {MAX_KEY_FILE} bytes; it is not a key file")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error("key file {path} is not a PKCS#8 PEM Ed25519 private key: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        why: String,
    },
    /// The file carries a public key that does not belong to its private key.
    #[error("key file {path} holds a public key that does not match its private key")]
    Mismatch {
        /// The file.
        path: PathBuf,
    },
    /// Refusing to overwrite an existing key: that would change the node's identity.
    #[error("key file {path} already exists; refusing to overwrite a node identity")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The PKCS#8 v1 PEM text of `key` (private key only, as OpenSSL writes it).
pub fn to_pem(key: &NodeKey) -> zeroize::Zeroizing<String> {
    let bytes = KeypairBytes {
        secret_key: *key.seed(),
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap_or_else(|e| unreachable!("encoding 32 bytes cannot fail: {e}"))
}

/// Parses PKCS#8 PEM text (v1, or v2 with the public key, which must then match).
pub fn from_pem(pem: &str) -> Result<NodeKey, String> {
    let kp = KeypairBytes::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
    let key = NodeKey::from_seed(&kp.secret_key);
    if let Some(public) = &kp.public_key
        && public.0 != key.id().0
    {
        return Err("public key does not match".into());
    }
    Ok(key)
}

/// Loads a key file, refusing one that group or others can read.
pub fn load(path: &Path) -> Result<NodeKey, KeyFileError> {
    let mut file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    Read::by_ref(&mut file)
        .take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io(path))?;
    from_pem(&text).map_err(|why| {
        if why.contains("does not match") {
            KeyFileError::Mismatch {
                path: path.to_path_buf(),
            }
        } else {
            KeyFileError::Format {
                path: path.to_path_buf(),
                why,
            }
        }
    })
}

/// Writes a new key file atomically with mode 0600: a temporary file in the same directory is
/// written and fsync'd, then hard-linked to `path` (which fails if `path` exists, so a key is
/// never overwritten, even by a concurrent writer), then the directory is fsync'd.
pub fn save_new(path: &Path, key: &NodeKey) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A fresh temporary name per attempt: a stale file left by a crash (perhaps by an earlier
    // process with the same pid) or a concurrent save is skipped, never reused or deleted.
    let (tmp, mut f) = (0..64)
        .find_map(|_| {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
            {
                Ok(f) => Some(Ok((tmp, f))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(KeyFileError::Io {
                    path: tmp,
                    source: e,
                })),
            }
        })
        .unwrap_or_else(|| {
            Err(KeyFileError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other("no free temporary file name"),
            })
        })?;
    let result = (|| {
        f.write_all(to_pem(key).as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyFileError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    })();
    // Only the file this call created is removed.
    let _ = fs::remove_file(&tmp);
    result
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Loads the key at `path`, or creates one with `rng` if there is no file. Returns the key and
/// whether it was created.
pub fn load_or_create<R: rand_core::CryptoRng + ?Sized>(
    path: &Path,
    rng: &mut R,
) -> Result<(NodeKey, bool), KeyFileError> {
    match load(path) {
        Ok(k) => Ok((k, false)),
        Err(KeyFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let key = NodeKey::generate(rng);
            match save_new(path, &key) {
                Ok(()) => Ok((key, true)),
                // Another process created it between our load and our save: use theirs.
                Err(KeyFileError::Exists { .. }) => load(path).map(|k| (k, false)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A daemon's key at start-up: loads the key at `path`, or creates one from the operating
/// system's random source (and the directory that holds it, 0700, if missing) when there is no
/// file. Returns the key and whether it was created. The agent and the oracle both start so.
pub fn open_or_create(path: &Path) -> Result<(NodeKey, bool), KeyFileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|source| KeyFileError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    load_or_create(path, &mut rand_core::UnwrapErr(getrandom::SysRng))
}

/// Creates `dir` and any missing parents with mode 0700, as the shells create their data
/// directories: these hold the key, the database, its journal and the addresses a process
/// listens on, and nobody but the owner has business reading them. A directory that exists
/// already is left as it is (the operator chose its mode). The process umask can only narrow
/// the mode further.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `path` as an empty file with mode 0600 unless it exists. A database opened on it
/// afterwards is then the owner's alone from its first byte: SQLite treats an empty file as a
/// new database and gives its `-wal` and `-shm` files the database file's mode. An existing
/// file is left as it is.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `contents` so that a reader sees the old file or the whole new one,
/// never a part: written to a temporary file beside it, then renamed over it. For the small
/// files a daemon writes for others to read while it runs (the addresses it listens on);
/// nothing here is fsync'd, as these are rewritten at every start.
pub fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn data_directories_and_database_files_are_created_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700, "a missing parent too");
        assert_eq!(mode(&dir), 0o700);
        create_private_dir(&dir).unwrap();
        let db = dir.join("x.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(fs::metadata(&db).unwrap().len(), 0);
        // What exists is left alone: contents and mode.
        fs::write(&db, b"data").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o640)).unwrap();
        create_private_file(&db).unwrap();
        assert_eq!(fs::read(&db).unwrap(), b"data");
        assert_eq!(mode(&db), 0o640);
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o755);
    }

    #[test]
    fn replace_file_leaves_the_whole_new_contents_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.addr");
        replace_file(&path, b"127.0.0.1:1").unwrap();
        replace_file(&path, b"127.0.0.1:22").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"127.0.0.1:22");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("http.addr")]);
    }

    #[test]
    fn save_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = NodeKey::from_seed(&[5; 32]);
        save_new(&path, &key).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(load(&path).unwrap().id(), key.id());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save_new(&path, &NodeKey::from_seed(&[1; 32])).unwrap();
        let err = save_new(&path, &NodeKey::from_seed(&[2; 32])).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(load(&path).unwrap().id(), NodeKey::from_seed(&[1; 32]).id());
    }

    #[test]
    fn refuses_group_or_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save_new(&path, &NodeKey::from_seed(&[1; 32])).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load(&path).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, KeyFileError::Permissions { .. }), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load(&path).is_ok());
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        let write = |content: &[u8]| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(content).unwrap();
        };
        write(b"not a key");
        assert!(matches!(load(&path), Err(KeyFileError::Format { .. })));
        write(&vec![b'A'; 5000]);
        assert!(matches!(load(&path), Err(KeyFileError::TooLarge { .. })));
    }

    #[test]
    fn a_stale_temporary_file_does_not_block_saving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        // What a crash between create and link would leave, for the next names this process tries.
        let next = TMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 3 {
            fs::write(
                dir.path()
                    .join(format!(".node.key.tmp.{}.{n}", std::process::id())),
                b"stale",
            )
            .unwrap();
        }
        save_new(&path, &NodeKey::from_seed(&[4; 32])).unwrap();
        assert_eq!(load(&path).unwrap().id(), NodeKey::from_seed(&[4; 32]).id());
        // The stale files are not ours to delete.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_daemon_key_is_created_once_in_an_owner_only_directory() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("data/node.key");
        let (a, created) = open_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = open_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(mode(&path), 0o600);
        // Where no directory can be made, the error names it.
        fs::write(root.path().join("file"), b"").unwrap();
        let e = open_or_create(&root.path().join("file/node.key")).unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
    }

    #[test]
    fn load_or_create_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.key");
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let (a, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(!created);
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn v2_with_matching_public_key_is_accepted_and_mismatch_refused() {
        let key = NodeKey::from_seed(&[8; 32]);
        let v2 = KeypairBytes {
            secret_key: *key.seed(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(key.id().0)),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        assert_eq!(from_pem(&v2).unwrap().id(), key.id());
        let bad = KeypairBytes {
            secret_key: *key.seed(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(
                NodeKey::from_seed(&[9; 32]).id().0,
            )),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
        assert!(from_pem(&bad).is_err());
    }

    use rand_chacha::rand_core::SeedableRng;
}
