//! The ATECC608 driver against a scripted I²C bus, and the software element against p256.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use wisp_firmware::se::atecc::{self, Error, Status, WAKE_RESPONSE, max_polls, opcode};
use wisp_firmware::se::crc::crc16;
use wisp_firmware::se::{
    Atecc608, AteccConfig, Attestation, SecureElement, SoftSeError, SoftSecureElement, attest,
    attestation_digest,
};

const ADDR: u8 = atecc::DEFAULT_ADDRESS;
const NACK: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

fn wake() -> Vec<T> {
    vec![
        T::write(0x00, vec![0x00]).with_error(NACK),
        T::read(ADDR, WAKE_RESPONSE.to_vec()),
    ]
}

fn sleep() -> T {
    T::write(ADDR, vec![0x01])
}

fn command(op: u8, p1: u8, p2: u16, data: &[u8]) -> T {
    let mut packet = vec![u8::try_from(7 + data.len()).unwrap(), op, p1];
    packet.extend(p2.to_le_bytes());
    packet.extend(data);
    packet.extend(crc16(&packet));
    packet.insert(0, 0x03);
    T::write(ADDR, packet)
}

/// A response packet as two reads: count byte, then the rest.
fn response(data: &[u8]) -> Vec<T> {
    let mut packet = vec![u8::try_from(data.len() + 3).unwrap()];
    packet.extend(data);
    packet.extend(crc16(&packet));
    vec![
        T::read(ADDR, packet[..1].to_vec()),
        T::read(ADDR, packet[1..].to_vec()),
    ]
}

fn status(code: u8) -> Vec<T> {
    response(&[code])
}

fn driver(script: &[T]) -> Atecc608<Mock, NoopDelay> {
    Atecc608::new(Mock::new(script), NoopDelay::new(), AteccConfig::default())
}

fn finish(dev: Atecc608<Mock, NoopDelay>) {
    dev.release().0.done();
}

fn config_block() -> [u8; 32] {
    let mut block = [0u8; 32];
    block[..4].copy_from_slice(&[0x01, 0x23, 0xA1, 0xB2]);
    block[4..8].copy_from_slice(&[0x00, 0x00, 0x60, 0x02]); // revision, not part of the serial
    block[8..13].copy_from_slice(&[0xC3, 0xD4, 0xE5, 0xF6, 0xEE]);
    block
}

const SERIAL: [u8; 9] = [0x01, 0x23, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0xEE];

#[test]
fn reads_the_serial_number() {
    let mut script = wake();
    script.push(command(opcode::READ, 0x80, 0x0000, &[]));
    script.extend(response(&config_block()));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.serial(), Ok(SERIAL));
    finish(dev);
}

#[test]
fn polls_while_the_chip_is_busy() {
    let random: [u8; 32] = core::array::from_fn(|i| u8::try_from(i * 7).unwrap());
    let mut script = wake();
    script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
    script.push(T::read(ADDR, vec![0]).with_error(NACK));
    script.push(T::read(ADDR, vec![0]).with_error(NACK));
    script.extend(response(&random));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.random(), Ok(random));
    finish(dev);
}

#[test]
fn times_out_when_the_chip_never_answers() {
    let config = AteccConfig::default();
    let polls = max_polls(&config, opcode::RANDOM);
    assert_eq!(polls, 12, "1 ms, then every 2 ms up to 23 ms");
    let mut script = wake();
    script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
    script.extend((0..polls).map(|_| T::read(ADDR, vec![0]).with_error(NACK)));
    // Still busy: the sleep word is refused too, and that is not reported.
    script.push(sleep().with_error(NACK));
    let mut dev = driver(&script);
    assert_eq!(
        dev.random(),
        Err(Error::Timeout),
        "timeouts are not retried"
    );
    finish(dev);
}

fn corrupt(mut reads: Vec<T>, data: &[u8]) -> Vec<T> {
    // Same count, data with a flipped bit, and the CRC of the original: fails the check.
    reads.pop();
    let mut rest = data.to_vec();
    rest[0] ^= 0x01;
    let mut packet = vec![u8::try_from(data.len() + 3).unwrap()];
    packet.extend(data);
    let crc = crc16(&packet);
    rest.extend(crc);
    reads.push(T::read(ADDR, rest));
    reads
}

#[test]
fn crc_error_in_a_response_is_retried() {
    let random = [0x5Au8; 32];
    let mut script = wake();
    script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
    script.extend(corrupt(response(&random), &random));
    script.push(sleep());
    script.extend(wake());
    script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
    script.extend(response(&random));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.random(), Ok(random));
    finish(dev);
}

#[test]
fn crc_errors_on_every_attempt_give_crc() {
    let random = [0x5Au8; 32];
    let mut script = Vec::new();
    for _ in 0..4 {
        script.extend(wake());
        script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
        script.extend(corrupt(response(&random), &random));
        script.push(sleep());
    }
    let mut dev = driver(&script);
    assert_eq!(dev.random(), Err(Error::Crc), "1 attempt + 3 retries");
    finish(dev);
}

