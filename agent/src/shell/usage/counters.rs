//! The `command` counter source: running the counter program, bounded in time and output,
//! and parsing its lines `<ip-or-mac> <down> <up>` and the kernel's ARP table. The driver
//! ([`super`]) maps the lines to peers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most bytes a counter program may print.
pub const COMMAND_OUTPUT_MAX: usize = 64 * 1024;
/// How long a counter program may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a counter read failed.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The program did not start or its output could not be read.
    #[error("running {0}: {1}")]
    Run(PathBuf, std::io::Error),
    /// It ran over [`COMMAND_TIMEOUT`].
    #[error("{0} ran over {COMMAND_TIMEOUT:?}; it was killed")]
    Timeout(PathBuf),
    /// It printed more than [`COMMAND_OUTPUT_MAX`] bytes.
    #[error("{0} printed more than {COMMAND_OUTPUT_MAX} bytes")]
    TooLong(PathBuf),
    /// It failed.
    #[error("{0} exited with {1}")]
    Status(PathBuf, std::process::ExitStatus),
}

/// A client address in a counter line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientAddr {
    /// An IP address.
    Ip(IpAddr),
    /// A MAC address.
    Mac([u8; 6]),
}

/// A counter line: the client's address, its cumulative bytes down and up.
pub type CounterLine = (ClientAddr, u64, u64);

/// Parses a counter program's output: one line `<ip-or-mac> <down> <up>` per client; blank
/// lines and `#` comments are skipped. Returns the good lines and, for each bad one, its
/// number and why.
pub fn parse_counters(text: &str) -> (Vec<CounterLine>, Vec<(usize, String)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [a, d, u] => parse_addr(a)
                .ok_or_else(|| format!("`{a}` is neither an IP nor a MAC address"))
                .and_then(|a| {
                    let n = |s: &str| {
                        s.parse::<u64>()
                            .map_err(|_| format!("`{s}` is not a byte count"))
                    };
                    Ok((a, n(d)?, n(u)?))
                }),
            _ => Err(format!("{} fields, expected 3", f.len())),
        };
        match parsed {
            Ok(g) => good.push(g),
            Err(why) => bad.push((i + 1, why)),
        }
    }
    (good, bad)
}

fn parse_addr(s: &str) -> Option<ClientAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ClientAddr::Ip(ip));
    }
    let mut mac = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(ClientAddr::Mac(mac))
}

/// The kernel's ARP table (`/proc/net/arp`): each MAC with its IP.
pub fn parse_arp(text: &str) -> Vec<([u8; 6], IpAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip = f.first()?.parse().ok()?;
            match parse_addr(f.get(3)?)? {
                ClientAddr::Mac(m) if m != [0; 6] => Some((m, ip)),
                _ => None,
            }
        })
        .collect()
}

/// Runs the counter program, bounded in time and output.
pub(super) async fn run_counters(program: &Path) -> Result<String, CounterError> {
    use tokio::io::AsyncReadExt as _;
    let mut child = tokio::process::Command::new(program)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CounterError::Run(program.into(), e))?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| CounterError::Run(program.into(), std::io::ErrorKind::BrokenPipe.into()))?;
    let read = async {
        let mut buf = Vec::new();
        (&mut out)
            .take(COMMAND_OUTPUT_MAX as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        let status = child.wait().await?;
        std::io::Result::Ok((buf, status))
    };
    let (buf, status) = tokio::time::timeout(COMMAND_TIMEOUT, read)
        .await
        .map_err(|_| CounterError::Timeout(program.into()))?
        .map_err(|e| CounterError::Run(program.into(), e))?;
    if buf.len() > COMMAND_OUTPUT_MAX {
        return Err(CounterError::TooLong(program.into()));
    }
    if !status.success() {
        return Err(CounterError::Status(program.into(), status));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_lines_good_and_bad() {
        let (good, bad) = parse_counters(
            "# addr down up\n10.0.0.2 100 20\n\naa:bb:cc:dd:ee:0f 5 6\nfe80::1 1 2\n\
             10.0.0.3 x 1\n10.0.0.4 1\nnot-an-addr 1 2\n10.0.0.5 1 2 3\n",
        );
        assert_eq!(
            good,
            vec![
                (ClientAddr::Ip("10.0.0.2".parse().unwrap()), 100, 20),
                (ClientAddr::Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]), 5, 6),
                (ClientAddr::Ip("fe80::1".parse().unwrap()), 1, 2),
            ]
        );
        let lines: Vec<usize> = bad.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![6, 7, 8, 9], "{bad:?}");
        assert!(bad[0].1.contains("`x` is not a byte count"), "{bad:?}");
    }

    #[test]
    fn arp_table() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.168.1.20     0x1         0x2         aa:bb:cc:dd:ee:ff     *        wlan0\n\
                 192.168.1.21     0x1         0x0         00:00:00:00:00:00     *        wlan0\n";
        assert_eq!(
            parse_arp(t),
            vec![(
                [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                "192.168.1.20".parse().unwrap()
            )]
        );
    }
}
