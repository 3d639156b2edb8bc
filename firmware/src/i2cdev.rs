//! Linux i2c-dev (`/dev/i2c-N`) as an embedded-hal 1.0 [`I2c`] bus, and a sleeping
//! [`DelayNs`] (feature `linux`): what [`crate::se::Atecc608`] needs on a router.
//!
//! Every transaction is one `I2C_RDWR` ioctl: each [`Operation`] becomes one `i2c_msg`, so the
//! kernel puts a (repeated) START before each and one STOP at the end. embedded-hal asks for
//! adjacent operations of the same kind to be merged without a restart, which needs
//! `I2C_M_NOSTART` and an adapter that supports it; no driver here issues such sequences (the
//! ATECC608 driver writes or reads one buffer per transaction), so they are sent as separate
//! messages, as `linux-embedded-hal` does.
//!
//! Not exercised on an I²C bus: this machine has none. Tests cover opening and the ioctl's
//! refusal on a file that is not an adapter.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use nix::errno::Errno;

/// `I2C_M_RD` of `linux/i2c.h`: the message reads.
const I2C_M_RD: u16 = 0x0001;
/// `I2C_RDWR_IOCTL_MAX_MSGS` of `linux/i2c-dev.h`: the kernel refuses more in one call.
pub const MAX_MESSAGES: usize = 42;

/// `struct i2c_msg` of `linux/i2c.h`.
#[repr(C)]
struct I2cMsg {
    addr: u16,
    flags: u16,
    len: u16,
    buf: *mut u8,
}

/// `struct i2c_rdwr_ioctl_data` of `linux/i2c-dev.h`.
#[repr(C)]
struct I2cRdwrData {
    msgs: *mut I2cMsg,
    nmsgs: u32,
}

// The ioctl's wrapper stays private: it is unsafe and takes raw pointers.
#[allow(unreachable_pub, missing_docs)]
mod ioctl {
    // I2C_RDWR is 0x0707, a "bad" ioctl number (not built with _IOW).
    nix::ioctl_write_ptr_bad!(i2c_rdwr, 0x0707, super::I2cRdwrData);
}

/// Errors of [`I2cDev`].
#[derive(Debug, thiserror::Error)]
pub enum I2cDevError {
    /// The adapter could not be opened (missing `i2c-dev` module, wrong bus number,
    /// permissions).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The transfer failed; the kernel's errno (`ENXIO`/`EREMOTEIO`: no acknowledge,
    /// `EAGAIN`: arbitration lost, `ETIMEDOUT`: bus stuck, `ENOTTY`: not an adapter).
    #[error("i2c transfer failed: {0}")]
    Transfer(Errno),
    /// More operations than the kernel takes in one transfer, or one longer than 65 535 bytes.
    #[error("the transaction is too large for one I2C_RDWR transfer")]
    TooLarge,
}

impl embedded_hal::i2c::Error for I2cDevError {
    fn kind(&self) -> ErrorKind {
        match self {
            // Documentation/i2c/fault-codes.rst: ENXIO for an address NACK, EREMOTEIO for data.
            I2cDevError::Transfer(Errno::ENXIO) => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
            }
            I2cDevError::Transfer(Errno::EREMOTEIO) => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)
            }
            I2cDevError::Transfer(Errno::EAGAIN) => ErrorKind::ArbitrationLoss,
            I2cDevError::Transfer(Errno::EIO | Errno::ETIMEDOUT) => ErrorKind::Bus,
            _ => ErrorKind::Other,
        }
    }
}

/// An I²C adapter through i2c-dev. Owns the open device file.
#[derive(Debug)]
pub struct I2cDev {
    file: File,
}

impl I2cDev {
    /// Opens the adapter at `path`, e.g. `/dev/i2c-1`.
    pub fn open(path: &Path) -> Result<Self, I2cDevError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| I2cDevError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { file })
    }
}

impl ErrorType for I2cDev {
    type Error = I2cDevError;
}

impl I2c for I2cDev {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if operations.is_empty() {
            return Ok(());
        }
        if operations.len() > MAX_MESSAGES {
            return Err(I2cDevError::TooLarge);
        }
        let mut msgs = Vec::with_capacity(operations.len());
        for op in operations.iter_mut() {
            let (flags, buf, len) = match op {
                Operation::Read(b) => (I2C_M_RD, b.as_mut_ptr(), b.len()),
                // The kernel only reads a message without I2C_M_RD.
                Operation::Write(b) => (0, b.as_ptr().cast_mut(), b.len()),
            };
            msgs.push(I2cMsg {
                addr: u16::from(address),
                flags,
                len: u16::try_from(len).map_err(|_| I2cDevError::TooLarge)?,
                buf,
            });
        }
        let data = I2cRdwrData {
            msgs: msgs.as_mut_ptr(),
            nmsgs: u32::try_from(msgs.len()).map_err(|_| I2cDevError::TooLarge)?,
        };
        // SAFETY: `data` points to `msgs`, which lives until the call returns; each message's
        // `buf` points to `len` bytes of a buffer borrowed from `operations` for this call,
        // mutably for reads (the only ones the kernel writes to). The fd is open.
        #[allow(unsafe_code)]
        let r = unsafe { ioctl::i2c_rdwr(self.file.as_raw_fd(), &data) };
        r.map(drop).map_err(I2cDevError::Transfer)
    }
}

/// A [`DelayNs`] that sleeps the thread. Sleeps are at least as long as asked (usually
/// 50–100 µs longer on Linux), which the secure element's timings allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepDelay;

impl DelayNs for SleepDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(core::time::Duration::from_nanos(u64::from(ns)));
    }
}
