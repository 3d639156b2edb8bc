//! Against a real Mosquitto broker (the production broker): delivery, the retained status and
//! the last will. Needs `WISP_TEST_MOSQUITTO=host:port`; `.ci/run` starts Mosquitto and sets it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::*;
use wisp_protocol::topics;

fn broker() -> String {
    std::env::var("WISP_TEST_MOSQUITTO")
        .expect("set WISP_TEST_MOSQUITTO=host:port of a Mosquitto broker (.ci/run starts one on 127.0.0.1:1883)")
}

#[test]
#[ignore = "needs Mosquitto: WISP_TEST_MOSQUITTO=127.0.0.1:1883"]
fn retained_status_is_online_then_offline_and_the_last_will_fires_on_a_crash() {
    let addr = broker();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let oracle = TestOracle::start_at(host, port.parse().unwrap(), 200);
    let dir = tempfile::tempdir().unwrap();
    let env = agent_env_at(dir.path(), &addr, &oracle.key);
    let agent = Agent::spawn(dir.path(), &env);
    let _ = agent.http_addr();
    let me = wisp_shell::keyfile::load(&dir.path().join("node.key"))
        .unwrap()
        .id();
    let topic = topics::status(&me);
    let state_is = |state: &str| {
        let want = format!("\"state\":\"{state}\"");
        wait_for(Duration::from_secs(15), || {
            oracle
                .seen
                .lock()
                .unwrap()
                .status
                .get(&topic)
                .is_some_and(|s| s.contains(&want))
        })
    };
    assert!(
        state_is("online"),
        "{:?}",
        oracle.seen.lock().unwrap().status
    );
    assert!(wait_for(Duration::from_secs(15), || agent
        .metric("wisp_proofs_accepted_total")
        >= 2.0));
    // Clean stop: the agent publishes "offline" itself.
    assert!(agent.stop().success());
    assert!(state_is("offline"));

    // Crash: the broker publishes the last will.
    let agent = Agent::spawn(dir.path(), &env);
    let _ = agent.http_addr();
    assert!(state_is("online"));
    agent.kill9();
    assert!(state_is("offline"), "the last will did not fire");
}

/// Runs a private Mosquitto with a TLS listener that requires a password (certificates made
/// with the OpenSSL CLI) and a plain anonymous listener for the test oracle.
struct TlsBroker {
    child: std::process::Child,
    tls_port: u16,
    plain_port: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &str, args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_broker() -> TlsBroker {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Mosquitto drops root privileges to its own user: let it read the test files.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(
        "openssl",
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=wisp-test-ca",
            ],
        ]
        .concat(),
        d,
    );
    run(
        "openssl",
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
        d,
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
        d,
    );
    run(
        "mosquitto_passwd",
        &["-c", "-b", "passwd", "hotspot", "s3cret-123"],
        d,
    );
    for f in ["ca.crt", "server.crt", "server.key", "passwd"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (tls_port, plain_port) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings true\npersistence false\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n\
         allow_anonymous false\npassword_file {d}/passwd\n\
         listener {plain_port} 127.0.0.1\nallow_anonymous true\n",
        d = d.display()
    );
    std::fs::write(d.join("mosquitto.conf"), conf).unwrap();
    let child = std::process::Command::new("mosquitto")
        .args(["-c", &d.join("mosquitto.conf").display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto not installed (Debian package `mosquitto`)");
    assert!(wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    }));
    TlsBroker {
        child,
        tls_port,
        plain_port,
        ca: d.join("ca.crt"),
        _dir: dir,
    }
}

#[test]
#[ignore = "needs Mosquitto: WISP_TEST_MOSQUITTO=127.0.0.1:1883"]
fn tls_with_username_and_password() {
    let _ = broker();
    let b = tls_broker();
    let oracle = TestOracle::start(b.plain_port, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(dir.path(), b.plain_port, &oracle.key);
    env.retain(|(k, _)| k != "WISP_MQTT__URL");
    env.push((
        "WISP_MQTT__URL".into(),
        format!("mqtts://127.0.0.1:{}", b.tls_port),
    ));
    env.push(("WISP_MQTT__CA_FILE".into(), b.ca.display().to_string()));
    env.push(("WISP_MQTT__USERNAME".into(), "hotspot".into()));
    env.push(("WISP_MQTT__PASSWORD".into(), "s3cret-123".into()));
    let agent = Agent::spawn(dir.path(), &env);
    assert!(
        wait_for(Duration::from_secs(20), || agent
            .metric("wisp_proofs_accepted_total")
            >= 3.0),
        "no acks over TLS: {}",
        agent.status()
    );
    assert!(agent.stop().success());

    // A wrong password never connects.
    let mut bad = env.clone();
    bad.retain(|(k, _)| k != "WISP_MQTT__PASSWORD");
    bad.push(("WISP_MQTT__PASSWORD".into(), "wrong".into()));
    let dir2 = tempfile::tempdir().unwrap();
    bad.retain(|(k, _)| k != "WISP_NODE__DATA_DIR");
    bad.push((
        "WISP_NODE__DATA_DIR".into(),
        dir2.path().display().to_string(),
    ));
    let agent = Agent::spawn(dir2.path(), &bad);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.status()["broker_connected"], false);
    assert_eq!(agent.metric("wisp_mqtt_connections_total"), 0.0);
}
