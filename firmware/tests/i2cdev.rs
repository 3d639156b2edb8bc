//! i2c-dev without an I²C bus (this machine has none): opening, the transfer's refusal by a
//! file that is not an adapter, and the secure element over it failing cleanly.
#![cfg(feature = "linux")]
#![allow(clippy::unwrap_used)]

use embedded_hal::i2c::{Error as _, ErrorKind, I2c, Operation};
use nix::errno::Errno;
use wisp_firmware::i2cdev::{I2cDev, I2cDevError, MAX_MESSAGES, SleepDelay};
use wisp_firmware::se::{Atecc608, AteccConfig, SecureElement};

#[test]
fn opening_a_missing_adapter_names_it() {
    let e = I2cDev::open("/dev/i2c-99".as_ref()).unwrap_err();
    assert!(matches!(e, I2cDevError::Open { .. }), "{e}");
    assert!(e.to_string().contains("/dev/i2c-99"), "{e}");
}

#[test]
fn a_file_that_is_not_an_adapter_refuses_the_transfer() {
    let mut bus = I2cDev::open("/dev/null".as_ref()).unwrap();
    // Nothing to send is nothing done.
    bus.transaction(0x60, &mut []).unwrap();
    let mut buf = [0u8; 4];
    let e = bus
        .transaction(
            0x60,
            &mut [Operation::Write(&[0x03, 0x07]), Operation::Read(&mut buf)],
        )
        .unwrap_err();
    assert!(matches!(e, I2cDevError::Transfer(Errno::ENOTTY)), "{e}");
    assert_eq!(e.kind(), ErrorKind::Other);
    let mut ops: Vec<Operation<'_>> = (0..=MAX_MESSAGES).map(|_| Operation::Write(&[])).collect();
    assert!(matches!(
        bus.transaction(0x60, &mut ops),
        Err(I2cDevError::TooLarge)
    ));
    // The kernel's fault codes map to embedded-hal's kinds.
    assert!(matches!(
        I2cDevError::Transfer(Errno::ENXIO).kind(),
        ErrorKind::NoAcknowledge(_)
    ));
    assert_eq!(
        I2cDevError::Transfer(Errno::EAGAIN).kind(),
        ErrorKind::ArbitrationLoss
    );
}

#[test]
fn the_secure_element_on_a_bus_that_is_not_there_fails_without_hanging() {
    let bus = I2cDev::open("/dev/null".as_ref()).unwrap();
    let mut se = Atecc608::new(bus, SleepDelay, AteccConfig::default());
    let started = std::time::Instant::now();
    let e = se.serial().unwrap_err();
    println!("{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}
