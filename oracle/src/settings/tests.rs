use super::*;

fn env(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_run_an_embedded_broker_on_localhost() {
    let s = RawSettings::load(None, env(&[]))
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(
        s.broker,
        BrokerMode::Embedded("127.0.0.1:1883".parse().unwrap())
    );
    assert_eq!(s.http_listen.to_string(), "127.0.0.1:9320");
    assert_eq!((s.carrier_rate_per_s, s.carrier_burst), (50.0, 500.0));
    assert_eq!(s.epoch_ms, 3_600_000);
    assert_eq!(s.params.settle_ms, 600_000);
}

#[test]
fn the_client_id_is_configurable() {
    let id = |vars: &[(&str, &str)]| {
        RawSettings::load(None, env(vars))
            .unwrap()
            .resolve()
            .map(|s| s.client_id)
    };
    assert_eq!(id(&[]).unwrap(), "wisp-oracle");
    assert_eq!(
        id(&[("WISP_BROKER__CLIENT_ID", "wisp-oracle-b")]).unwrap(),
        "wisp-oracle-b"
    );
    assert!(id(&[("WISP_BROKER__CLIENT_ID", "")]).is_err());
}

#[test]
fn storage_is_sqlite_unless_a_postgres_url_is_given() {
    use crate::store::StorageConfig;
    let storage = |vars: &[(&str, &str)]| {
        RawSettings::load(None, env(vars))
            .unwrap()
            .resolve()
            .map(|s| s.storage)
    };
    assert_eq!(
        storage(&[("WISP_ORACLE__DATA_DIR", "/d")]).unwrap(),
        StorageConfig::Sqlite(PathBuf::from("/d/oracle.db"))
    );
    assert_eq!(
        storage(&[("WISP_STORAGE__URL", "sqlite:///x/y.db")]).unwrap(),
        StorageConfig::Sqlite(PathBuf::from("/x/y.db"))
    );
    assert_eq!(
        storage(&[
            ("WISP_STORAGE__URL", "postgres://u@h/db"),
            ("WISP_STORAGE__SCHEMA", "wisp")
        ])
        .unwrap(),
        StorageConfig::Postgres {
            url: "postgres://u@h/db".into(),
            schema: Some("wisp".into())
        }
    );
    for bad in [
        vec![("WISP_STORAGE__URL", "mysql://h/db")],
        vec![("WISP_STORAGE__SCHEMA", "wisp")],
    ] {
        let e = storage(&bad).unwrap_err().to_string();
        assert!(e.contains("storage."), "{e}");
    }
}

#[test]
fn an_external_broker_takes_tls_a_login_and_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let pw = dir.path().join("password");
    let resolve = |vars: &[(&str, &str)]| {
        RawSettings::load(None, env(vars))
            .and_then(|r| r.resolve())
            .map(|s| match s.broker {
                BrokerMode::External(b) => b,
                other => panic!("not external: {other:?}"),
            })
    };
    // The scheme's port; the system's roots.
    let b = resolve(&[("WISP_BROKER__URL", "mqtts://broker.example")]).unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.tls),
        ("broker.example", 8883, true)
    );
    assert_eq!((&b.login, &b.ca_file), (&None, &None));
    assert_eq!(b.url(), "mqtts://broker.example:8883");
    let b = resolve(&[("WISP_BROKER__URL", "mqtt://[::1]")]).unwrap();
    assert_eq!((b.host.as_str(), b.port), ("::1", 1883));
    assert_eq!(b.url(), "mqtt://[::1]:1883");
    // A password file's line end is not part of the password; a numeric password from
    // the environment stays a string.
    for (text, want) in [
        ("s3cret\n", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("two words \n", "two words "),
    ] {
        std::fs::write(&pw, text).unwrap();
        let b = resolve(&[
            ("WISP_BROKER__URL", "mqtts://10.0.0.1:8884"),
            ("WISP_BROKER__USERNAME", "wisp-oracle"),
            ("WISP_BROKER__PASSWORD_FILE", pw.to_str().unwrap()),
            ("WISP_BROKER__CA_FILE", ca.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!((b.host.as_str(), b.port, b.tls), ("10.0.0.1", 8884, true));
        let (user, password) = b.login.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("wisp-oracle", want));
        assert_eq!(b.ca_file.as_deref(), Some(ca.as_path()));
        // Never in `{:?}` (what `config check` prints).
        assert!(!format!("{b:?}").contains("s3cret"), "{b:?}");
    }
    let b = resolve(&[
        ("WISP_BROKER__URL", "mqtt://localhost:1883"),
        ("WISP_BROKER__USERNAME", "wisp-oracle"),
        ("WISP_BROKER__PASSWORD", "123456"),
    ])
    .unwrap();
    assert_eq!(b.login.unwrap().1.expose(), "123456");
    let raw = RawSettings::load(None, env(&[("WISP_BROKER__PASSWORD", "s3cret")])).unwrap();
    assert!(!format!("{raw:?}").contains("s3cret"));

    // Every bad value names its key.
    let check = |vars: &[(&str, &str)], key: &str| {
        let e = resolve(vars).unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{vars:?}: {e}");
    };
    let url = ("WISP_BROKER__URL", "mqtts://broker.example");
    let user = ("WISP_BROKER__USERNAME", "wisp-oracle");
    let (ca_s, pw_s) = (ca.to_str().unwrap(), pw.to_str().unwrap());
    for bad in [
        "mqtt:/x",
        "tcp://x:1883",
        "mqtts://",
        "mqtts://:8883",
        "mqtts://x:0",
        "mqtts://x:88830",
        "mqtts://x:port",
        "mqtts://x:8883/wisp",
        "mqtts://u:p@x:8883",
    ] {
        check(&[("WISP_BROKER__URL", bad)], "broker.url");
    }
    check(
        &[
            url,
            user,
            ("WISP_BROKER__PASSWORD", "p"),
            ("WISP_BROKER__PASSWORD_FILE", pw_s),
        ],
        "broker.password",
    );
    check(
        &[
            url,
            user,
            ("WISP_BROKER__PASSWORD_FILE", "/nonexistent/password"),
        ],
        "broker.password_file",
    );
    std::fs::write(&pw, "\n").unwrap();
    check(
        &[url, user, ("WISP_BROKER__PASSWORD_FILE", pw_s)],
        "broker.password_file",
    );
    check(&[url, ("WISP_BROKER__PASSWORD", "p")], "broker.username");
    check(&[url, ("WISP_BROKER__USERNAME", "")], "broker.username");
    check(
        &[
            ("WISP_BROKER__URL", "mqtt://x:1883"),
            ("WISP_BROKER__CA_FILE", ca_s),
        ],
        "broker.ca_file",
    );
    check(
        &[url, ("WISP_BROKER__CA_FILE", "/nonexistent/ca.crt")],
        "broker.ca_file",
    );
    check(&[url, ("WISP_BROKER__CA_FILE", pw_s)], "broker.ca_file");
    // Only for an external broker.
    for (var, key) in [
        ("WISP_BROKER__USERNAME", "broker.username"),
        ("WISP_BROKER__PASSWORD", "broker.password"),
        ("WISP_BROKER__PASSWORD_FILE", "broker.password_file"),
        ("WISP_BROKER__CA_FILE", "broker.ca_file"),
    ] {
        let e = RawSettings::load(None, env(&[(var, ca_s)]))
            .and_then(|r| r.resolve())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{e}");
    }
}

#[test]
fn overrides_and_errors() {
    let s = RawSettings::load(
        None,
        env(&[
            ("WISP_BROKER__URL", "mqtt://10.0.0.1:1884"),
            ("WISP_EPOCH__DURATION_S", "5"),
        ]),
    )
    .unwrap()
    .resolve()
    .unwrap();
    assert_eq!(
        s.broker,
        BrokerMode::External(Broker {
            host: "10.0.0.1".into(),
            port: 1884,
            tls: false,
            login: None,
            ca_file: None,
        })
    );
    assert_eq!(s.epoch_ms, 5_000);
    let err = |p: &[(&str, &str)]| {
        RawSettings::load(None, env(p))
            .and_then(|r| r.resolve())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("WISP_BROKER__URL", "http://x")]).contains("broker.url"));
    assert!(err(&[("WISP_EPOCH__DURATION_S", "0")]).contains("epoch.duration_s"));
    assert!(err(&[("WISP_HTTP__LISTEN", "x")]).contains("http.listen"));
    assert!(
        err(&[("WISP_HTTP__CARRIER_REPORTS_PER_S", "0")]).contains("http.carrier_reports_per_s")
    );
    assert!(err(&[("WISP_HTTP__CARRIER_BURST", "0.5")]).contains("http.carrier_burst"));
    assert!(err(&[("WISP_LOG__FORMAT", "xml")]).contains("log.format"));
    assert!(err(&[("WISP_EPOCH__BOGUS", "1")]).contains("bogus"));
}

