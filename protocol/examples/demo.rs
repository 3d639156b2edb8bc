//! The protocol demo: two hotspots and an oracle exchange a beacon, a witness and an ack.
//!
//! `cargo run -p wisp-protocol --example demo [seed]` generates three keys from a seeded RNG,
//! builds and signs the messages, verifies each from its raw bytes, and prints each as JSON
//! with its size on the wire. The same seed prints the same output.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;
use wisp_protocol::envelope::{self, Envelope, Message};
use wisp_protocol::msg::{
    Ack, AckEntry, Beacon, EpochParams, EpochSeed, Verdict, Witness, open_sealed_ack, seal_acks,
};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey, Reason, geo, physics, schedule};

fn show<M: Message + Serialize>(title: &str, env: &Envelope) -> M {
    let bytes = env.to_bytes();
    let opened = envelope::open::<M>(&bytes).expect("our own message verifies");
    println!(
        "── {title}: {} bytes on the wire, proof id {}",
        bytes.len(),
        opened.id
    );
    println!("   signed by {}", opened.signer);
    println!("{}", serde_json::to_string_pretty(&opened.msg).unwrap());
    opened.msg
}

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let oracle = NodeKey::generate(&mut rng);
    let alice = NodeKey::generate(&mut rng);
    let bob = NodeKey::generate(&mut rng);
    println!("wisp protocol demo (seed {seed})");
    println!("oracle  {}", oracle.id());
    println!("alice   {} (beacons)", alice.id());
    println!("bob     {} (witnesses)\n", bob.id());

    // Two rooftops about 880 m apart in Lisbon.
    let alice_cell = Cell::from_degrees(38.7139, -9.1394, geo::ASSERT_RESOLUTION).unwrap();
    let bob_cell = Cell::from_degrees(38.7203, -9.1455, geo::ASSERT_RESOLUTION).unwrap();
    let start_ms = 1_795_000_000_000;
    let epoch = EpochSeed {
        epoch: 1,
        start_ms,
        duration_ms: 3_600_000,
        seed: {
            let mut s = [0u8; 32];
            rand_chacha::rand_core::Rng::fill_bytes(&mut rng, &mut s);
            s.into()
        },
        params: EpochParams::default(),
    };
    let seed_env = Envelope::sign(&oracle, &epoch);
    show::<EpochSeed>("epoch seed (oracle → all)", &seed_env);

    let (slot_start, _) = schedule::beacon_window(&epoch, &alice.id());
    let beacon = Beacon {
        epoch: epoch.epoch,
        nonce: schedule::beacon_nonce(&epoch.seed.0, &alice.id()).into(),
        freq_khz: 2_437_000,
        width_mhz: 20,
        tx_power: DeciDb::from_db(20),
        antenna_gain: DeciDb(50),
        cell: alice_cell,
        tx_ms: slot_start + 1_250,
    };
    let beacon_env = Envelope::sign(&alice, &beacon);
    show::<Beacon>("beacon (alice, over the air)", &beacon_env);

    let distance = alice_cell.distance_m(bob_cell);
    let bound = physics::max_rssi_dbm(20.0, 5.0, 3.0, distance, 2.437e9, 6.0);
    let witness = Witness {
        beacon: beacon_env.to_bytes(),
        rssi: DeciDb(-712),
        snr: DeciDb(184),
        freq_khz: 2_437_000,
        rx_ms: beacon.tx_ms + 3,
        cell: bob_cell,
    };
    let witness_env = Envelope::sign(&bob, &witness);
    let w = show::<Witness>("witness (bob → oracle)", &witness_env);
    let inner = w.open_beacon().unwrap();
    println!(
        "   embedded beacon verifies: signer {}, distance {:.0} m, RSSI -71.2 dBm vs free-space bound {:.1} dBm\n",
        inner.signer, distance, bound
    );

    let ack = Ack {
        node: bob.id(),
        issued_ms: witness.rx_ms + 40,
        entries: vec![
            AckEntry {
                proof_id: witness_env.proof_id(),
                verdict: Verdict::Accepted,
            },
            AckEntry {
                proof_id: wisp_protocol::ProofId::of(b"an earlier, forged witness"),
                verdict: Verdict::Rejected(Reason::RssiTooStrong),
            },
        ],
    };
    // The oracle signs one root per batch of acks; each ack travels with its path to it.
    let sealed = seal_acks(&oracle, ack.issued_ms, std::slice::from_ref(&ack));
    let opened = open_sealed_ack(&sealed[0]).expect("our own ack opens");
    println!(
        "── ack (oracle → bob): {} bytes on the wire, under a root of {} ack(s)",
        sealed[0].len(),
        opened.root.leaves
    );
    println!("   root signed by {}", opened.signer);
    println!("{}", serde_json::to_string_pretty(&opened.ack).unwrap());
    assert_eq!(opened.ack.entries[0].proof_id, witness_env.proof_id());

    // A tampered witness is refused before it is decoded.
    let mut tampered = witness_env.to_bytes();
    let n = tampered.len();
    tampered[n / 2] ^= 1;
    let err = envelope::open::<Witness>(&tampered).unwrap_err();
    println!(
        "── a witness with one flipped bit: refused ({err}; reason {})",
        err.reason()
    );
}
