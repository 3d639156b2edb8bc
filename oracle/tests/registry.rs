//! Onboarding rules, table-driven: each case is a sequence of onboard envelopes (real keys,
//! real P-256 attestations) applied to a fresh registry, with the expected result of each.

// Helpers of a test panic on a broken fixture; casts convert small, known values.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use wisp_oracle::{Change, Registry, RulesConfig};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::geo::Cell;
use wisp_protocol::msg::{Attestation, Onboard};
use wisp_protocol::{NodeId, Reason};

const DAY: u64 = 86_400_000;
const T: u64 = START;

fn p256_key(b: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[b; 32]).unwrap()
}

fn maker_hex(b: u8) -> String {
    let point = p256_key(b).verifying_key().to_sec1_point(false);
    point
        .as_bytes()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A genuine attestation of `node` by chip `chip` (serial `[chip; 9]`) made by `maker_key`.
fn attest(node: &NodeId, chip: u8, maker: &str, maker_key: u8) -> Attestation {
    let device = p256_key(chip);
    let point = device.verifying_key().to_sec1_point(false);
    let mut device_key = [0u8; 64];
    device_key.copy_from_slice(&point.as_bytes()[1..]);
    let serial = [chip; 9];
    let cert = Attestation::certificate_digest(&serial, &device_key, maker);
    let maker_sig: p256::ecdsa::Signature = p256_key(maker_key).sign_prehash(&cert).unwrap();
    let digest = Attestation::device_digest(node, &serial, maker);
    let device_sig: p256::ecdsa::Signature = device.sign_prehash(&digest).unwrap();
    Attestation {
        maker: maker.into(),
        serial: ByteArray(serial),
        device_key: ByteArray(device_key),
        device_sig: ByteArray(device_sig.to_bytes().into()),
        maker_sig: ByteArray(maker_sig.to_bytes().into()),
    }
}

fn here() -> Cell {
    cell_at(offset(0.0, 0.0))
}

fn there() -> Cell {
    cell_at(offset(2_000.0, 0.0))
}

/// One onboard: who signs, what, when the oracle sees it, what it should do.
struct Step {
    signer: usize,
    msg: Onboard,
    now: u64,
    want: Result<Change, Reason>,
}

fn step(signer: usize, msg: Onboard, now: u64, want: Result<Change, Reason>) -> Step {
    Step {
        signer,
        msg,
        now,
        want,
    }
}

fn permissioned() -> RulesConfig {
    RulesConfig {
        makers: [("acme".to_string(), maker_hex(7))].into(),
        deny: vec![key(9).id()],
        ..RulesConfig::default()
    }
}

fn check(name: &str, cfg: RulesConfig, steps: Vec<Step>) -> Registry {
    let mut registry = Registry::new(cfg.validate().unwrap());
    for (i, s) in steps.into_iter().enumerate() {
        let opened = open::<Onboard>(&sign_with(&key(s.signer), &s.msg));
        let got = registry.apply_onboard(&opened, s.now);
        assert_eq!(got, s.want, "{name}, step {i}");
    }
    registry
}

fn with_attestation(mut m: Onboard, a: Attestation) -> Onboard {
    m.attestation = Some(a);
    m
}

#[test]
fn onboarding_rules() {
    let open_net = RulesConfig::permissionless;
    let plain = |issued| onboard_msg(here(), issued);
    let owner = |issued, o: &str| Onboard {
        owner: o.into(),
        ..onboard_msg(here(), issued)
    };
    let moved = |issued| onboard_msg(there(), issued);
    let n0 = key(0).id();
    let n1 = key(1).id();

    check(
        "create, repeat, update",
        open_net(),
        vec![
            step(0, plain(T), T, Ok(Change::Created)),
            step(0, plain(T), T + 5, Ok(Change::Unchanged)),
            step(0, owner(T + 10, "new-owner"), T + 20, Ok(Change::Updated)),
        ],
    );
    check(
        "replays of older onboards",
        open_net(),
        vec![
            step(0, plain(T), T, Ok(Change::Created)),
            step(0, owner(T - 1, "x"), T + 5, Err(Reason::OnboardStale)),
            step(0, owner(T, "x"), T + 5, Err(Reason::OnboardStale)),
        ],
    );
    check(
        "issued in the future",
        open_net(),
        vec![
            step(0, plain(T + 2_001), T, Err(Reason::TimestampOutOfWindow)),
            step(0, plain(T + 2_000), T, Ok(Change::Created)),
        ],
    );
    check(
        "deny list",
        RulesConfig {
            deny: vec![key(9).id()],
            ..open_net()
        },
        vec![step(9, plain(T), T, Err(Reason::Denied))],
    );
    let reg = check(
        "re-assertion rate limit",
        open_net(),
        vec![
            step(0, plain(T), T, Ok(Change::Created)),
            step(0, moved(T + 10), T + DAY - 1, Err(Reason::ReassertTooSoon)),
            step(
                0,
                moved(T + 10),
                T + DAY,
                Ok(Change::Reasserted { previous: here() }),
            ),
            // Owner changes at the same place are not rate-limited.
            step(
                0,
                Onboard {
                    owner: "b".into(),
                    ..moved(T + 20)
                },
                T + DAY + 1,
                Ok(Change::Updated),
            ),
        ],
    );
    let rec = reg.get(&n0).unwrap();
    assert_eq!(rec.cell, there());
    assert_eq!(rec.asserted_ms, T + DAY);
    assert_eq!(rec.onboarded_ms, T);
    assert_eq!(rec.location_trust_bps, None, "re-assertion resets trust");

    check(
        "attestation required",
        permissioned(),
        vec![step(0, plain(T), T, Err(Reason::AttestationRequired))],
    );
    check(
        "untrusted maker",
        permissioned(),
        vec![step(
            0,
            with_attestation(plain(T), attest(&n0, 1, "globex", 7)),
            T,
            Err(Reason::UnknownMaker),
        )],
    );
    check(
        "maker signature by another key",
        permissioned(),
        vec![step(
            0,
            with_attestation(plain(T), attest(&n0, 1, "acme", 8)),
            T,
            Err(Reason::AttestationInvalid),
        )],
    );
    check(
        "attestation of another node key",
        permissioned(),
        vec![step(
            0,
            with_attestation(plain(T), attest(&n1, 1, "acme", 7)),
            T,
            Err(Reason::AttestationInvalid),
        )],
    );
    let reg = check(
        "one chip, one node",
        permissioned(),
        vec![
            step(
                0,
                with_attestation(plain(T), attest(&n0, 1, "acme", 7)),
                T,
                Ok(Change::Created),
            ),
            // Another node presenting the same chip.
            step(
                1,
                with_attestation(plain(T), attest(&n1, 1, "acme", 7)),
                T,
                Err(Reason::DeviceAlreadyBound),
            ),
            // The first node moving to another chip.
            step(
                0,
                with_attestation(plain(T + 1), attest(&n0, 2, "acme", 7)),
                T + 1,
                Err(Reason::DeviceAlreadyBound),
            ),
            // Its own chip again, later: fine.
            step(
                0,
                with_attestation(owner(T + 2, "z"), attest(&n0, 1, "acme", 7)),
                T + 2,
                Ok(Change::Updated),
            ),
            step(
                1,
                with_attestation(plain(T), attest(&n1, 3, "acme", 7)),
                T,
                Ok(Change::Created),
            ),
        ],
    );
    assert_eq!(reg.node_for_serial(&[1; 9]), Some(n0));
    assert_eq!(reg.node_for_serial(&[3; 9]), Some(n1));
    assert_eq!(reg.get(&n0).unwrap().device.as_ref().unwrap().maker, "acme");
    check(
        "a bad attestation is refused even when permissionless",
        RulesConfig {
            makers: [("acme".to_string(), maker_hex(7))].into(),
            ..open_net()
        },
        vec![
            step(
                0,
                with_attestation(plain(T), attest(&n0, 1, "acme", 8)),
                T,
                Err(Reason::AttestationInvalid),
            ),
            step(0, plain(T), T, Ok(Change::Created)),
        ],
    );
}

#[test]
fn lookups_are_by_id_and_in_id_order() {
    let fx = Fixture::grid(
        7,
        7,
        RulesConfig::permissionless(),
        wisp_protocol::msg::EpochParams::default(),
    );
    assert_eq!(fx.registry.len(), 7);
    assert!(!fx.registry.is_empty());
    let ids: Vec<NodeId> = fx.registry.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    for (i, id) in fx.ids.iter().enumerate() {
        let rec = fx.registry.get(id).unwrap();
        assert_eq!(rec.cell, fx.cell(i));
        assert_eq!(rec.owner, "owner-1");
    }
    assert!(fx.registry.get(&key(100).id()).is_none());
}

#[test]
fn rules_load_from_toml_with_defaults_for_missing_keys() {
    let text = format!(
        r#"
        permissionless = false
        clock_skew_ms = 1500
        deny = ["{}"]
        coverage_share_bps = 6000
        backhaul_share_bps = 2000
        uptime_share_bps = 1000
        usage_share_bps = 1000

        [makers]
        acme = "{}"

        [[location_trust]]
        max_distance_m = 200
        multiplier_bps = 10000
        "#,
        key(9).id(),
        maker_hex(7)
    );
    let cfg: RulesConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.clock_skew_ms, 1_500);
    assert_eq!(
        cfg.max_witness_lag_ms,
        RulesConfig::default().max_witness_lag_ms
    );
    assert_eq!(cfg.location_trust.len(), 1);
    let rules = cfg.validate().unwrap();
    assert!(rules.is_denied(&key(9).id()));
    assert!(rules.maker_key("acme").is_some());
    assert_eq!(rules.trust_for_distance(201.0), None);
    // Unknown keys are refused: a typo must not silently fall back to a default.
    assert!(toml::from_str::<RulesConfig>("clock_skew = 5").is_err());
    // An empty file is the defaults.
    assert_eq!(
        toml::from_str::<RulesConfig>("").unwrap(),
        RulesConfig::default()
    );
}
