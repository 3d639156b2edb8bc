//! What the Linux device's tests stand in for hardware with: a fake hostapd on a real Unix
//! datagram socket, a pseudo-terminal pair for the GNSS receiver, and the recorded NMEA log
//! cut into the receiver's one-second bursts.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use wisp_firmware::radio::linux::hostapd::HostapdCtrl;

/// Four seconds of a real receiver's output (see `fixtures/nmea/README.md`).
pub const NMEA: &str = include_str!("../fixtures/nmea/nmea1-head.log");

/// [`NMEA`] as the receiver sends it: one burst a second, each ending with its `$GPGGA`, lines
/// ended by CR LF.
pub fn nmea_bursts() -> Vec<String> {
    let mut bursts: Vec<String> = vec![String::new()];
    for line in NMEA.lines() {
        let last = bursts.last_mut().unwrap();
        last.push_str(line);
        last.push_str("\r\n");
        if line.starts_with("$GPGGA") {
            bursts.push(String::new());
        }
    }
    bursts.retain(|b| !b.is_empty());
    bursts
}

/// A pseudo-terminal pair: the master end (the receiver's side), the slave and its path.
pub fn pty() -> (std::fs::File, std::os::fd::OwnedFd, PathBuf) {
    let pair = nix::pty::openpty(None, None).unwrap();
    let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
    (std::fs::File::from(pair.master), pair.slave, path)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fake hostapd 2.10 on channel 6 at a real Unix datagram socket; records each command.
pub struct FakeHostapd {
    pub path: PathBuf,
    commands: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHostapd {
    pub fn start() -> Self {
        let path = PathBuf::from(format!(
            "/tmp/wisp-agent-fake-hostapd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self::start_at(path)
    }

    pub fn start_at(path: PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let (tx, commands) = sync_channel(256);
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let command = String::from_utf8_lossy(&buf[..n]).into_owned();
                let to = from.as_pathname().unwrap().to_path_buf();
                let _ = tx.try_send(command.clone());
                let reply = match command.split_once(' ').map_or(command.as_str(), |(c, _)| c) {
                    "PING" => "PONG\n",
                    "STATUS" => "state=ENABLED\nphy=phy0\nfreq=2437\nchannel=6\nssid[0]=wisp\n",
                    "SET" | "UPDATE_BEACON" | "TERMINATE" => "OK\n",
                    _ => "UNKNOWN COMMAND\n",
                };
                server.send_to(reply.as_bytes(), &to).unwrap();
                if command == "TERMINATE" {
                    return;
                }
            }
        });
        Self {
            path,
            commands,
            thread: Some(thread),
        }
    }

    /// The commands received since the last call.
    pub fn received(&self) -> Vec<String> {
        self.commands.try_iter().collect()
    }

    /// The next command, waiting at most `limit`.
    pub fn next_command(&self, limit: Duration) -> Option<String> {
        self.commands.recv_timeout(limit).ok()
    }

    /// Stops it as hostapd stops: the socket file goes away.
    pub fn stop(mut self) -> PathBuf {
        self.terminate();
        self.path.clone()
    }

    fn terminate(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok(ctrl) = HostapdCtrl::connect(&self.path, Duration::from_secs(1)) {
                let _ = ctrl.request("TERMINATE");
            }
            t.join().unwrap();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for FakeHostapd {
    fn drop(&mut self) {
        self.terminate();
    }
}
