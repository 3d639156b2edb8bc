//! A GNSS receiver's tty: opened raw at its baud rate, through a real pseudo-terminal pair.
#![cfg(feature = "linux")]
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sys::termios::{self, BaudRate, LocalFlags};
use wisp_firmware::gnss::NmeaParser;
use wisp_firmware::gnss::tty::{self, TtyError};

/// A pseudo-terminal pair: the master end (the "receiver") and the slave's path.
fn pty() -> (std::fs::File, std::os::fd::OwnedFd, PathBuf) {
    let pair = nix::pty::openpty(None, None).unwrap();
    let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
    (std::fs::File::from(pair.master), pair.slave, path)
}

#[test]
fn the_tty_is_set_raw_at_the_baud_rate_and_carries_nmea() {
    let (mut receiver, _slave, path) = pty();
    let mut port = tty::open(&path, 9_600).unwrap();
    let t = termios::tcgetattr(&port).unwrap();
    assert_eq!(termios::cfgetospeed(&t), BaudRate::B9600);
    assert_eq!(termios::cfgetispeed(&t), BaudRate::B9600);
    assert!(!t.local_flags.contains(LocalFlags::ICANON), "not canonical");
    assert!(!t.local_flags.contains(LocalFlags::ECHO), "no echo");

    // Raw mode keeps CR (canonical mode with ICRNL would turn it into LF).
    let burst = b"$GPRMC,110124,A,5505.330990,N,03858.587325,E,152.6,86.2,310317,8.9,E,D*2E\r\n\
                  $GPGGA,110124,5505.330990,N,03858.587325,E,2,09,0.9,2177.0,M,14.0,M,,*7D\r\n";
    receiver.write_all(burst).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < burst.len() {
        let n = port.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, burst);
    let fix = NmeaParser::new().push(&got).unwrap();
    assert_eq!((fix.lat_e7, fix.lon_e7), (550_888_498, 389_764_554));
}

#[test]
fn bad_rates_paths_and_non_terminals_are_named() {
    let (_receiver, _slave, path) = pty();
    let e = tty::open(&path, 9_601).unwrap_err();
    assert!(matches!(e, TtyError::Baud(9_601)), "{e}");
    let e = tty::open("/nonexistent/ttyGNSS".as_ref(), 9_600).unwrap_err();
    assert!(matches!(e, TtyError::Open { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/ttyGNSS"), "{e}");
    let e = tty::open("/dev/null".as_ref(), 9_600).unwrap_err();
    assert!(matches!(e, TtyError::Termios { .. }), "{e}");
    assert!(e.to_string().contains("serial port"), "{e}");
    assert_eq!(tty::BAUD_RATES.len(), 9);
    assert!(tty::BAUD_RATES.iter().all(|&b| tty::baud_rate(b).is_some()));
}
