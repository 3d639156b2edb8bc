//! GPIO lines through the Linux character device (`/dev/gpiochipN`, uAPI v2) as embedded-hal
//! 1.0 digital pins (feature `linux`): what [`crate::led::RgbPins`] and
//! [`crate::button::Button`] need on a router, without libgpiod or sysfs.
//!
//! Each [`GpioLine`] is one line requested with `GPIO_V2_GET_LINE_IOCTL`; the kernel gives a
//! file descriptor for it, and values are read and written with
//! `GPIO_V2_LINE_GET_VALUES_IOCTL` / `GPIO_V2_LINE_SET_VALUES_IOCTL`. The line is released when
//! the [`GpioLine`] is dropped. The structures mirror `linux/gpio.h` (kernel ≥ 5.10); their sizes
//! are checked against the kernel's in tests.
//!
//! Not exercised on GPIO hardware: this machine has no GPIO chip. Tests cover the layouts and
//! the ioctl's refusal on a file that is not a chip.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::string::{String, ToString};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};
use nix::errno::Errno;

/// `GPIO_V2_LINE_FLAG_ACTIVE_LOW`.
const FLAG_ACTIVE_LOW: u64 = 1 << 1;
/// `GPIO_V2_LINE_FLAG_INPUT`.
const FLAG_INPUT: u64 = 1 << 2;
/// `GPIO_V2_LINE_FLAG_OUTPUT`.
const FLAG_OUTPUT: u64 = 1 << 3;
/// `GPIO_V2_LINE_FLAG_BIAS_PULL_UP`.
const FLAG_BIAS_PULL_UP: u64 = 1 << 8;

/// `struct gpio_v2_line_attribute`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineAttribute {
    id: u32,
    padding: u32,
    value: u64,
}

/// `struct gpio_v2_line_config_attribute`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfigAttribute {
    attr: LineAttribute,
    mask: u64,
}

/// `struct gpio_v2_line_config`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LineConfig {
    flags: u64,
    num_attrs: u32,
    padding: [u32; 5],
    attrs: [LineConfigAttribute; 10],
}

/// `struct gpio_v2_line_request`.
#[repr(C)]
struct LineRequest {
    offsets: [u32; 64],
    consumer: [u8; 32],
    config: LineConfig,
    num_lines: u32,
    event_buffer_size: u32,
    padding: [u32; 5],
    fd: i32,
}

/// `struct gpio_v2_line_values`.
#[repr(C)]
#[derive(Default)]
struct LineValues {
    bits: u64,
    mask: u64,
}

// The ioctl wrappers stay private: they are unsafe and take raw pointers.
#[allow(unreachable_pub, missing_docs)]
mod ioctl {
    nix::ioctl_readwrite!(get_line, 0xB4, 0x07, super::LineRequest);
    nix::ioctl_readwrite!(get_values, 0xB4, 0x0E, super::LineValues);
    nix::ioctl_readwrite!(set_values, 0xB4, 0x0F, super::LineValues);
}

/// Errors of [`GpioLine`].
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// The chip could not be opened (wrong path, permissions).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The chip's path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel refused the line (`EBUSY`: another user holds it, `EINVAL`: no such line,
    /// `ENOTTY`: not a GPIO chip).
    #[error("cannot request line {offset} of {path}: {errno}")]
    Request {
        /// The chip's path.
        path: String,
        /// The line.
        offset: u32,
        /// The kernel's error.
        errno: Errno,
    },
    /// Reading or setting the value failed.
    #[error("GPIO line {offset}: {errno}")]
    Value {
        /// The line.
        offset: u32,
        /// The kernel's error.
        errno: Errno,
    },
}

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// One requested GPIO line. Owns the kernel's line file descriptor.
#[derive(Debug)]
pub struct GpioLine {
    line: File,
    offset: u32,
}

