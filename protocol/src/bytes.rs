//! Fixed-size byte arrays with a fixed-width encoding.
//!
//! serde's derive only covers arrays up to 32 elements, and `serialize_bytes` would add a length
//! prefix. [`ByteArray`] serializes as a tuple, which postcard writes as exactly `N` raw bytes, so
//! a 64-byte signature costs 64 bytes on the wire and has one encoding.

use core::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `N` bytes, encoded as exactly `N` bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteArray<const N: usize>(pub [u8; N]);

impl<const N: usize> ByteArray<N> {
    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> Default for ByteArray<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> From<[u8; N]> for ByteArray<N> {
    fn from(b: [u8; N]) -> Self {
        Self(b)
    }
}

impl<const N: usize> AsRef<[u8]> for ByteArray<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for ByteArray<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Display for ByteArray<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<const N: usize> Serialize for ByteArray<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            // JSON and other text formats get lowercase hex: readable in logs and demos.
            let mut hex = alloc::string::String::with_capacity(2 * N);
            for b in &self.0 {
                use core::fmt::Write;
                let _ = write!(hex, "{b:02x}");
            }
            return s.serialize_str(&hex);
        }
        let mut t = s.serialize_tuple(N)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for ByteArray<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = ByteArray<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(ByteArray(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let raw = v.as_bytes();
                if raw.len() != 2 * N {
                    return Err(E::invalid_length(raw.len() / 2, &self));
                }
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    let hi = hex_val(raw[2 * i]).ok_or_else(|| E::custom("invalid hex"))?;
                    let lo = hex_val(raw[2 * i + 1]).ok_or_else(|| E::custom("invalid hex"))?;
                    *slot = (hi << 4) | lo;
                }
                Ok(ByteArray(out))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V::<N>)
        } else {
            d.deserialize_tuple(N, V::<N>)
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Serde helper for `Vec<u8>` fields: raw bytes with a varint length in binary formats (the
/// same bytes postcard writes for a `Vec<u8>`), lowercase hex in JSON.
pub mod hex_vec {
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// Serializes `v`.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut hex = String::with_capacity(2 * v.len());
            for b in v {
                use core::fmt::Write;
                let _ = write!(hex, "{b:02x}");
            }
            s.serialize_str(&hex)
        } else {
            s.serialize_bytes(v)
        }
    }

    /// Deserializes a byte vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                let raw = v.as_bytes();
                if !raw.len().is_multiple_of(2) {
                    return Err(E::custom("odd-length hex"));
                }
                raw.chunks_exact(2)
                    .map(|p| match (super::hex_val(p[0]), super::hex_val(p[1])) {
                        (Some(h), Some(l)) => Ok((h << 4) | l),
                        _ => Err(E::custom("invalid hex")),
                    })
                    .collect()
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_exactly_n_bytes() {
        let a = ByteArray([7u8; 64]);
        let enc = postcard::to_allocvec(&a).unwrap();
        assert_eq!(enc, [7u8; 64]);
        let (back, rest) = postcard::take_from_bytes::<ByteArray<64>>(&enc).unwrap();
        assert_eq!(back, a);
        assert!(rest.is_empty());
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(postcard::from_bytes::<ByteArray<32>>(&[1u8; 31]).is_err());
    }

    #[test]
    fn hex_vec_matches_postcard_vec_encoding() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct W(#[serde(with = "super::hex_vec")] alloc::vec::Vec<u8>);
        let v = alloc::vec![1u8, 2, 250];
        let plain = postcard::to_allocvec(&v).unwrap();
        let with = postcard::to_allocvec(&W(v.clone())).unwrap();
        assert_eq!(plain, with);
        assert_eq!(postcard::from_bytes::<W>(&with).unwrap(), W(v.clone()));
        assert_eq!(serde_json::to_string(&W(v.clone())).unwrap(), "\"0102fa\"");
        assert_eq!(serde_json::from_str::<W>("\"0102fa\"").unwrap(), W(v));
        assert!(serde_json::from_str::<W>("\"010\"").is_err());
    }

    #[test]
    fn json_is_hex() {
        let a = ByteArray([0xab, 0x01]);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"ab01\"");
        assert_eq!(serde_json::from_str::<ByteArray<2>>(&j).unwrap(), a);
        assert!(serde_json::from_str::<ByteArray<2>>("\"ab0\"").is_err());
        assert!(serde_json::from_str::<ByteArray<2>>("\"zz01\"").is_err());
    }
}
