use super::*;

fn args(line: &str) -> Vec<OsString> {
    std::iter::once("wisp-agent")
        .chain(line.split_whitespace())
        .map(OsString::from)
        .collect()
}

/// Parses `line` without `WISP_CONFIG`.
fn check(line: &str) -> Result<Cmd, Exit> {
    parse(args(line), None)
}

/// The first line of a usage error's message.
fn error(line: &str) -> String {
    match check(line) {
        Err(Exit::Usage(m)) => {
            assert!(m.contains("\n\nUsage: wisp-agent "), "{m}");
            m.lines().next().unwrap().to_string()
        }
        other => panic!("{line}: {other:?}"),
    }
}

fn help(line: &str) -> String {
    match check(line) {
        Err(Exit::Help(h)) => h,
        other => panic!("{line}: {other:?}"),
    }
}

fn config(path: &str) -> Common {
    Common {
        config: Some(path.into()),
        ..Common::default()
    }
}

#[test]
fn every_subcommand_parses_with_its_defaults() {
    let c = Common::default;
    let cases = [
        ("run", Cmd::Run(c())),
        ("keygen", Cmd::Keygen(c())),
        (
            "onboard",
            Cmd::Onboard {
                common: c(),
                wait_s: 30,
            },
        ),
        ("device", Cmd::Device(c())),
        (
            "credentials",
            Cmd::Credentials {
                common: c(),
                password_file: "/etc/mosquitto/wisp.passwd".into(),
            },
        ),
        (
            "status",
            Cmd::Status {
                common: c(),
                peer: None,
                addr: None,
                timeout_s: 30,
                json: false,
            },
        ),
        ("config check", Cmd::ConfigCheck(c())),
    ];
    for (line, cmd) in cases {
        assert_eq!(check(line), Ok(cmd), "{line}");
    }
}

#[test]
fn options_take_their_value_attached_or_next() {
    let all = Common {
        config: Some("a.toml".into()),
        data_dir: Some("/var/lib/wisp".into()),
        broker: Some("mqtts://b:8883".into()),
        http_listen: Some("127.0.0.1:0".into()),
        log_format: Some("json".into()),
    };
    for line in [
        "run --config a.toml --data-dir /var/lib/wisp --broker mqtts://b:8883 \
         --http-listen 127.0.0.1:0 --log-format json",
        "run --config=a.toml --data-dir=/var/lib/wisp --broker=mqtts://b:8883 \
         --http-listen=127.0.0.1:0 --log-format=json",
        "run --log-format json --http-listen=127.0.0.1:0 -c a.toml --broker mqtts://b:8883 \
         --data-dir /var/lib/wisp",
    ] {
        assert_eq!(check(line), Ok(Cmd::Run(all.clone())), "{line}");
    }
    for line in ["keygen -c a.toml", "keygen -ca.toml", "keygen -c=a.toml"] {
        assert_eq!(check(line), Ok(Cmd::Keygen(config("a.toml"))), "{line}");
    }
    // The devnet's and the units' forms.
    assert_eq!(
        check("onboard --wait-s 20 -c n.toml"),
        Ok(Cmd::Onboard {
            common: config("n.toml"),
            wait_s: 20
        })
    );
    assert_eq!(
        check("credentials --password-file=/tmp/p -c x"),
        Ok(Cmd::Credentials {
            common: config("x"),
            password_file: "/tmp/p".into()
        })
    );
    assert_eq!(
        check("status --peer 12D3KooWx --addr /ip4/1.2.3.4/tcp/1 --json --timeout-s=5"),
        Ok(Cmd::Status {
            common: Common::default(),
            peer: Some("12D3KooWx".into()),
            addr: Some("/ip4/1.2.3.4/tcp/1".into()),
            timeout_s: 5,
            json: true,
        })
    );
    assert_eq!(
        check("config check --config /etc/wisp/agent.toml --data-dir /d"),
        Ok(Cmd::ConfigCheck(Common {
            data_dir: Some("/d".into()),
            ..config("/etc/wisp/agent.toml")
        }))
    );
    // A value may start with `=` or be `-` when attached or alone.
    assert_eq!(
        check("run --broker==x"),
        Ok(Cmd::Run(Common {
            broker: Some("=x".into()),
            ..Common::default()
        }))
    );
}

