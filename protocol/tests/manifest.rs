//! A manifest entry's amount is the sum of its four parts (docs/PROTOCOL.md §5.8): coverage,
//! backhaul, uptime and usage, without overflow.
#![allow(clippy::unwrap_used)]

use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{RewardEntry, RewardManifest};
use wisp_protocol::{NodeKey, Reason};

/// Opens a one-entry manifest holding `e`, signed by a fixed key.
fn check(e: RewardEntry) -> Result<(), Reason> {
    let m = RewardManifest {
        epoch: 1,
        emission: e.amount,
        entry_count: 1,
        root: wisp_protocol::merkle::root(&[e.leaf()]).into(),
        page: 0,
        page_count: 1,
        entries: vec![e],
    };
    let bytes = Envelope::sign(&NodeKey::from_seed(&[1; 32]), &m).to_bytes();
    envelope::open::<RewardManifest>(&bytes)
        .map(drop)
        .map_err(|e| e.reason())
}

fn entry(amount: u64, parts: [u64; 4]) -> RewardEntry {
    RewardEntry {
        node: NodeKey::from_seed(&[2; 32]).id(),
        owner: "o".into(),
        amount,
        coverage: parts[0],
        backhaul: parts[1],
        uptime: parts[2],
        usage: parts[3],
    }
}

#[test]
fn the_amount_counts_every_part_including_usage() {
    assert_eq!(check(entry(10, [1, 2, 3, 4])), Ok(()));
    assert_eq!(check(entry(7, [0, 0, 0, 7])), Ok(()));
    // Usage left out of the amount (the sum of the three older parts) is refused.
    assert_eq!(check(entry(6, [1, 2, 3, 4])), Err(Reason::FieldOutOfRange));
    assert_eq!(check(entry(11, [1, 2, 3, 4])), Err(Reason::FieldOutOfRange));
    // A sum that overflows u64 is refused, whatever the amount says.
    let wrapped = u64::MAX.wrapping_add(1);
    assert_eq!(
        check(entry(wrapped, [u64::MAX, 0, 0, 1])),
        Err(Reason::FieldOutOfRange)
    );
    assert_eq!(check(entry(u64::MAX, [u64::MAX - 1, 0, 0, 1])), Ok(()));
}
