//! The CRC-16 of the ATECC (CryptoAuthentication) I/O protocol.
//!
//! Polynomial 0x8005, initial value 0, data bits fed least significant first, no final XOR;
//! the result is sent least significant byte first. This is not one of the catalogued CRC-16
//! variants (the input is reflected, the output is not), so it is written out here rather than
//! taken from a CRC crate; the tests pin it to frames captured from real devices.

/// The CRC of `data` as the two bytes that go on the wire (LSB first).
pub fn crc16(data: &[u8]) -> [u8; 2] {
    let mut reg: u16 = 0;
    for &byte in data {
        for bit in 0..8 {
            let data_bit = (byte >> bit) & 1 == 1;
            let top_bit = reg & 0x8000 != 0;
            reg <<= 1;
            if data_bit != top_bit {
                reg ^= 0x8005;
            }
        }
    }
    reg.to_le_bytes()
}

/// True when `packet` (count, data…, CRC LSB, CRC MSB) carries a correct CRC.
pub fn check(packet: &[u8]) -> bool {
    match packet.len().checked_sub(2) {
        Some(n) if n > 0 => crc16(&packet[..n]) == [packet[n], packet[n + 1]],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets as they appear on the bus (without the 0x03 word address), last two bytes CRC.
    const KNOWN_FRAMES: &[&[u8]] = &[
        &[0x04, 0x11, 0x33, 0x43], // wake response ("after wake" status)
        &[0x04, 0x00, 0x03, 0x40], // status: success
        &[0x04, 0x01, 0x00, 0xC3], // status: CheckMac/Verify miscompare
        &[0x04, 0x0F, 0x23, 0x42], // status: execution error
        &[0x07, 0x30, 0x00, 0x00, 0x00, 0x03, 0x5D], // Info (revision) command
        &[0x07, 0x1B, 0x00, 0x00, 0x00, 0x24, 0xCD], // Random command
        &[0x07, 0x1C, 0x00, 0x00, 0x00, 0x0A, 0x4D], // DeriveKey command
        &[0x07, 0x15, 0x02, 0x00, 0x00, 0x30, 0x08], // GenDig command
        &[0x07, 0x00, 0x00, 0x60, 0x02, 0x80, 0x38], // Info response of an ATECC608 (0x6002)
    ];

    #[test]
    fn matches_frames_from_real_devices() {
        for frame in KNOWN_FRAMES {
            let n = frame.len() - 2;
            assert_eq!(crc16(&frame[..n]), [frame[n], frame[n + 1]], "{frame:02X?}");
            assert!(check(frame));
        }
    }

    #[test]
    fn detects_corruption() {
        for frame in KNOWN_FRAMES {
            for i in 0..frame.len() {
                for bit in 0..8 {
                    let mut bad = frame.to_vec();
                    bad[i] ^= 1 << bit;
                    assert!(!check(&bad), "flip bit {bit} of byte {i} in {frame:02X?}");
                }
            }
        }
        assert!(!check(&[]));
        assert!(!check(&[0x00, 0x00]));
    }
}