#[test]
fn garbled_wake_response_is_retried() {
    let mut script = vec![
        T::write(0x00, vec![0x00]).with_error(NACK),
        T::read(ADDR, vec![0x04, 0x11, 0x33, 0x42]),
        sleep(),
    ];
    script.extend(wake());
    script.push(command(opcode::READ, 0x80, 0x0000, &[]));
    script.extend(response(&config_block()));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.serial(), Ok(SERIAL));
    finish(dev);
}

#[test]
fn missing_chip_is_no_device() {
    let config = AteccConfig {
        retries: 1,
        ..AteccConfig::default()
    };
    let mut script = Vec::new();
    for _ in 0..2 {
        script.push(T::write(0x00, vec![0x00]).with_error(NACK));
        script.push(T::read(ADDR, vec![0; 4]).with_error(NACK));
        script.push(sleep().with_error(NACK));
    }
    let mut dev = Atecc608::new(Mock::new(&script), NoopDelay::new(), config);
    assert_eq!(dev.serial(), Err(Error::NoDevice));
    finish(dev);
}

#[test]
fn status_codes_are_reported() {
    // Execution error (e.g. slot not configured for signing): returned at once.
    let digest = [0x11u8; 32];
    let mut script = wake();
    script.push(command(opcode::NONCE, 0x03, 0x0000, &digest));
    script.extend(status(0x00));
    script.push(command(opcode::SIGN, 0x80, 0x0002, &[]));
    script.extend(status(0x0F));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(
        dev.sign_digest(2, &digest),
        Err(Error::Status(Status::ExecutionError))
    );
    finish(dev);

    // Parse error: returned at once too.
    let mut script = wake();
    script.push(command(opcode::GENKEY, 0x00, 0x0001, &[]));
    script.extend(status(0x03));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.public_key(1), Err(Error::Status(Status::ParseError)));
    finish(dev);

    for code in [0x01, 0x05, 0x07, 0x08, 0x0F, 0x11, 0xEE, 0xFF, 0x42] {
        assert_eq!(Status::from_code(code).map(Status::code), Some(code));
    }
    assert_eq!(Status::from_code(0x00), None);
}

#[test]
fn comm_error_status_is_retried() {
    // The chip saw a corrupted command (status 0xFF) and then the watchdog status (0xEE).
    let key: [u8; 64] = core::array::from_fn(|i| u8::try_from(i).unwrap());
    let mut script = Vec::new();
    for code in [0xFF, 0xEE] {
        script.extend(wake());
        script.push(command(opcode::GENKEY, 0x00, 0x0000, &[]));
        script.extend(status(code));
        script.push(sleep());
    }
    script.extend(wake());
    script.push(command(opcode::GENKEY, 0x00, 0x0000, &[]));
    script.extend(response(&key));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.public_key(0), Ok(key));
    finish(dev);
}

#[test]
fn signs_through_nonce_passthrough() {
    let digest: [u8; 32] = core::array::from_fn(|i| u8::try_from(255 - i).unwrap());
    let signature = [0xA5u8; 64];
    let mut script = wake();
    script.push(command(opcode::NONCE, 0x03, 0x0000, &digest));
    script.extend(status(0x00));
    script.push(command(opcode::SIGN, 0x80, 0x0000, &[]));
    script.extend(response(&signature));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.sign_digest(0, &digest), Ok(signature));
    finish(dev);
}

#[test]
fn bad_arguments_and_other_bus_errors() {
    let mut dev = driver(&[]);
    assert_eq!(dev.public_key(16), Err(Error::InvalidSlot(16)));
    assert_eq!(dev.sign_digest(200, &[0; 32]), Err(Error::InvalidSlot(200)));
    finish(dev);

    // Arbitration loss is not a NACK: reported as a bus error, not retried.
    let script = [
        T::write(0x00, vec![0x00]).with_error(NACK),
        T::read(ADDR, vec![0; 4]).with_error(ErrorKind::ArbitrationLoss),
        sleep(),
    ];
    let mut dev = driver(&script);
    assert_eq!(dev.random(), Err(Error::Bus(ErrorKind::ArbitrationLoss)));
    finish(dev);

    // A valid response of the wrong length.
    let mut script = wake();
    script.push(command(opcode::RANDOM, 0x00, 0x0000, &[]));
    script.extend(response(&[0u8; 4]));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.random(), Err(Error::BadResponse));
    finish(dev);
}