impl GpioLine {
    /// Requests line `offset` of `chip` (e.g. `/dev/gpiochip0`) as an output, initially
    /// inactive; `consumer` names the user in `gpioinfo`.
    pub fn output(chip: &Path, offset: u32, consumer: &str) -> Result<Self, GpioError> {
        let mut line = Self::request(chip, offset, consumer, FLAG_OUTPUT)?;
        line.set(false)?;
        Ok(line)
    }

    /// Requests line `offset` of `chip` as an input; `pull_up` turns on the internal pull-up
    /// (a button to ground), `active_low` reads a low level as high.
    pub fn input(
        chip: &Path,
        offset: u32,
        consumer: &str,
        pull_up: bool,
        active_low: bool,
    ) -> Result<Self, GpioError> {
        let mut flags = FLAG_INPUT;
        if pull_up {
            flags |= FLAG_BIAS_PULL_UP;
        }
        if active_low {
            flags |= FLAG_ACTIVE_LOW;
        }
        Self::request(chip, offset, consumer, flags)
    }

    fn request(chip: &Path, offset: u32, consumer: &str, flags: u64) -> Result<Self, GpioError> {
        let path = chip.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(chip)
            .map_err(|source| GpioError::Open {
                path: path.clone(),
                source,
            })?;
        let mut request = LineRequest {
            offsets: [0; 64],
            consumer: [0; 32],
            config: LineConfig {
                flags,
                ..LineConfig::default()
            },
            num_lines: 1,
            event_buffer_size: 0,
            padding: [0; 5],
            fd: -1,
        };
        request.offsets[0] = offset;
        // NUL-terminated, truncated to 31 bytes.
        for (dst, src) in request.consumer.iter_mut().zip(consumer.bytes().take(31)) {
            *dst = src;
        }
        // SAFETY: `request` is a valid `gpio_v2_line_request` the kernel reads and fills in
        // (its `fd`) during the call; the chip's fd is open.
        #[allow(unsafe_code)]
        let r = unsafe { ioctl::get_line(file.as_raw_fd(), &mut request) };
        r.map_err(|errno| GpioError::Request {
            path,
            offset,
            errno,
        })?;
        // SAFETY: on success the kernel returned a new file descriptor for the line, owned by
        // nobody else.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(request.fd) };
        Ok(Self {
            line: File::from(fd),
            offset,
        })
    }

    /// The line's offset on its chip.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    fn set(&mut self, active: bool) -> Result<(), GpioError> {
        let mut values = LineValues {
            bits: u64::from(active),
            mask: 1,
        };
        // SAFETY: `values` is a valid `gpio_v2_line_values` for the call; the fd is the line's.
        #[allow(unsafe_code)]
        let r = unsafe { ioctl::set_values(self.line.as_raw_fd(), &mut values) };
        r.map(drop).map_err(|errno| GpioError::Value {
            offset: self.offset,
            errno,
        })
    }

    fn get(&mut self) -> Result<bool, GpioError> {
        let mut values = LineValues { bits: 0, mask: 1 };
        // SAFETY: as in `set`; the kernel fills in `bits`.
        #[allow(unsafe_code)]
        let r = unsafe { ioctl::get_values(self.line.as_raw_fd(), &mut values) };
        r.map_err(|errno| GpioError::Value {
            offset: self.offset,
            errno,
        })?;
        Ok(values.bits & 1 == 1)
    }
}

impl ErrorType for GpioLine {
    type Error = GpioError;
}

impl OutputPin for GpioLine {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.set(false)
    }

    fn set_high(&mut self) -> Result<(), GpioError> {
        self.set(true)
    }
}

impl InputPin for GpioLine {
    fn is_high(&mut self) -> Result<bool, GpioError> {
        self.get()
    }

    fn is_low(&mut self) -> Result<bool, GpioError> {
        self.get().map(|v| !v)
    }
}

/// The sizes of the uAPI structures, for the layout test (`linux/gpio.h`: 592 and 16 bytes).
#[doc(hidden)]
pub fn uapi_sizes() -> (usize, usize) {
    (
        core::mem::size_of::<LineRequest>(),
        core::mem::size_of::<LineValues>(),
    )
}
