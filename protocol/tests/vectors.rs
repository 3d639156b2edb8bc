//! Test vectors published in docs/PROTOCOL.md ("Test vectors"). If this test fails, the wire
//! format changed: update the document and bump the protocol version.
#![allow(clippy::unwrap_used)]

use wisp_protocol::envelope::{self, Envelope, signed_bytes};
use wisp_protocol::msg::{Beacon, CarrierReport, CreditGrant, RewardEntry, UsageReceipt, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, Kind, NodeKey, SubscriberId};

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

/// The receipt of docs/PROTOCOL.md §9: subscriber `03 03 … 03` signs, the hotspot (the node
/// key `01 01 … 01`) co-signs.
#[test]
fn usage_receipt_vector() {
    let (sub, hot) = (
        NodeKey::from_seed(&[0x03; 32]),
        NodeKey::from_seed(&[0x01; 32]),
    );
    let r = UsageReceipt {
        session: [0x5e; 16].into(),
        hotspot: hot.id(),
        subscriber: SubscriberId::of(&sub),
        epoch: 42,
        seq: 7,
        bytes_down: 52_428_800,
        bytes_up: 3_145_728,
        signed_ms: 1_795_000_060_000,
        start_ms: Some(1_795_000_000_000),
    };
    let mut env = Envelope::sign(&sub, &r);
    env.cosign(&hot);
    let bytes = env.to_bytes();
    println!("subscriber {}", hex::encode(sub.id().0));
    println!("payload    {}", hex::encode(&env.payload));
    println!("envelope   {}", hex::encode(&bytes));
    println!("proof id   {}", env.proof_id());
    let expected = include_str!("vectors/usage_receipt.hex").trim();
    assert_eq!(hex::encode(&bytes), expected);
    let opened = envelope::open::<UsageReceipt>(&bytes).unwrap();
    assert_eq!(opened.msg, r);
    assert_eq!(opened.cosigners, [hot.id()]);
}

/// The grant of docs/PROTOCOL.md §9: the oracle key `09 09 … 09` grants the subscriber above
/// one million data credits.
#[test]
fn credit_grant_vector() {
    let (oracle, sub) = (
        NodeKey::from_seed(&[0x09; 32]),
        NodeKey::from_seed(&[0x03; 32]),
    );
    let g = CreditGrant {
        grant: [0x61; 16].into(),
        subscriber: SubscriberId::of(&sub),
        amount_dc: 1_000_000,
        issued_ms: 1_795_000_000_000,
        memo: "devnet".into(),
    };
    let env = Envelope::sign(&oracle, &g);
    let bytes = env.to_bytes();
    println!("oracle     {}", hex::encode(oracle.id().0));
    println!("payload    {}", hex::encode(&env.payload));
    println!("envelope   {}", hex::encode(&bytes));
    println!("proof id   {}", env.proof_id());
    let expected = include_str!("vectors/credit_grant.hex").trim();
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(CreditGrant::open_from(&bytes, &oracle.id()).unwrap().msg, g);
}

/// The carrier report of docs/PROTOCOL.md §9: the carrier `06 06 … 06` reports 100 MiB down
/// and 10 MiB up of a session on the hotspot `01 01 … 01`.
#[test]
fn carrier_report_vector() {
    let (carrier, hot) = (
        NodeKey::from_seed(&[0x06; 32]),
        NodeKey::from_seed(&[0x01; 32]),
    );
    let r = CarrierReport {
        session: [0xca; 16].into(),
        hotspot: hot.id(),
        carrier: carrier.id(),
        epoch: 42,
        seq: 3,
        bytes_down: 104_857_600,
        bytes_up: 10_485_760,
        signed_ms: 1_795_000_060_000,
        start_ms: Some(1_795_000_000_000),
    };
    let env = Envelope::sign(&carrier, &r);
    let bytes = env.to_bytes();
    println!("carrier    {}", hex::encode(carrier.id().0));
    println!("payload    {}", hex::encode(&env.payload));
    println!("envelope   {}", hex::encode(&bytes));
    println!("proof id   {}", env.proof_id());
    let expected = include_str!("vectors/carrier_report.hex").trim();
    assert_eq!(hex::encode(&bytes), expected);
    let opened = CarrierReport::open_from(&bytes, |k| *k == carrier.id()).unwrap();
    assert_eq!(opened.msg, r);
}

/// The reward entry of docs/PROTOCOL.md §9 and its Merkle leaf (§6.4): the node `01 01 … 01`
/// paid from all four pools.
#[test]
fn reward_entry_vector() {
    let e = RewardEntry {
        node: NodeKey::from_seed(&[0x01; 32]).id(),
        owner: "devnet-owner".into(),
        amount: 1_000_000,
        coverage: 550_000,
        backhaul: 250_000,
        uptime: 100_000,
        usage: 100_000,
    };
    let payload = envelope::encode_payload(&e);
    println!("payload    {}", hex::encode(&payload));
    println!("leaf       {}", hex::encode(e.leaf()));
    assert_eq!(
        hex::encode(&payload),
        include_str!("vectors/reward_entry.hex").trim()
    );
    assert_eq!(
        hex::encode(e.leaf()),
        include_str!("vectors/reward_leaf.hex").trim()
    );
}
