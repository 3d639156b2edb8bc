//! ATECC608-class secure element over I²C.
//!
//! # Protocol
//!
//! - **Wake**: the chip sleeps until SDA is held low for tWLO ≥ 60 µs. Writing to address 0x00
//!   does that on a 100 kHz bus (nine low bit times = 90 µs; nobody acknowledges, so the NACK is
//!   expected and ignored). After tWHI ≈ 1.5 ms the chip answers a 4-byte read with
//!   `04 11 33 43`: count, status 0x11 "after wake", CRC. On a 400 kHz bus the address byte is
//!   too short to wake the chip: run the bus at 100 kHz or wake it through a GPIO on SDA.
//! - **Command**: word address 0x03, then the packet `count, opcode, param1, param2 (LE u16),
//!   data…, CRC-16` where count covers itself through the CRC ([`super::crc`]).
//! - **Execution**: the chip NACKs reads while it computes. The driver waits
//!   [`AteccConfig::poll_initial_us`], then polls every [`AteccConfig::poll_interval_us`] until
//!   the opcode's maximum execution time ([`max_execution_us`]) has passed, then gives up with
//!   [`Error::Timeout`].
//! - **Response**: a count byte is read first, then the rest; the CRC covers count and data.
//!   A 4-byte response carries a status byte ([`Status`]).
//! - **Sleep**: every operation ends with the sleep word (0x01), which powers the chip down and
//!   clears its volatile state (TempKey), so each operation starts from a known wake. The idle
//!   word (0x02) is available for callers that need TempKey kept ([`Atecc608::idle`]).
//!
//! # Retries
//!
//! An operation (wake → commands → sleep) is retried whole, up to [`AteccConfig::retries`]
//! more times, when the failure is one a second attempt can cure: a CRC mismatch either way
//! (the chip reports its own as status 0xFF), no answer at wake, an unexpected wake or watchdog
//! status mid-operation. Execution errors, parse errors, timeouts and other bus errors are
//! returned at once.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, I2c};

use super::SecureElement;
use super::crc::{check, crc16};

/// The default 7-bit I²C address (0xC0 in 8-bit notation).
pub const DEFAULT_ADDRESS: u8 = 0x60;

/// What a freshly woken chip answers.
pub const WAKE_RESPONSE: [u8; 4] = [0x04, 0x11, 0x33, 0x43];

/// Word address bytes (the first byte of every write).
pub mod word {
    /// Sleep: power down, clear volatile state.
    pub const SLEEP: u8 = 0x01;
    /// Idle: stop the watchdog, keep TempKey.
    pub const IDLE: u8 = 0x02;
    /// A command packet follows.
    pub const COMMAND: u8 = 0x03;
}

/// Command opcodes used here.
pub mod opcode {
    /// Read a zone.
    pub const READ: u8 = 0x02;
    /// Load TempKey (pass-through mode) or generate a nonce.
    pub const NONCE: u8 = 0x16;
    /// 32 random bytes.
    pub const RANDOM: u8 = 0x1B;
    /// Device revision.
    pub const INFO: u8 = 0x30;
    /// Generate a key or compute a slot's public key.
    pub const GENKEY: u8 = 0x40;
    /// ECDSA sign.
    pub const SIGN: u8 = 0x41;
}

/// The longest time an opcode may execute, in µs.
///
/// Conservative bounds for the ATECC608 with its default clock divider (the 608 is slower than
/// the 508A for key operations). Polling returns as soon as the chip answers, so a generous
/// bound costs nothing in the normal case.
pub const fn max_execution_us(op: u8) -> u32 {
    match op {
        opcode::READ | opcode::INFO => 5_000,
        opcode::NONCE => 20_000,
        opcode::RANDOM => 23_000,
        opcode::GENKEY => 215_000,
        opcode::SIGN => 220_000,
        _ => 250_000,
    }
}

/// A status code from a 4-byte response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0x01: CheckMac or Verify miscompare.
    Miscompare,
    /// 0x03: the command was malformed (bad opcode, parameter or length).
    ParseError,
    /// 0x05: ECC computation failed (retry with different inputs).
    EccFault,
    /// 0x07: the self test failed.
    SelfTestError,
    /// 0x08: the random number generator's health test failed.
    HealthTestError,
    /// 0x0F: the command could not execute (wrong slot configuration, locked zone, …).
    ExecutionError,
    /// 0x11: the chip has just woken (mid-operation: it slept or reset).
    AfterWake,
    /// 0xEE: the watchdog is about to expire.
    Watchdog,
    /// 0xFF: the chip received a bad CRC or malformed packet.
    CommError,
    /// Any other non-zero code.
    Other(u8),
}

