//! Test vectors published in docs/PROTOCOL.md ("Test vectors"). If this test fails, the wire
//! format changed: update the document and bump the protocol version.
#![allow(clippy::unwrap_used)]

use wisp_protocol::envelope::{self, Envelope, signed_bytes};
use wisp_protocol::msg::{Beacon, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeKey};

fn beacon() -> (NodeKey, Beacon) {
    let key = NodeKey::from_seed(&[0x01; 32]);
    let b = Beacon {
        epoch: 42,
        nonce: [0xab; 16].into(),
        freq_khz: 2_412_000,
        width_mhz: 20,
        tx_power: DeciDb(200),
        antenna_gain: DeciDb(-15),
        cell: Cell::from_u64(0x8c393362b241bff).unwrap(),
        tx_ms: 1_795_000_000_000,
    };
    (key, b)
}

#[test]
fn beacon_vector() {
    let (key, b) = beacon();
    let env = Envelope::sign(&key, &b);
    let bytes = env.to_bytes();
    println!("signer     {}", hex::encode(key.id().0));
    println!("peer id    {}", key.id());
    println!("payload    {}", hex::encode(&env.payload));
    println!(
        "signed msg {}",
        hex::encode(signed_bytes(Kind::Beacon, &env.payload))
    );
    println!("envelope   {}", hex::encode(&bytes));
    println!("proof id   {}", env.proof_id());
    let expected = include_str!("vectors/beacon.hex").trim();
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(envelope::open::<Beacon>(&bytes).unwrap().msg, b);
}

#[test]
fn witness_vector() {
    let (bkey, b) = beacon();
    let beacon_bytes = Envelope::sign(&bkey, &b).to_bytes();
    let wkey = NodeKey::from_seed(&[0x02; 32]);
    let w = Witness {
        beacon: beacon_bytes,
        rssi: DeciDb(-853),
        snr: DeciDb(92),
        freq_khz: 2_412_000,
        rx_ms: 1_795_000_000_004,
        cell: Cell::from_u64(0x8c393362ba531ff).unwrap(),
    };
    let bytes = Envelope::sign(&wkey, &w).to_bytes();
    println!("witness    {}", hex::encode(&bytes));
    println!("proof id   {}", wisp_protocol::ProofId::of(&bytes));
    let expected = include_str!("vectors/witness.hex").trim();
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(envelope::open::<Witness>(&bytes).unwrap().msg, w);
}
