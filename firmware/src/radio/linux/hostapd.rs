//! A client for hostapd's control interface (`ctrl_interface`, a Unix datagram socket).
//!
//! The protocol is one datagram per request and one per reply. The client binds its own
//! socket path (hostapd replies to the sender's address), here under `/tmp`, and removes it on
//! drop. Unsolicited event messages (`<3>AP-STA-CONNECTED …`) only arrive after `ATTACH`,
//! which this client never sends; any that do arrive are skipped.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::string::String;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use std::vec::Vec;
use std::{format, fs};

/// Errors of the hostapd control client.
#[derive(Debug, thiserror::Error)]
pub enum HostapdError {
    /// The socket failed (hostapd not running, wrong `ctrl_interface` path, permissions).
    #[error("hostapd control socket: {0}")]
    Io(#[from] io::Error),
    /// hostapd did not answer in time.
    #[error("hostapd did not answer `{command}` in time")]
    Timeout {
        /// The command's first word.
        command: String,
    },
    /// hostapd answered something other than what the command expects (e.g. `FAIL`).
    #[error("hostapd answered `{reply}` to `{command}`")]
    Rejected {
        /// The command's first word.
        command: String,
        /// The reply, trimmed.
        reply: String,
    },
}

// Distinguishes the socket paths of several clients in one process.
static NEXT_CLIENT: AtomicU32 = AtomicU32::new(0);

// hostapd's own reply buffer is 4 KiB; STATUS on a multi-BSS AP can approach it.
const REPLY_BUF: usize = 8_192;
// Skip at most this many unsolicited messages while waiting for a reply.
const MAX_SKIPPED: usize = 16;

/// A connected control-interface client.
#[derive(Debug)]
pub struct HostapdCtrl {
    socket: UnixDatagram,
    local: PathBuf,
}

fn first_word(command: &str) -> String {
    command.split_whitespace().next().unwrap_or("").into()
}

impl HostapdCtrl {
    /// Connects to the control socket at `ctrl_path` (e.g. `/var/run/hostapd/wlan0`); every
    /// request waits at most `timeout` for its reply.
    pub fn connect(ctrl_path: impl AsRef<Path>, timeout: Duration) -> Result<Self, HostapdError> {
        let local = PathBuf::from(format!(
            "/tmp/wisp-hostapd-{}-{}",
            std::process::id(),
            NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
        ));
        // A stale socket of an earlier process with the same pid would make bind fail.
        let _ = fs::remove_file(&local);
        let socket = UnixDatagram::bind(&local)?;
        let client = Self { socket, local };
        client.socket.connect(ctrl_path)?;
        client.socket.set_read_timeout(Some(timeout))?;
        client.socket.set_write_timeout(Some(timeout))?;
        Ok(client)
    }

    /// The client's own socket path.
    pub fn local_path(&self) -> &Path {
        &self.local
    }

    /// Sends `command` and returns hostapd's reply.
    pub fn request(&self, command: &str) -> Result<String, HostapdError> {
        self.discard_stale()?;
        let timeout = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HostapdError::Timeout {
                command: first_word(command),
            },
            _ => HostapdError::Io(e),
        };
        self.socket.send(command.as_bytes()).map_err(timeout)?;
        let mut buf = std::vec![0u8; REPLY_BUF];
        for _ in 0..=MAX_SKIPPED {
            let n = self.socket.recv(&mut buf).map_err(timeout)?;
            let reply = &buf[..n];
            if reply.first() == Some(&b'<') {
                continue;
            }
            return Ok(String::from_utf8_lossy(reply).into_owned());
        }
        Err(HostapdError::Timeout {
            command: first_word(command),
        })
    }

    // A reply that arrived after its request timed out would otherwise be taken as the answer
    // to the next request.
    fn discard_stale(&self) -> io::Result<()> {
        self.socket.set_nonblocking(true)?;
        let mut buf = [0u8; 64];
        let result = loop {
            match self.socket.recv(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.socket.set_nonblocking(false)?;
        result
    }

    fn expect(&self, command: &str, expected: &str) -> Result<(), HostapdError> {
        let reply = self.request(command)?;
        if reply.trim_end() == expected {
            Ok(())
        } else {
            Err(HostapdError::Rejected {
                command: first_word(command),
                reply: reply.trim_end().into(),
            })
        }
    }

    /// `PING` → `PONG`.
    pub fn ping(&self) -> Result<(), HostapdError> {
        self.expect("PING", "PONG")
    }

    /// `SET vendor_elements <hex>`: the raw elements hostapd appends to beacons and probe
    /// responses. Takes effect at the next [`HostapdCtrl::update_beacon`].
    pub fn set_vendor_elements(&self, elements: &[u8]) -> Result<(), HostapdError> {
        self.expect(&format!("SET vendor_elements {}", to_hex(elements)), "OK")
    }

    /// `UPDATE_BEACON`: rebuilds the beacon template from the current configuration.
    pub fn update_beacon(&self) -> Result<(), HostapdError> {
        self.expect("UPDATE_BEACON", "OK")
    }

    /// `STATUS` as `key=value` pairs, in hostapd's order.
    pub fn status(&self) -> Result<Vec<(String, String)>, HostapdError> {
        let reply = self.request("STATUS")?;
        Ok(reply
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// The operating frequency in MHz (`freq=` of `STATUS`).
    pub fn freq_mhz(&self) -> Result<u32, HostapdError> {
        let status = self.status()?;
        status
            .iter()
            .find(|(k, _)| k == "freq")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| HostapdError::Rejected {
                command: "STATUS".into(),
                reply: "no freq= line".into(),
            })
    }
}

impl Drop for HostapdCtrl {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.local);
    }
}

/// Lowercase hex, as hostapd's configuration parser takes it.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}