impl Status {
    /// The status for a code; `None` for 0x00 (success).
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => return None,
            0x01 => Status::Miscompare,
            0x03 => Status::ParseError,
            0x05 => Status::EccFault,
            0x07 => Status::SelfTestError,
            0x08 => Status::HealthTestError,
            0x0F => Status::ExecutionError,
            0x11 => Status::AfterWake,
            0xEE => Status::Watchdog,
            0xFF => Status::CommError,
            other => Status::Other(other),
        })
    }

    /// The code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Status::Miscompare => 0x01,
            Status::ParseError => 0x03,
            Status::EccFault => 0x05,
            Status::SelfTestError => 0x07,
            Status::HealthTestError => 0x08,
            Status::ExecutionError => 0x0F,
            Status::AfterWake => 0x11,
            Status::Watchdog => 0xEE,
            Status::CommError => 0xFF,
            Status::Other(c) => c,
        }
    }
}

/// Errors of the ATECC driver, generic over the I²C error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// Nothing acknowledged the chip's address after a wake: no chip, wrong address, or a wake
    /// pulse too short (bus faster than 100 kHz).
    #[error("no secure element answers at the configured address")]
    NoDevice,
    /// A response failed its CRC check, on every attempt.
    #[error("secure element response failed its CRC check")]
    Crc,
    /// The chip reported an error status.
    #[error("secure element status {0:?}")]
    Status(Status),
    /// The chip did not answer within the opcode's maximum execution time.
    #[error("secure element did not finish in time")]
    Timeout,
    /// A response had a valid CRC but an unexpected length.
    #[error("secure element response has an unexpected length")]
    BadResponse,
    /// A key slot beyond 0..=15.
    #[error("key slot {0} does not exist (0..=15)")]
    InvalidSlot(u8),
    /// The I²C bus failed (other than a NACK).
    #[error("I2C bus error: {0:?}")]
    Bus(E),
}

impl<E> Error<E> {
    /// Whether a fresh wake and a second attempt may cure this.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Crc
                | Error::NoDevice
                | Error::Status(Status::CommError | Status::Watchdog | Status::AfterWake)
        )
    }
}

/// Driver settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AteccConfig {
    /// 7-bit I²C address. Default [`DEFAULT_ADDRESS`].
    pub address: u8,
    /// Extra attempts of a whole operation after a transient failure. Default 3.
    pub retries: u8,
    /// tWHI: wait between the wake pulse and the wake read, µs. Default 1 500.
    pub wake_delay_us: u32,
    /// Wait after sending a command before the first poll, µs. Default 1 000.
    pub poll_initial_us: u32,
    /// Wait between polls while the chip is busy, µs. Default 2 000.
    pub poll_interval_us: u32,
}

impl Default for AteccConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS,
            retries: 3,
            wake_delay_us: 1_500,
            poll_initial_us: 1_000,
            poll_interval_us: 2_000,
        }
    }
}

/// How many reads the driver makes before it gives up on `op` (for tests and diagnostics).
pub const fn max_polls(config: &AteccConfig, op: u8) -> u32 {
    let max = max_execution_us(op);
    let interval = if config.poll_interval_us == 0 {
        1
    } else {
        config.poll_interval_us
    };
    let after_first = max.saturating_sub(config.poll_initial_us);
    1 + after_first.div_ceil(interval)
}

// Longest packet we send: word address, count, opcode, p1, p2 (2), 32 data bytes, CRC (2).
const MAX_TX: usize = 1 + 7 + 32;
// Longest response we read: count, 64 data bytes, CRC (2).
const MAX_RX: usize = 1 + 64 + 2;

/// The ATECC608 driver. See the [module docs](self).
#[derive(Debug)]
pub struct Atecc608<I, D> {
    i2c: I,
    delay: D,
    config: AteccConfig,
}

fn is_nack<E: embedded_hal::i2c::Error>(e: &E) -> bool {
    matches!(e.kind(), ErrorKind::NoAcknowledge(_))
}