#[test]
fn overrides_are_read_as_their_keys_types() {
    let id = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";
    let raw = RawSettings::load(
        None,
        env(&[
            ("WISP_BROKER__CLIENT_ID", "0042"),
            ("WISP_BROKER__PASSWORD", "123456"),
            ("WISP_STORAGE__SCHEMA", "true"),
            ("WISP_EPOCH__SLOT_COUNT", "12"),
            ("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "60"),
            // `[rules]` has a table inside: one `__` per level.
            ("WISP_RULES__PERMISSIONLESS", "true"),
            ("WISP_RULES__MAKERS__ACME", "02ab"),
            ("WISP_RULES__DENY", &format!("[\"{id}\"]")),
        ]),
    )
    .unwrap();
    assert_eq!(raw.broker.client_id.as_deref(), Some("0042"));
    assert_eq!(
        raw.broker.password.as_ref().map(|p| p.expose()),
        Some("123456")
    );
    assert_eq!(raw.storage.schema.as_deref(), Some("true"));
    assert_eq!(raw.epoch.slot_count, Some(12));
    assert_eq!(raw.epoch.heartbeat_interval_s, Some(60.0));
    let rules = raw.rules.unwrap();
    assert!(rules.permissionless);
    assert_eq!(rules.makers["acme"], "02ab");
    assert_eq!(rules.deny[0].to_string(), id);
    // Keys the variables do not set keep their defaults.
    assert_eq!(rules.clock_skew_ms, RulesConfig::default().clock_skew_ms);
    // A bad value names the variable and what its key takes.
    let check = |var: &str, value: &str, want: &str| {
        let err = RawSettings::load(None, env(&[(var, value)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{var}: {want}")), "{err}");
    };
    check(
        "WISP_EPOCH__WITNESS_LIMIT",
        "many",
        r#"expected an unsigned integer, got "many""#,
    );
    check("WISP_INGEST__RATE_PER_S", "fast", "expected a number");
    check("WISP_RULES__PERMISSIONLESS", "1", "expected true or false");
    check(
        "WISP_RULES__RSSI_MARGIN_DECIDB",
        "-40000",
        "expected an integer from",
    );
    check("WISP_RULES__DENY", "nope", "expected a TOML array");
    check("WISP_RULES__CLOCK_SKEW", "1", "unknown field `clock_skew`");
    check("WISP_BROKER__URLL", "x", "unknown field `urll`");
}

#[test]
fn a_cluster_needs_postgres_and_an_external_broker_and_names_each_process() {
    let resolve = |vars: &[(&str, &str)]| RawSettings::load(None, env(vars)).unwrap().resolve();
    let pg = ("WISP_STORAGE__URL", "postgres://postgres@127.0.0.1/test");
    let broker = ("WISP_BROKER__URL", "mqtt://127.0.0.1:1883");
    let on = ("WISP_CLUSTER__ENABLED", "true");
    assert_eq!(resolve(&[]).unwrap().cluster, None);
    let err = |vars: &[(&str, &str)]| resolve(vars).unwrap_err().to_string();
    assert!(
        err(&[on, broker]).contains("cluster.enabled"),
        "{}",
        err(&[on, broker])
    );
    assert!(err(&[on, broker]).contains("postgres"));
    assert!(err(&[on, pg]).contains("external broker"));
    assert!(err(&[("WISP_CLUSTER__LEASE_S", "5")]).contains("cluster.lease_s"));
    assert!(err(&[on, pg, broker, ("WISP_CLUSTER__LEASE_S", "0.1")]).contains("cluster.lease_s"));
    assert!(err(&[on, pg, broker, ("WISP_CLUSTER__NAME", "")]).contains("cluster.name"));
    let s = resolve(&[on, pg, broker, ("WISP_CLUSTER__NAME", "east-1")]).unwrap();
    assert_eq!(
        s.cluster,
        Some(Cluster {
            name: "east-1".into(),
            lease_ms: 10_000,
            reap_after_ms: 120_000,
            share_group: "oracle".into(),
        })
    );
    // Each process connects to the broker with an id of its own.
    assert_eq!(s.client_id, "wisp-oracle-east-1");
    // By default, the host name and the process id.
    let s = resolve(&[on, pg, broker]).unwrap();
    let name = s.cluster.unwrap().name;
    assert!(
        name.ends_with(&format!("-{}", std::process::id())),
        "{name}"
    );
}

#[test]
fn reaping_a_dead_members_session_waits_at_least_a_lease_and_zero_turns_it_off() {
    let resolve = |vars: &[(&str, &str)]| RawSettings::load(None, env(vars)).unwrap().resolve();
    let base = [
        ("WISP_STORAGE__URL", "postgres://postgres@127.0.0.1/test"),
        ("WISP_BROKER__URL", "mqtt://127.0.0.1:1883"),
        ("WISP_CLUSTER__ENABLED", "true"),
        ("WISP_CLUSTER__LEASE_S", "5"),
    ];
    let check = |reap: &str, want: Result<u64, &str>| {
        let mut vars = base.to_vec();
        vars.push(("WISP_CLUSTER__REAP_AFTER_S", reap));
        match (resolve(&vars), want) {
            (Ok(s), Ok(ms)) => assert_eq!(s.cluster.unwrap().reap_after_ms, ms, "{reap}"),
            (Err(e), Err(why)) => {
                let e = e.to_string();
                assert!(
                    e.contains("cluster.reap_after_s") && e.contains(why),
                    "{reap}: {e}"
                );
            }
            (got, want) => panic!("{reap}: got {got:?}, want {want:?}"),
        }
    };
    check("0", Ok(0));
    check("5", Ok(5_000));
    check("2.5", Err("shorter wait reaps live ones"));
    check("-1", Err("0 (never reap)"));
    check("1209601", Err("1209600"));
    check("1209600", Ok(1_209_600_000));
    // The share group: `oracle` by default, as in `topics::PROOFS_SHARED_FILTER`.
    let s = resolve(&base).unwrap().cluster.unwrap();
    assert_eq!(
        s.proofs_filter(),
        wisp_protocol::topics::PROOFS_SHARED_FILTER
    );
    let mut vars = base.to_vec();
    vars.push(("WISP_CLUSTER__SHARE_GROUP", "staging-2"));
    let s = resolve(&vars).unwrap().cluster.unwrap();
    assert_eq!(s.proofs_filter(), "$share/staging-2/wisp/v1/proofs/+");
    for bad in ["", "a/b", "a+", "#"] {
        let mut vars = base.to_vec();
        vars.push(("WISP_CLUSTER__SHARE_GROUP", bad));
        let e = resolve(&vars).unwrap_err().to_string();
        assert!(e.contains("cluster.share_group"), "{bad}: {e}");
    }
    // The default, and refused without a cluster.
    assert_eq!(
        resolve(&base).unwrap().cluster.unwrap().reap_after_ms,
        120_000
    );
    let err = resolve(&[("WISP_CLUSTER__REAP_AFTER_S", "60")]).unwrap_err();
    assert!(err.to_string().contains("cluster.reap_after_s"), "{err}");
    assert!(
        err.to_string().contains("only with cluster.enabled"),
        "{err}"
    );
}

#[test]
fn carriers_are_allow_listed_by_peer_id_and_a_bad_one_stops_the_start() {
    let carrier = wisp_protocol::NodeKey::from_seed(&[6; 32]).id();
    let resolve = |list: &str| {
        RawSettings::load(
            None,
            env(&[
                ("WISP_RULES__PERMISSIONLESS", "true"),
                ("WISP_RULES__USAGE_CARRIERS", list),
            ]),
        )
        .unwrap()
        .resolve()
    };
    let s = resolve(&format!("[\"{carrier}\"]")).unwrap();
    assert!(s.rules.is_carrier(&carrier));
    assert!(!resolve("[]").unwrap().rules.is_carrier(&carrier));
    // A malformed key, or one listed twice, is named in the error.
    let err = resolve("[\"12D3KooWnope\"]").unwrap_err().to_string();
    assert!(
        err.contains("usage_carriers: \"12D3KooWnope\" is not an Ed25519 PeerId"),
        "{err}"
    );
    let err = resolve(&format!("[\"{carrier}\", \"{carrier}\"]"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("\"{carrier}\" is listed twice")),
        "{err}"
    );
}
