//! Varint value ranges (docs/PROTOCOL.md §2): a varint of a type's maximal length whose value
//! is above the type's range is refused, as are longer ones, in a bare integer and in a
//! message field alike.
#![allow(clippy::unwrap_used)]

use wisp_protocol::envelope::{EnvelopeError, decode_canonical, encode_payload};
use wisp_protocol::msg::{Heartbeat, Versions};

fn heartbeat(peers: u16) -> Heartbeat {
    Heartbeat {
        epoch: 7,
        seq: 1,
        uptime_s: 3600,
        sent_ms: 1_790_000_000_000,
        fix: None,
        cell: None,
        versions: Versions::new("0.1.0", "sim"),
        peers,
    }
}

fn refused<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) {
    let r = decode_canonical::<T>(bytes);
    assert!(
        matches!(
            r,
            Err(EnvelopeError::Decode(_) | EnvelopeError::NonCanonical)
        ),
        "{bytes:02x?} decoded as {}: {r:?}",
        std::any::type_name::<T>()
    );
}

#[test]
fn values_above_the_type_range_are_refused() {
    // The largest value of each type in its maximal length decodes...
    assert_eq!(
        decode_canonical::<u16>(&[0xff, 0xff, 0x03]).unwrap(),
        u16::MAX
    );
    assert_eq!(
        decode_canonical::<u32>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap(),
        u32::MAX
    );
    let mut u64_max = [0xffu8; 10];
    u64_max[9] = 0x01;
    assert_eq!(decode_canonical::<u64>(&u64_max).unwrap(), u64::MAX);
    // ... one more in the same length is refused: 65536 and the 3-byte maximum 2^21 - 1 as a
    // u16, 2^32 as a u32, 2^64 as a u64.
    refused::<u16>(&[0x80, 0x80, 0x04]);
    refused::<u16>(&[0xff, 0xff, 0x7f]);
    refused::<u32>(&[0x80, 0x80, 0x80, 0x80, 0x10]);
    let mut u64_over = [0x80u8; 10];
    u64_over[9] = 0x02;
    refused::<u64>(&u64_over);
    // Longer than the maximal length, whatever the value.
    refused::<u16>(&[0x80, 0x80, 0x80, 0x00]);
    refused::<u16>(&[0x81, 0x80, 0x80, 0x00]);
    refused::<u32>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    // Signed types: zigzag of i16 is a u16 varint, so 65536 is out of range too.
    refused::<i16>(&[0x80, 0x80, 0x04]);
    assert_eq!(
        decode_canonical::<i16>(&[0xff, 0xff, 0x03]).unwrap(),
        i16::MIN
    );
}

#[test]
fn a_u16_field_holding_more_than_65535_is_refused() {
    // `peers` is the heartbeat's last field, a u16: 65535 is `ff ff 03`.
    let max = encode_payload(&heartbeat(u16::MAX));
    assert_eq!(&max[max.len() - 3..], [0xff, 0xff, 0x03]);
    assert_eq!(
        decode_canonical::<Heartbeat>(&max).unwrap(),
        heartbeat(u16::MAX)
    );
    // The same three bytes with the value 65536, and with the largest 3-byte value.
    for last in [[0x80, 0x80, 0x04], [0xff, 0xff, 0x7f]] {
        let mut over = max.clone();
        let n = over.len();
        over[n - 3..].copy_from_slice(&last);
        refused::<Heartbeat>(&over);
    }
}