impl<I: I2c, D: DelayNs> Atecc608<I, D> {
    /// Takes the bus and a delay.
    pub fn new(i2c: I, delay: D, config: AteccConfig) -> Self {
        Self { i2c, delay, config }
    }

    /// Gives the bus and the delay back.
    pub fn release(self) -> (I, D) {
        (self.i2c, self.delay)
    }

    /// Wakes the chip and checks its wake response.
    pub fn wake(&mut self) -> Result<(), Error<I::Error>> {
        // Address 0x00 is never acknowledged: the write exists only to hold SDA low.
        let _ = self.i2c.write(0x00, &[0x00]);
        self.delay.delay_us(self.config.wake_delay_us);
        let mut response = [0u8; 4];
        self.i2c
            .read(self.config.address, &mut response)
            .map_err(|e| {
                if is_nack(&e) {
                    Error::NoDevice
                } else {
                    Error::Bus(e)
                }
            })?;
        if response == WAKE_RESPONSE {
            return Ok(());
        }
        if response[0] != 0x04 || !check(&response) {
            return Err(Error::Crc);
        }
        // A valid status packet other than "after wake": e.g. a failed power-on self test.
        Err(Status::from_code(response[1]).map_or(Error::BadResponse, Error::Status))
    }

    /// Sends the sleep word: the chip powers down and forgets TempKey.
    pub fn sleep(&mut self) -> Result<(), Error<I::Error>> {
        self.word(word::SLEEP)
    }

    /// Sends the idle word: the chip stops its watchdog but keeps TempKey.
    pub fn idle(&mut self) -> Result<(), Error<I::Error>> {
        self.word(word::IDLE)
    }

    fn word(&mut self, w: u8) -> Result<(), Error<I::Error>> {
        self.i2c.write(self.config.address, &[w]).map_err(|e| {
            if is_nack(&e) {
                Error::NoDevice
            } else {
                Error::Bus(e)
            }
        })
    }

    /// Sends one command to an awake chip and reads its response into `out`, which must be
    /// exactly the response's data length (0 for commands that answer with a status).
    pub fn command(
        &mut self,
        op: u8,
        param1: u8,
        param2: u16,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(), Error<I::Error>> {
        // Packet lengths are fixed by the callers in this module; a longer one is a bug here.
        if data.len() > MAX_TX - 8 || out.len() > MAX_RX - 3 {
            return Err(Error::BadResponse);
        }
        let mut tx = [0u8; MAX_TX];
        let count = 7 + data.len();
        tx[0] = word::COMMAND;
        tx[1] = u8::try_from(count).map_err(|_| Error::BadResponse)?;
        tx[2] = op;
        tx[3] = param1;
        tx[4..6].copy_from_slice(&param2.to_le_bytes());
        tx[6..6 + data.len()].copy_from_slice(data);
        let crc = crc16(&tx[1..6 + data.len()]);
        tx[6 + data.len()..8 + data.len()].copy_from_slice(&crc);
        let packet = &tx[..1 + count];
        self.i2c.write(self.config.address, packet).map_err(|e| {
            if is_nack(&e) {
                Error::NoDevice
            } else {
                Error::Bus(e)
            }
        })?;

        let count = self.poll_count(op)?;
        let mut rx = [0u8; MAX_RX];
        rx[0] = count;
        let n = usize::from(count);
        // A count outside what any response can be means the byte itself was garbled.
        if !(4..=MAX_RX).contains(&n) {
            return Err(Error::Crc);
        }
        self.i2c
            .read(self.config.address, &mut rx[1..n])
            .map_err(Error::Bus)?;
        let packet = &rx[..n];
        if !check(packet) {
            return Err(Error::Crc);
        }
        if n == 4 {
            if let Some(status) = Status::from_code(packet[1]) {
                return Err(Error::Status(status));
            }
            return if out.is_empty() {
                Ok(())
            } else {
                Err(Error::BadResponse)
            };
        }
        if n != out.len() + 3 {
            return Err(Error::BadResponse);
        }
        out.copy_from_slice(&packet[1..n - 2]);
        Ok(())
    }

    // Reads the count byte once the chip stops NACKing.
    fn poll_count(&mut self, op: u8) -> Result<u8, Error<I::Error>> {
        let max = max_execution_us(op);
        let mut waited = self.config.poll_initial_us;
        self.delay.delay_us(waited);
        loop {
            let mut count = [0u8; 1];
            match self.i2c.read(self.config.address, &mut count) {
                Ok(()) => return Ok(count[0]),
                Err(e) if is_nack(&e) => {
                    if waited >= max {
                        return Err(Error::Timeout);
                    }
                    let step = self.config.poll_interval_us.max(1);
                    self.delay.delay_us(step);
                    waited = waited.saturating_add(step);
                }
                Err(e) => return Err(Error::Bus(e)),
            }
        }
    }

    /// Runs `op` between a wake and a sleep, retrying transient failures.
    fn operation<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, Error<I::Error>>,
    ) -> Result<T, Error<I::Error>> {
        let mut attempt = 0;
        loop {
            let result = self.wake().and_then(|()| op(self));
            // Always end with sleep, whatever happened: it returns the chip to a known state so
            // the next wake answers 04 11 33 43. A sleep that fails (chip still busy after a
            // timeout, or absent) changes nothing for the caller, so its result is not reported.
            let _ = self.sleep();
            match result {
                Err(e) if e.is_transient() && attempt < self.config.retries => attempt += 1,
                other => return other,
            }
        }
    }

