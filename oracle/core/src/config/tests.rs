//! The configuration's defaults, validation and lookups.
use super::*;

#[test]
fn defaults_need_a_maker_or_permissionless() {
    assert_eq!(
        RulesConfig::default().validate().unwrap_err(),
        ConfigError::NoWayToOnboard
    );
    let rules = Rules::permissionless();
    assert!(rules.config().permissionless);
}

#[test]
fn lookups_follow_the_tables() {
    let r = Rules::permissionless();
    assert_eq!(r.trust_for_distance(0.0), Some(10_000));
    assert_eq!(r.trust_for_distance(150.0), Some(10_000));
    assert_eq!(r.trust_for_distance(150.5), Some(2_500));
    assert_eq!(r.trust_for_distance(1_000.0), Some(2_500));
    assert_eq!(r.trust_for_distance(1_000.1), None);
    assert_eq!(r.bandwidth_multiplier(2_000_000_000), 4);
    assert_eq!(r.bandwidth_multiplier(1_000_000_000), 4);
    assert_eq!(r.bandwidth_multiplier(999_999_999), 3);
    assert_eq!(r.bandwidth_multiplier(100_000_000), 2);
    assert_eq!(r.bandwidth_multiplier(25_000_000), 1);
    assert_eq!(r.bandwidth_multiplier(24_999_999), 0);
    assert_eq!(r.latency_multiplier_bps(50_000), 10_000);
    assert_eq!(r.latency_multiplier_bps(50_001), 7_500);
    assert_eq!(r.latency_multiplier_bps(100_000), 7_500);
    assert_eq!(r.latency_multiplier_bps(100_001), 5_000);
}

#[test]
fn mistakes_name_their_key() {
    let base = RulesConfig::permissionless;
    let cases: Vec<(RulesConfig, &str)> = vec![
        (
            RulesConfig {
                uptime_share_bps: 1_500,
                ..base()
            },
            "must be 10000",
        ),
        (
            RulesConfig {
                usage_payout_cap_bps: 10_000,
                ..base()
            },
            "usage_payout_cap_bps",
        ),
        (
            RulesConfig {
                usage_sessions_per_subscriber: 0,
                ..base()
            },
            "usage_sessions_per_subscriber",
        ),
        (
            RulesConfig {
                witness_decay_bps: 10_001,
                ..base()
            },
            "witness_decay_bps",
        ),
        (
            RulesConfig {
                witness_redundancy: 0,
                ..base()
            },
            "witness_redundancy",
        ),
        (
            RulesConfig {
                rtt_signal_m_per_us: 299_792.458,
                ..base()
            },
            "rtt_signal_m_per_us",
        ),
        (
            RulesConfig {
                rtt_signal_m_per_us: f64::NAN,
                ..base()
            },
            "rtt_signal_m_per_us",
        ),
        (
            RulesConfig {
                location_trust: vec![],
                ..base()
            },
            "location_trust",
        ),
        (
            RulesConfig {
                bandwidth_tiers: vec![
                    BandwidthTier {
                        min_bps: 1,
                        multiplier: 1,
                    },
                    BandwidthTier {
                        min_bps: 2,
                        multiplier: 2,
                    },
                ],
                ..base()
            },
            "bandwidth_tiers",
        ),
        (
            RulesConfig {
                makers: [("acme".to_string(), "04zz".to_string())].into(),
                ..base()
            },
            "makers.acme: not hex",
        ),
        (
            RulesConfig {
                makers: [("acme".to_string(), "0401".to_string())].into(),
                ..base()
            },
            "not a P-256",
        ),
        (
            RulesConfig {
                rssi_margin_decidb: -1,
                ..base()
            },
            "rssi_margin_decidb",
        ),
        (
            RulesConfig {
                constant_rssi_witnesses: 1,
                ..base()
            },
            "constant_rssi_witnesses",
        ),
        (
            RulesConfig {
                density_resolution: 16,
                ..base()
            },
            "density_resolution",
        ),
        (
            RulesConfig {
                usage_sessions_per_carrier: 0,
                ..base()
            },
            "usage_sessions_per_carrier",
        ),
        (
            RulesConfig {
                usage_carriers: vec!["12D3KooWnot-a-key".into()],
                ..base()
            },
            "usage_carriers: \"12D3KooWnot-a-key\" is not an Ed25519 PeerId",
        ),
        (
            RulesConfig {
                usage_carriers: vec![carrier(), carrier()],
                ..base()
            },
            "is listed twice",
        ),
    ];
    for (cfg, needle) in cases {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
}

fn carrier() -> String {
    wisp_protocol::NodeKey::from_seed(&[6; 32]).id().to_string()
}

#[test]
fn carriers_are_allow_listed_by_key() {
    let other = wisp_protocol::NodeKey::from_seed(&[7; 32]).id();
    let rules = RulesConfig {
        // Surrounding spaces are not part of a key.
        usage_carriers: vec![format!(" {} ", carrier())],
        ..RulesConfig::permissionless()
    }
    .validate()
    .unwrap();
    assert!(rules.is_carrier(&carrier().parse().unwrap()));
    assert!(!rules.is_carrier(&other));
    // None by default.
    assert!(!Rules::permissionless().is_carrier(&other));
}
