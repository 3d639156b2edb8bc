//! Writes the seed corpora: valid signed envelopes and canonical payloads of every kind, into
//! `seeds/<target>/` next to this crate's Cargo.toml. Deterministic (fixed keys), so re-running
//! it rewrites the same files.
//!
//! ```text
//! cargo run --example gen_seeds
//! ```

use std::fs;
use std::path::Path;

use wisp_protocol::envelope::{Envelope, Message, encode_payload};
use wisp_protocol::msg::seal_acks;
use wisp_protocol_fuzz::samples::{self, key};

/// One seed: the target, a file name, the bytes.
type Seed = (&'static str, String, Vec<u8>);

fn payload<M: Message>(target: &'static str, name: &str, m: &M) -> Seed {
    (target, format!("{name}.bin"), encode_payload(m))
}

fn signed<M: Message>(name: &str, signer: u8, m: &M) -> Seed {
    (
        "envelope",
        format!("{name}.bin"),
        Envelope::sign(&key(signer), m).to_bytes(),
    )
}

fn main() -> std::io::Result<()> {
    let (beaconer, witness, measurer, prover, oracle) = (key(1), key(2), key(3), key(4), key(9));
    let mut measured = Envelope::sign(&measurer, &samples::receipt(&measurer, &prover, true));
    measured.cosign(&prover);
    let subscriber = key(5);
    let mut usage = Envelope::sign(
        &subscriber,
        &samples::usage_receipt(&subscriber, &prover, true),
    );
    usage.cosign(&prover);
    let seeds: Vec<Seed> = vec![
        // Whole envelopes, one or two per kind.
        signed("onboard", 1, &samples::onboard(false)),
        signed("onboard_attested", 1, &samples::onboard(true)),
        signed("epoch_seed", 9, &samples::epoch_seed(7)),
        signed("beacon", 1, &samples::beacon(7)),
        signed("witness", 2, &samples::witness(&beaconer)),
        (
            "envelope",
            "bandwidth_receipt_cosigned.bin".into(),
            measured.to_bytes(),
        ),
        signed(
            "bandwidth_receipt_failed",
            3,
            &samples::receipt(&measurer, &prover, false),
        ),
        signed("heartbeat", 1, &samples::heartbeat(1, false)),
        signed("heartbeat_fix", 1, &samples::heartbeat(2, true)),
        signed("ack_root", 9, &samples::ack_root(3)),
        signed("reward_manifest", 9, &samples::manifest(3)),
        signed("status_report", 1, &samples::status(3)),
        ("envelope", "usage_receipt.bin".into(), usage.to_bytes()),
        signed(
            "credit_grant",
            9,
            &samples::credit_grant(&subscriber, "devnet"),
        ),
        signed(
            "carrier_report",
            6,
            &samples::carrier_report(&key(6), &prover, true),
        ),
        // Bare payloads.
        payload("onboard", "plain", &samples::onboard(false)),
        payload("onboard", "attested", &samples::onboard(true)),
        payload("epoch_seed", "epoch_7", &samples::epoch_seed(7)),
        payload("epoch_seed", "epoch_0", &samples::epoch_seed(0)),
        payload("beacon", "epoch_7", &samples::beacon(7)),
        payload("beacon", "epoch_max", &samples::beacon(u64::MAX)),
        payload("witness", "of_beacon", &samples::witness(&beaconer)),
        payload("witness", "of_self", &samples::witness(&witness)),
        payload(
            "bandwidth_receipt",
            "measured",
            &samples::receipt(&measurer, &prover, true),
        ),
        payload(
            "bandwidth_receipt",
            "failed",
            &samples::receipt(&measurer, &prover, false),
        ),
        payload("heartbeat", "no_fix", &samples::heartbeat(1, false)),
        payload("heartbeat", "fix", &samples::heartbeat(2, true)),
        payload("reward_manifest", "empty", &samples::manifest(0)),
        payload("reward_manifest", "three", &samples::manifest(3)),
        payload("reward_manifest", "forty", &samples::manifest(40)),
        payload("status_report", "none_witnessed", &samples::status(0)),
        payload("status_report", "three_witnessed", &samples::status(3)),
        payload(
            "usage_receipt",
            "started",
            &samples::usage_receipt(&subscriber, &prover, true),
        ),
        payload(
            "usage_receipt",
            "no_start",
            &samples::usage_receipt(&subscriber, &prover, false),
        ),
        payload(
            "credit_grant",
            "devnet",
            &samples::credit_grant(&subscriber, "devnet"),
        ),
        payload(
            "credit_grant",
            "no_memo",
            &samples::credit_grant(&subscriber, ""),
        ),
        payload(
            "carrier_report",
            "started",
            &samples::carrier_report(&key(6), &prover, true),
        ),
        payload(
            "carrier_report",
            "no_start",
            &samples::carrier_report(&key(6), &prover, false),
        ),
        // The beacon bytes a witness embeds.
        (
            "witness_beacon",
            "beacon.bin".into(),
            Envelope::sign(&beaconer, &samples::beacon(7)).to_bytes(),
        ),
        (
            "witness_beacon",
            "beacon_epoch_max.bin".into(),
            Envelope::sign(&oracle, &samples::beacon(u64::MAX)).to_bytes(),
        ),
    ];
    // Sealed acks: three under one signed root, and one alone.
    let batch = [
        samples::ack(witness.id(), 1),
        samples::ack(beaconer.id(), 8),
        samples::ack(prover.id(), 3),
    ];
    let mut seeds = seeds;
    for (i, bytes) in seal_acks(&oracle, 1_790_000_100_000, &batch)
        .into_iter()
        .enumerate()
    {
        seeds.push(("ack", format!("sealed_{i}_of_3.bin"), bytes));
    }
    for bytes in seal_acks(&oracle, 1_790_000_100_000, &batch[..1]) {
        seeds.push(("ack", "sealed_alone.bin".into(), bytes));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, name, bytes) in &seeds {
        // Seeds are valid inputs: the fuzzer mutates from the accepted side of every check.
        if *target == "envelope"
            && let Err(e) = wisp_protocol_fuzz::open_any(bytes)
        {
            panic!("seed envelope/{name} does not open: {e}");
        }
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
    }
    eprintln!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}