    /// The device revision (Info command, mode 0x00), e.g. `00 00 60 02` for an ATECC608A.
    pub fn revision(&mut self) -> Result<[u8; 4], Error<I::Error>> {
        self.operation(|dev| {
            let mut rev = [0u8; 4];
            dev.command(opcode::INFO, 0x00, 0x0000, &[], &mut rev)?;
            Ok(rev)
        })
    }

    /// The first 32 bytes of the configuration zone (Read, 32-byte mode, block 0).
    pub fn config_block0(&mut self) -> Result<[u8; 32], Error<I::Error>> {
        self.operation(|dev| {
            let mut block = [0u8; 32];
            dev.command(opcode::READ, 0x80, 0x0000, &[], &mut block)?;
            Ok(block)
        })
    }
}

fn check_slot<E>(slot: u8) -> Result<u16, Error<E>> {
    if slot > 15 {
        Err(Error::InvalidSlot(slot))
    } else {
        Ok(u16::from(slot))
    }
}

impl<I: I2c, D: DelayNs> SecureElement for Atecc608<I, D> {
    type Error = Error<I::Error>;

    /// Configuration zone bytes 0..=3 and 8..=12.
    fn serial(&mut self) -> Result<[u8; 9], Self::Error> {
        let block = self.config_block0()?;
        let mut serial = [0u8; 9];
        serial[..4].copy_from_slice(&block[..4]);
        serial[4..].copy_from_slice(&block[8..13]);
        Ok(serial)
    }

    /// GenKey in public-key mode (0x00): computes the public key of the slot's private key.
    fn public_key(&mut self, slot: u8) -> Result<[u8; 64], Self::Error> {
        let key_id = check_slot(slot)?;
        self.operation(|dev| {
            let mut key = [0u8; 64];
            dev.command(opcode::GENKEY, 0x00, key_id, &[], &mut key)?;
            Ok(key)
        })
    }

    /// Nonce in pass-through mode (0x03) loads the digest into TempKey; Sign in external mode
    /// (0x80) signs TempKey with the slot's key. Both run within one wake, since sleep clears
    /// TempKey.
    fn sign_digest(&mut self, slot: u8, digest: &[u8; 32]) -> Result<[u8; 64], Self::Error> {
        let key_id = check_slot(slot)?;
        self.operation(|dev| {
            dev.command(opcode::NONCE, 0x03, 0x0000, digest, &mut [])?;
            let mut signature = [0u8; 64];
            dev.command(opcode::SIGN, 0x80, key_id, &[], &mut signature)?;
            Ok(signature)
        })
    }

    /// Random (mode 0x00). Before the configuration zone is locked the chip returns a fixed
    /// test pattern (`FF FF 00 00 …`), which this does not hide.
    fn random(&mut self) -> Result<[u8; 32], Self::Error> {
        self.operation(|dev| {
            let mut random = [0u8; 32];
            dev.command(opcode::RANDOM, 0x00, 0x0000, &[], &mut random)?;
            Ok(random)
        })
    }
}