#[test]
fn wisp_config_is_the_fallback_of_config() {
    let env = |v: &str| Some(OsString::from(v));
    assert_eq!(
        parse(args("run"), env("env.toml")),
        Ok(Cmd::Run(config("env.toml")))
    );
    assert_eq!(
        parse(args("run -c flag.toml"), env("env.toml")),
        Ok(Cmd::Run(config("flag.toml")))
    );
    assert_eq!(parse(args("run"), env("")), Ok(Cmd::Run(Common::default())));
}

#[cfg(unix)]
#[test]
fn a_value_may_be_a_path_that_is_not_utf8() {
    use std::os::unix::ffi::OsStringExt as _;
    let path = OsString::from_vec(b"/tmp/\xff.toml".to_vec());
    let line = [
        OsString::from("wisp-agent"),
        "run".into(),
        "-c".into(),
        path.clone(),
    ];
    assert_eq!(
        parse(line, None),
        Ok(Cmd::Run(Common {
            config: Some(path.into()),
            ..Common::default()
        }))
    );
}

#[test]
fn usage_errors_say_what_is_wrong() {
    let cases = [
        (
            "",
            "error: 'wisp-agent' requires a subcommand but one was not provided",
        ),
        ("launch", "error: unrecognized subcommand 'launch'"),
        ("--verbose", "error: unexpected argument '--verbose' found"),
        (
            "config",
            "error: 'wisp-agent config' requires a subcommand but one was not provided",
        ),
        ("config show", "error: unrecognized subcommand 'show'"),
        ("run --nope", "error: unexpected argument '--nope' found"),
        ("run -x", "error: unexpected argument '-x' found"),
        ("run extra", "error: unexpected argument 'extra' found"),
        ("run --", "error: unexpected argument '--' found"),
        (
            "run --wait-s 3",
            "error: unexpected argument '--wait-s' found",
        ),
        (
            "run -c",
            "error: a value is required for '--config <CONFIG>' but none was supplied",
        ),
        (
            "run --config",
            "error: a value is required for '--config <CONFIG>' but none was supplied",
        ),
        (
            "run --broker --data-dir d",
            "error: a value is required for '--broker <BROKER>' but none was supplied",
        ),
        (
            "run -c a -c b",
            "error: the argument '--config <CONFIG>' cannot be used multiple times",
        ),
        (
            "onboard --wait-s soon",
            "error: invalid value 'soon' for '--wait-s <WAIT_S>': invalid digit found in string",
        ),
        (
            "status --timeout-s=-1",
            "error: invalid value '-1' for '--timeout-s <TIMEOUT_S>': invalid digit found in string",
        ),
        (
            "status --json=yes",
            "error: unexpected value 'yes' for '--json' found",
        ),
        ("help launch", "error: unrecognized subcommand 'launch'"),
    ];
    for (line, message) in cases {
        assert_eq!(error(line), message, "{line}");
    }
}

#[test]
fn help_and_version() {
    let top = help("--help");
    assert_eq!(help("-h"), top);
    assert_eq!(help("help"), top);
    assert!(top.starts_with(ABOUT), "{top}");
    for name in [
        "run",
        "keygen",
        "onboard",
        "device",
        "credentials",
        "status",
        "config",
        "help",
    ] {
        assert!(top.contains(&format!("\n  {name} ")), "{name}: {top}");
    }
    assert!(top.contains("-V, --version"));

    let run = help("run --help");
    assert_eq!(help("run -h"), run);
    assert_eq!(help("help run"), run);
    assert!(run.starts_with("Run the daemon.\n\nUsage: wisp-agent run [OPTIONS]\n"));
    assert!(run.contains("\n  -c, --config <CONFIG>  "), "{run}");
    assert!(run.contains("[env: WISP_CONFIG]"), "{run}");
    // Help wins over options parsed before it (the units' flags are checked this way).
    assert_eq!(
        help("run --config /etc/wisp/agent.toml --data-dir /d --help"),
        run
    );

    let status = help("status --help");
    for o in [
        "--peer <PEER>",
        "--addr <ADDR>",
        "--timeout-s <TIMEOUT_S>",
        "--json",
        "--broker",
    ] {
        assert!(status.contains(o), "{o}: {status}");
    }
    assert!(help("credentials -h").contains("`mosquitto_passwd` command"));
    assert!(help("onboard -h").contains("[default: 30]"));
    assert!(help("config --help").contains("\n  check  Validate the configuration"));
    assert_eq!(help("help config check"), help("config check --help"));

    let version = format!("wisp-agent {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(check("--version"), Err(Exit::Version(version.clone())));
    assert_eq!(check("-V"), Err(Exit::Version(version)));
}
