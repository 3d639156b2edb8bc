//! docs/PROTOCOL.md lists every kind, domain tag, size limit and reason code the code defines,
//! and its test vectors are the ones the code produces.
#![allow(clippy::unwrap_used)]

use wisp_protocol::{Kind, Reason};

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

#[test]
fn every_kind_is_documented_with_its_tag_byte_and_limit() {
    for k in Kind::ALL {
        let tag = String::from_utf8(k.domain_tag().to_vec())
            .unwrap()
            .replace('\0', "\\0");
        let row = format!(
            "| `{}` | {} | `{}` | {} |",
            k.name(),
            k.as_u8(),
            tag,
            k.max_envelope_len()
        );
        assert!(
            DOC.contains(&row),
            "PROTOCOL.md lacks the row starting {row}"
        );
    }
}

#[test]
fn every_reason_is_documented() {
    for r in Reason::ALL {
        let row = format!("| {} | `{}` | {} |", r.code(), r.name(), r.describe());
        assert!(DOC.contains(&row), "PROTOCOL.md lacks {row}");
    }
}

#[test]
fn test_vectors_match() {
    for file in [
        include_str!("vectors/beacon.hex"),
        include_str!("vectors/witness.hex"),
        include_str!("vectors/usage_receipt.hex"),
        include_str!("vectors/credit_grant.hex"),
        include_str!("vectors/carrier_report.hex"),
        include_str!("vectors/reward_entry.hex"),
        include_str!("vectors/reward_leaf.hex"),
    ] {
        assert!(
            DOC.contains(file.trim()),
            "PROTOCOL.md lacks vector {}",
            &file[..16]
        );
    }
}
