//! A GNSS receiver on a Linux serial port (feature `linux`): the tty opened raw at the
//! receiver's baud rate, ready for its bytes to be fed to [`super::NmeaParser`].
//!
//! Raw mode matters: a tty left in its default canonical mode translates CR to LF, echoes, and
//! treats some bytes of a binary protocol sharing the port (u-blox UBX) as line-editing or
//! signal characters. `VMIN = 1, VTIME = 0` makes a read block until at least one byte is
//! there and return what arrived, so a reader thread wakes once per burst.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::string::{String, ToString};

use nix::sys::termios::{self, BaudRate, ControlFlags, FlushArg, SetArg, SpecialCharacterIndices};

/// The baud rates [`open`] accepts: the standard rates GNSS modules use.
pub const BAUD_RATES: [u32; 9] = [
    4_800, 9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
];

/// Errors of [`open`].
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// The rate is not one of [`BAUD_RATES`].
    #[error(
        "{0} baud is not a standard rate (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800 or 921600)"
    )]
    Baud(u32),
    /// The device could not be opened (missing, permissions, in use).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The device is not a terminal, or refused the settings.
    #[error("cannot set {path} raw at {baud} baud (is it a serial port?): {source}")]
    Termios {
        /// The device path.
        path: String,
        /// The requested rate.
        baud: u32,
        /// The error.
        source: nix::Error,
    },
}

/// The termios constant for `baud`, if it is one of [`BAUD_RATES`].
pub fn baud_rate(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        4_800 => BaudRate::B4800,
        9_600 => BaudRate::B9600,
        19_200 => BaudRate::B19200,
        38_400 => BaudRate::B38400,
        57_600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        _ => return None,
    })
}

/// Opens the serial device at `path` read-only (it never becomes the process's controlling
/// terminal), sets it raw, 8N1, no flow control, at `baud`, and discards input received before.
pub fn open(path: &Path, baud: u32) -> Result<File, TtyError> {
    let rate = baud_rate(baud).ok_or(TtyError::Baud(baud))?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|source| TtyError::Open {
            path: path.display().to_string(),
            source,
        })?;
    let termios_error = |source| TtyError::Termios {
        path: path.display().to_string(),
        baud,
        source,
    };
    let mut t = termios::tcgetattr(&file).map_err(termios_error)?;
    termios::cfmakeraw(&mut t);
    termios::cfsetspeed(&mut t, rate).map_err(termios_error)?;
    // Receiver on, modem control lines ignored (most GNSS modules wire only RX/TX), no
    // hardware flow control.
    t.control_flags |= ControlFlags::CREAD | ControlFlags::CLOCAL;
    t.control_flags &= !ControlFlags::CRTSCTS;
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    termios::tcsetattr(&file, SetArg::TCSANOW, &t).map_err(termios_error)?;
    termios::tcflush(&file, FlushArg::TCIFLUSH).map_err(termios_error)?;
    Ok(file)
}