#[test]
fn reads_the_revision() {
    let mut script = wake();
    // The exact frame from the datasheet / captures: 03 07 30 00 00 00 03 5D.
    script.push(T::write(
        ADDR,
        vec![0x03, 0x07, 0x30, 0x00, 0x00, 0x00, 0x03, 0x5D],
    ));
    script.push(T::read(ADDR, vec![0x07]));
    script.push(T::read(ADDR, vec![0x00, 0x00, 0x60, 0x02, 0x80, 0x38]));
    script.push(sleep());
    let mut dev = driver(&script);
    assert_eq!(dev.revision(), Ok([0x00, 0x00, 0x60, 0x02]));
    finish(dev);
}

const SECRET: [u8; 32] = [
    0xC9, 0xAF, 0xA9, 0xD8, 0x45, 0xBA, 0x75, 0x16, 0x6B, 0x5C, 0x21, 0x57, 0x67, 0xB1, 0xD6, 0x93,
    0x4E, 0x50, 0xC3, 0xDB, 0x36, 0xE8, 0x9B, 0x12, 0x7B, 0x8A, 0x62, 0x2B, 0x12, 0x0F, 0x67, 0x21,
];

#[test]
fn soft_element_signs_verifiable_attestations() {
    let mut se = SoftSecureElement::new(&SECRET, SERIAL).unwrap();
    let node_pk = [0x42u8; 32];
    let att = attest(&mut se, 0, &node_pk, "acme-radio").unwrap();
    assert_eq!(att.serial, SERIAL);

    // The RFC 6979 P-256 test key (A.2.5): its public key is known.
    assert_eq!(
        hex::encode(att.device_public_key),
        "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6\
         7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
    );

    // Verify with p256 directly, over the documented digest (prehash).
    let digest = attestation_digest(&node_pk, &SERIAL, "acme-radio").unwrap();
    let mut sec1 = vec![0x04];
    sec1.extend(att.device_public_key);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&att.signature).unwrap();
    key.verify_prehash(&digest, &sig).unwrap();

    assert!(att.verify(&node_pk, "acme-radio"));
    assert!(!att.verify(&node_pk, "acme-radio2"), "maker is bound");
    assert!(!att.verify(&[0x43; 32], "acme-radio"), "node key is bound");
    let mut forged = att;
    forged.serial[8] ^= 1;
    assert!(!forged.verify(&node_pk, "acme-radio"), "serial is bound");

    // Deterministic signatures: the same statement signs to the same bytes.
    let again = attest(&mut se, 0, &node_pk, "acme-radio").unwrap();
    assert_eq!(again, att);
}

#[test]
fn soft_element_errors_and_randomness() {
    assert_eq!(
        SoftSecureElement::new(&[0; 32], SERIAL).err(),
        Some(SoftSeError::InvalidSecret)
    );
    assert_eq!(
        SoftSecureElement::new(&[0xFF; 32], SERIAL).err(),
        Some(SoftSeError::InvalidSecret),
        "above the group order"
    );
    let mut se = SoftSecureElement::new(&SECRET, SERIAL).unwrap();
    assert_eq!(se.public_key(1), Err(SoftSeError::UnknownSlot(1)));
    assert_eq!(
        se.sign_digest(3, &[0; 32]),
        Err(SoftSeError::UnknownSlot(3))
    );
    assert!(matches!(
        attest(&mut se, 0, &[0; 32], &"x".repeat(40)),
        Err(wisp_firmware::se::AttestError::MakerTooLong(_))
    ));

    let a = se.random().unwrap();
    let b = se.random().unwrap();
    assert_ne!(a, b);
    let mut twin = SoftSecureElement::new(&SECRET, SERIAL).unwrap();
    assert_eq!(twin.random().unwrap(), a, "deterministic for a secret");
    twin.reseed(b"boot entropy");
    assert_ne!(twin.random().unwrap(), b, "reseeding changes the stream");
    assert!(
        !format!("{se:?}").contains("key"),
        "Debug does not leak the key"
    );
}

#[test]
fn attestation_over_the_atecc_driver() {
    // The same `attest` helper drives the chip: serial, public key, then Nonce + Sign.
    let node_pk = [9u8; 32];
    let digest = attestation_digest(&node_pk, &SERIAL, "acme").unwrap();
    let key = [0x33u8; 64];
    let signature = [0x44u8; 64];
    let mut script = wake();
    script.push(command(opcode::READ, 0x80, 0x0000, &[]));
    script.extend(response(&config_block()));
    script.push(sleep());
    script.extend(wake());
    script.push(command(opcode::GENKEY, 0x00, 0x0000, &[]));
    script.extend(response(&key));
    script.push(sleep());
    script.extend(wake());
    script.push(command(opcode::NONCE, 0x03, 0x0000, &digest));
    script.extend(status(0x00));
    script.push(command(opcode::SIGN, 0x80, 0x0000, &[]));
    script.extend(response(&signature));
    script.push(sleep());
    let mut dev = driver(&script);
    let att = attest(&mut dev, 0, &node_pk, "acme").unwrap();
    assert_eq!(
        att,
        Attestation {
            serial: SERIAL,
            device_public_key: key,
            signature
        }
    );
    finish(dev);
}
