//! The shipped Mosquitto configuration (`deploy/mosquitto/wisp.conf` and `wisp.acl`, as
//! shipped but for its paths and port) on a private `mosquitto`, with the real `wisp-oracle`
//! and two real `wisp-agent`s logged in over TLS, set up as README "Running on Mosquitto"
//! says: a CA and a server certificate made with the OpenSSL CLI, the oracle's login added
//! with `mosquitto_passwd`, each node's with the command `wisp-agent credentials` prints, the
//! broker reloaded with SIGHUP.
//!
//! The agents onboard and their heartbeats are accepted (the oracle's API). A third node,
//! logged in as itself, publishes on another node's proof, status and ack topics and on every
//! topic of the oracle, and subscribes to everything: a subscriber logged in with read access
//! to all of `wisp/` sees none of its forgeries (Mosquitto drops a publish it does not allow,
//! and acks it all the same), and the node is sent only what
//! [`wisp_protocol::topics::may_subscribe`] lets it read, its own acks included. A monitor's
//! login reads and cannot publish; a wrong password, another network's login and no login
//! are refused.
//!
//! It needs `mosquitto`, `mosquitto_passwd` and `openssl`, so a plain `cargo test` skips it;
//! `.ci/run` runs it with `WISP_TEST_MOSQUITTO_BIN` set to the `mosquitto` binary. Without it
//! (or without the tools) the test fails, naming what is missing. The binaries come from the
//! same `cargo test --workspace` build (target/debug), as in `devnet.rs`.
// A poisoned lock of the test's own collectors is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectionError, Event, MqttOptions, Packet, QoS};
use wisp_devnet::devnet::http_get;
use wisp_protocol::envelope::{Envelope, EnvelopeRef};
use wisp_protocol::msg::{Heartbeat, Versions};
use wisp_protocol::topics::{self, Client as Who};
use wisp_protocol::{Kind, NodeId, NodeKey, login};
use wisp_shell::clock::system_ms;
use wisp_shell::keyfile;

const SHIPPED_CONF: &str = include_str!("../../deploy/mosquitto/wisp.conf");
const SHIPPED_ACL: &str = include_str!("../../deploy/mosquitto/wisp.acl");
/// A login of the test's own with read access to all of wisp/: it sees what gets through.
const OBSERVER: &str = "wisp-test-observer";

fn bin_dir() -> PathBuf {
    wisp_tests::bin_dir(&["wisp-agent", "wisp-oracle"])
}

/// Runs a command to its end; its standard output, or a panic with its standard error.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails naming the Debian package when `tool` cannot be started.
fn require(tool: &str, args: &[&str], package: &str) {
    if let Err(e) = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        panic!("cannot run `{tool}` ({e}): install it (Debian package `{package}`)");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Child processes, killed when the test ends however it ends.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) {
        let log = std::fs::File::create(log).expect("a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        self.0.push((name.to_string(), child));
    }

    fn pid(&self, name: &str) -> u32 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .expect("a started process")
    }

    /// An error naming the first process that exited.
    fn check_alive(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited ({status})"));
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A message one of the test's MQTT clients received.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
}

/// An MQTT client of the test's own over TLS, its events gathered by a thread.
struct Mqtt {
    client: Client,
    /// The first connection's outcome: `Ok` on a CONNACK, else the error.
    connected: Arc<Mutex<Option<Result<(), String>>>>,
    subacks: Arc<Mutex<usize>>,
    got: Arc<Mutex<Vec<Msg>>>,
}

impl Mqtt {
    fn connect(port: u16, ca: &[u8], login: Option<(&str, &str)>, client_id: &str) -> Mqtt {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(512 * 1024, 512 * 1024);
        if let Some((user, password)) = login {
            o.set_credentials(user, password);
        }
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: ca.to_vec(),
                alpn: None,
                client_auth: None,
            },
        ));
        let (client, mut conn) = Client::new(o, 64);
        let connected: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
        let subacks: Arc<Mutex<usize>> = Arc::default();
        let got: Arc<Mutex<Vec<Msg>>> = Arc::default();
        let (c2, s2, g2) = (connected.clone(), subacks.clone(), got.clone());
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c2.lock().unwrap().get_or_insert(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => *s2.lock().unwrap() += 1,
                    Ok(Event::Incoming(Packet::Publish(p))) => g2.lock().unwrap().push(Msg {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    }),
                    Ok(_) => {}
                    Err(ConnectionError::RequestsDone) => return,
                    Err(e) => {
                        let refused = matches!(e, ConnectionError::ConnectionRefused(_));
                        c2.lock().unwrap().get_or_insert(Err(format!("{e:?}")));
                        if refused {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                }
            }
        });
        Mqtt {
            client,
            connected,
            subacks,
            got,
        }
    }

    /// The first connection's outcome, waiting up to 10 s for it.
    fn outcome(&self) -> Result<(), String> {
        wait_for("a CONNACK or an error", Duration::from_secs(10), || {
            self.connected.lock().unwrap().is_some()
        })?;
        self.connected.lock().unwrap().clone().unwrap_or(Ok(()))
    }

    fn subscribe_all(&self, filters: &[&str]) -> Result<(), String> {
        let before = *self.subacks.lock().unwrap();
        for f in filters {
            self.client
                .subscribe(*f, QoS::AtLeastOnce)
                .map_err(|e| format!("subscribing to {f}: {e}"))?;
        }
        wait_for("the SUBACKs", Duration::from_secs(10), || {
            *self.subacks.lock().unwrap() >= before + filters.len()
        })
    }

    fn publish(&self, topic: &str, retain: bool, payload: &[u8]) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .map_err(|e| format!("publishing on {topic}: {e}"))
    }

    fn received(&self) -> Vec<Msg> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, topic: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .count()
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// The shipped wisp.conf with the test's paths and port; a test can only pass on the file as
/// shipped otherwise.
fn templated_conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let conf = SHIPPED_CONF
        .lines()
        .map(|l| {
            if l == "listener 8883" {
                format!("listener {port} 127.0.0.1")
            } else {
                l.replace("/etc/mosquitto/certs/", &format!("{d}/"))
                    .replace("/etc/mosquitto/ca_certificates/", &format!("{d}/"))
                    .replace("/etc/mosquitto/", &format!("{d}/"))
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        conf.contains(&format!("listener {port} 127.0.0.1")) && !conf.contains("/etc/"),
        "wisp.conf changed shape (its listener or paths); update this test:\n{conf}"
    );
    conf
}

/// Accepted heartbeats of `node` in the oracle's API.
fn accepted_heartbeats(api: SocketAddr, node: &str) -> usize {
    let Ok(body) = http_get(api, &format!("/v1/nodes/{node}")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["proofs"].as_array().map_or(0, |ps| {
        ps.iter()
            .filter(|p| p["kind"] == "heartbeat" && p["verdict"] == "accepted")
            .count()
    })
}

#[test]
#[ignore = "needs mosquitto, mosquitto_passwd and openssl: WISP_TEST_MOSQUITTO_BIN (.ci/run sets it)"]
fn on_the_shipped_mosquitto_config_nodes_log_in_and_speak_only_for_themselves() {
    let mosquitto = std::env::var("WISP_TEST_MOSQUITTO_BIN").unwrap_or_else(|_| {
        panic!(
            "set WISP_TEST_MOSQUITTO_BIN to the mosquitto binary, e.g. \
             WISP_TEST_MOSQUITTO_BIN=$(command -v mosquitto) (Debian packages `mosquitto` and \
             `openssl`; .ci/run installs them and sets it)"
        )
    });
    require(&mosquitto, &["-h"], "mosquitto");
    require("mosquitto_passwd", &["-h"], "mosquitto");
    require("openssl", &["version"], "openssl");
    let _ = rumqttc::tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let bins = bin_dir();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let d = tmp.path();
    let mut procs = Procs::default();

    // The certificates (README "Running on Mosquitto", step 1): a CA, and the broker's key and
    // certificate naming the address the clients connect to.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-noenc",
    ];
    run(Command::new("openssl")
        .current_dir(d)
        .args(["req", "-x509"])
        .args(ec)
        .args([
            "-keyout",
            "wisp-ca.key",
            "-out",
            "wisp-ca.crt",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=wisp test CA"]));
    run(Command::new("openssl")
        .current_dir(d)
        .args(["req"])
        .args(ec)
        .args(["-keyout", "wisp-broker.key", "-out", "wisp-broker.csr"])
        .args(["-subj", "/CN=127.0.0.1"]));
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
    run(Command::new("openssl").current_dir(d).args([
        "x509",
        "-req",
        "-in",
        "wisp-broker.csr",
        "-CA",
        "wisp-ca.crt",
        "-CAkey",
        "wisp-ca.key",
        "-CAcreateserial",
        "-out",
        "wisp-broker.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]));
    let ca_file = d.join("wisp-ca.crt");
    let ca = std::fs::read(&ca_file).expect("the CA certificate");

    // The oracle's login (step 2), the test observer's and a monitor's.
    let passwd = d.join("wisp.passwd");
    let secret = |who: &str| format!("{who}-{}-{}", std::process::id(), system_ms());
    let (oracle_pw, observer_pw, monitor_pw) =
        (secret("oracle"), secret("observer"), secret("monitor"));
    run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["wisp-oracle", &oracle_pw]));
    for (user, pw) in [(OBSERVER, &observer_pw), ("wisp-monitor", &monitor_pw)] {
        run(Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([user, pw]));
    }
    // As an operator writes it: with its line end.
    let oracle_pw_file = d.join("oracle.password");
    std::fs::write(&oracle_pw_file, format!("{oracle_pw}\n")).expect("the password file");
    std::fs::write(
        d.join("wisp.acl"),
        format!("{SHIPPED_ACL}\n# The test's observer.\nuser {OBSERVER}\ntopic read wisp/#\n"),
    )
    .expect("wisp.acl");

    // The broker: Debian's mosquitto.conf in short, and the shipped drop-in.
    let port = free_port();
    std::fs::create_dir_all(d.join("conf.d")).expect("conf.d");
    std::fs::create_dir_all(d.join("data")).expect("data");
    std::fs::write(d.join("conf.d/wisp.conf"), templated_conf(d, port)).expect("wisp.conf");
    // Run as the test's user (a root test would otherwise drop to `mosquitto`, who cannot
    // read the test's private directory).
    let user = run(Command::new("id").arg("-un")).trim().to_string();
    std::fs::write(
        d.join("mosquitto.conf"),
        format!(
            "user {user}\npersistence_location {}/data/\nlog_dest stderr\ninclude_dir {}/conf.d\n",
            d.display(),
            d.display()
        ),
    )
    .expect("mosquitto.conf");
    procs.spawn(
        "mosquitto",
        Command::new(&mosquitto)
            .arg("-c")
            .arg(d.join("mosquitto.conf")),
        &d.join("mosquitto.log"),
    );
    let log =
        |name: &str| std::fs::read_to_string(d.join(format!("{name}.log"))).unwrap_or_default();
    if let Err(e) = wait_for("mosquitto listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }) {
        panic!("{e}\n--- mosquitto.log\n{}", log("mosquitto"));
    }

    // The oracle, over mqtts with its login and the CA.
    let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let oracle_cfg = d.join("oracle.toml");
    std::fs::write(
        &oracle_cfg,
        format!(
            "[oracle]\ndata_dir = {:?}\n\
             [broker]\nurl = \"mqtts://127.0.0.1:{port}\"\nusername = \"wisp-oracle\"\n\
             password_file = {:?}\nca_file = {:?}\n\
             [epoch]\nduration_s = 60\nheartbeat_interval_s = 2\nsettle_s = 5\n\
             [http]\nlisten = \"{api}\"\n[rules]\npermissionless = true\n",
            d.join("oracle").display().to_string(),
            oracle_pw_file.display().to_string(),
            ca_file.display().to_string(),
        ),
    )
    .expect("oracle.toml");
    // `check` shows the broker, never its password.
    let check = run(Command::new(bins.join("wisp-oracle"))
        .args(["check", "-c"])
        .arg(&oracle_cfg));
    assert!(
        check.contains("tls: true") && check.contains("<redacted>"),
        "{check}"
    );
    assert!(
        !check.contains(&oracle_pw),
        "check shows the password: {check}"
    );
    let oracle_id: NodeId = run(Command::new(bins.join("wisp-oracle"))
        .args(["key", "-c"])
        .arg(&oracle_cfg))
    .trim()
    .parse()
    .expect("the oracle's peer id");
    procs.spawn(
        "oracle",
        Command::new(bins.join("wisp-oracle"))
            .args(["run", "-c"])
            .arg(&oracle_cfg),
        &d.join("oracle.log"),
    );

    let result = (|| -> Result<(), String> {
        wait_for(
            "the oracle ready (connected to Mosquitto)",
            Duration::from_secs(30),
            || http_get(api, "/readyz").is_ok(),
        )?;
        procs.check_alive()?;
        let observer = Mqtt::connect(port, &ca, Some((OBSERVER, &observer_pw)), "observer");
        observer.outcome()?;
        observer.subscribe_all(&["wisp/#"])?;

        // Two agents: a key, the login `credentials` prints, run as printed (step 3), and a
        // reload of the broker (step 4).
        let mut agents = Vec::new();
        for name in ["agent-a", "agent-b"] {
            let dir = d.join(name);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let cfg = d.join(format!("{name}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[node]\ndata_dir = {:?}\nowner = \"owner-{name}\"\n\
                     [oracle]\npublic_key = \"{oracle_id}\"\n\
                     [mqtt]\nurl = \"mqtts://127.0.0.1:{port}\"\nca_file = {:?}\nkeep_alive_s = 10\n\
                     [http]\nlisten = \"127.0.0.1:0\"\n[location]\nlat = 38.7\nlon = -9.1\n\
                     [heartbeat]\ninterval_s = 2\n[net]\nenabled = false\n[bandwidth]\nenabled = false\n",
                    dir.display().to_string(),
                    ca_file.display().to_string(),
                ),
            )
            .map_err(|e| e.to_string())?;
            let id = run(&mut agent_cmd(&bins, &cfg, &["keygen"]))
                .trim()
                .to_string();
            let printed = run(&mut agent_cmd(
                &bins,
                &cfg,
                &[
                    "credentials",
                    "--password-file",
                    &passwd.display().to_string(),
                ],
            ));
            let line = printed.lines().last().unwrap_or_default();
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() != Some(&"mosquitto_passwd") || !line.contains(&id) {
                return Err(format!(
                    "credentials printed no command for {id}:\n{printed}"
                ));
            }
            run(Command::new(words[0]).args(&words[1..]));
            agents.push((name, id, cfg, dir));
        }
        // The attacker: a node with a login of its own.
        let mallory = NodeKey::from_seed(&[0x4d; 32]);
        let mallory_id = mallory.id();
        let mallory_pw = login::password(&mallory, &oracle_id);
        run(Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([mallory_id.to_string().as_str(), &mallory_pw]));
        run(Command::new("kill").args(["-HUP", &procs.pid("mosquitto").to_string()]));
        // The reload is done when the new login works.
        let m = wait_for_login(port, &ca, &mallory_id.to_string(), &mallory_pw)?;

        for (name, id, cfg, _) in &agents {
            let out = agent_cmd(&bins, cfg, &["onboard", "--wait-s", "30"])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "onboarding {name} ({id}) over Mosquitto failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            procs.spawn(
                name,
                &mut agent_cmd(&bins, cfg, &["run"]),
                &d.join(format!("{name}.log")),
            );
        }
        for (name, id, _, _) in &agents {
            wait_for(
                &format!("two accepted heartbeats of {name}"),
                Duration::from_secs(60),
                || accepted_heartbeats(api, id) >= 2,
            )?;
        }
        procs.check_alive()?;
        let (a, b) = (agents[0].1.clone(), agents[1].1.clone());
        let a_id: NodeId = a.parse().map_err(|_| "agent-a's peer id")?;

        // Mallory subscribes to everything, then forges on every topic not hers.
        m.subscribe_all(&[
            &topics::acks(&mallory_id),
            &topics::acks(&a_id),
            "wisp/v1/acks/+",
            topics::PROOFS_FILTER,
            "#",
            topics::EPOCH,
        ])?;
        let (acks_a, proofs_a) = (
            observer.count(&topics::acks(&a_id)),
            observer.count(&topics::proofs(&a_id)),
        );
        let forged = format!("forged by mallory {}", system_ms()).into_bytes();
        let forgeries = [
            (topics::proofs(&a_id), false),
            (format!("wisp/v1/proofs/{b}"), false),
            (topics::status(&a_id), true),
            (topics::acks(&a_id), false),
            (topics::EPOCH.to_string(), true),
            (topics::CLOCK.to_string(), true),
            (topics::measurers(0), true),
            (topics::rewards(0), true),
            ("wisp/v1/other".to_string(), false),
            (format!("{}/x", topics::proofs(&mallory_id)), false),
        ];
        for (topic, retain) in &forgeries {
            m.publish(topic, *retain, &forged)?;
        }
        // Then a heartbeat on her own topic: it gets through, and the oracle acks it (an
        // unknown node) on her acks topic.
        let heartbeat = Envelope::sign(
            &mallory,
            &Heartbeat {
                epoch: 0,
                seq: 1,
                uptime_s: 1,
                sent_ms: system_ms(),
                fix: None,
                cell: None,
                versions: Versions::new("0.1.0", "test"),
                peers: 0,
            },
        )
        .to_bytes();
        m.publish(&topics::proofs(&mallory_id), false, &heartbeat)?;
        wait_for(
            "mallory's own heartbeat at the observer",
            Duration::from_secs(20),
            || {
                observer
                    .received()
                    .iter()
                    .any(|x| x.topic == topics::proofs(&mallory_id) && x.payload == heartbeat)
            },
        )?;
        wait_for(
            "the oracle's ack to mallory",
            Duration::from_secs(20),
            || m.count(&topics::acks(&mallory_id)) >= 1,
        )?;
        // agent-a goes on: more acks and proofs on its topics, which mallory must not get.
        wait_for(
            "two more acks and a proof of agent-a",
            Duration::from_secs(30),
            || {
                observer.count(&topics::acks(&a_id)) >= acks_a + 2
                    && observer.count(&topics::proofs(&a_id)) > proofs_a
            },
        )?;

        let through: Vec<String> = observer
            .received()
            .iter()
            .filter(|x| x.payload == forged)
            .map(|x| x.topic.clone())
            .collect();
        if !through.is_empty() {
            return Err(format!("mallory's forgeries got through on {through:?}"));
        }
        let me = Who::Node(mallory_id);
        let leaked: Vec<String> = m
            .received()
            .iter()
            .filter(|x| !topics::may_subscribe(&me, &x.topic))
            .map(|x| x.topic.clone())
            .collect();
        if !leaked.is_empty() {
            return Err(format!(
                "mallory was sent topics she may not read: {leaked:?}"
            ));
        }
        if m.count(topics::EPOCH) == 0 {
            return Err("mallory was not sent the epoch seed (a public topic)".into());
        }
        // The oracle stored nothing forged for agent-a.
        let body = http_get(api, &format!("/v1/nodes/{a}")).map_err(|e| format!("{e:#}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let refused: Vec<&serde_json::Value> = v["proofs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["verdict"] != "accepted")
            .collect();
        if !refused.is_empty() {
            return Err(format!("agent-a has refused proofs: {refused:?}"));
        }

        // A monitor reads the retained broadcasts (the oracle's, not a forgery) and publishes
        // nothing.
        let monitor = Mqtt::connect(port, &ca, Some(("wisp-monitor", &monitor_pw)), "monitor");
        monitor.outcome()?;
        monitor.subscribe_all(&[topics::EPOCH, "wisp/v1/status/+"])?;
        wait_for(
            "the retained seed at the monitor",
            Duration::from_secs(10),
            || monitor.count(topics::EPOCH) >= 1,
        )?;
        let seed = monitor
            .received()
            .into_iter()
            .find(|x| x.topic == topics::EPOCH)
            .map(|x| x.payload)
            .unwrap_or_default();
        match EnvelopeRef::parse(&seed) {
            Ok(env) if env.kind == Kind::EpochSeed && env.signer_id() == oracle_id => {}
            other => return Err(format!("the retained seed is not the oracle's: {other:?}")),
        }
        monitor.publish(topics::EPOCH, true, &forged)?;
        monitor.publish("wisp/v1/proofs/wisp-monitor", false, &forged)?;
        monitor.publish(&topics::proofs(&mallory_id), false, &heartbeat)?;
        m.publish(
            &topics::status(&mallory_id),
            true,
            b"{\"state\":\"marker\"}",
        )?;
        wait_for(
            "mallory's status at the observer",
            Duration::from_secs(10),
            || observer.count(&topics::status(&mallory_id)) >= 1,
        )?;
        let through = observer
            .received()
            .iter()
            .filter(|x| x.payload == forged)
            .count()
            + observer
                .received()
                .iter()
                .filter(|x| x.payload == heartbeat)
                .count()
                .saturating_sub(1);
        if through != 0 {
            return Err(format!("{through} of the monitor's publishes got through"));
        }
        for (name, id, _, _) in &agents {
            if !monitor
                .received()
                .iter()
                .any(|x| x.topic == format!("wisp/v1/status/{id}"))
            {
                return Err(format!("the monitor was not sent {name}'s status"));
            }
        }

        // Refused logins: a wrong password, agent-a's name with another network's login, no
        // login at all.
        let a_key = keyfile::load(&agents[0].3.join("node.key")).map_err(|e| e.to_string())?;
        let other_network = login::password(&a_key, &NodeKey::from_seed(&[1; 32]).id());
        for (what, login) in [
            ("a wrong password", Some((a.as_str(), "wisp1.wrong"))),
            (
                "another network's login",
                Some((a.as_str(), other_network.as_str())),
            ),
            ("no login", None),
        ] {
            let c = Mqtt::connect(port, &ca, login, "intruder");
            match c.outcome() {
                Err(e) if e.contains("NotAuthorized") || e.contains("BadUserNamePassword") => {}
                other => return Err(format!("{what}: {other:?}, expected a refusal")),
            }
        }
        // `onboard` while the agent runs: on this broker they share one client id (the
        // username), so `onboard` takes the connection over for the moment it needs and the
        // agent takes it back.
        let before = accepted_heartbeats(api, &a);
        let out = agent_cmd(&bins, &agents[0].2, &["onboard", "--wait-s", "30"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "onboarding agent-a again while it runs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        wait_for(
            "two more accepted heartbeats of agent-a after it onboarded again",
            Duration::from_secs(30),
            || accepted_heartbeats(api, &a) >= before + 2,
        )?;
        procs.check_alive()
    })();
    drop(procs);
    if let Err(e) = result {
        panic!(
            "{e}\n--- mosquitto.log (last 4 KB)\n{}\n--- oracle.log (last 4 KB)\n{}\n--- agent-a.log (last 2 KB)\n{}",
            tail(&log("mosquitto"), 4096),
            tail(&log("oracle"), 4096),
            tail(&log("agent-a"), 2048),
        );
    }
}

/// `wisp-agent <args> -c <cfg>`.
fn agent_cmd(bins: &Path, cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bins.join("wisp-agent"));
    c.args(args).arg("-c").arg(cfg).env_remove("WISP_CONFIG");
    c
}

/// A connection as `user` once the broker takes the login (after a reload).
fn wait_for_login(port: u16, ca: &[u8], user: &str, password: &str) -> Result<Mqtt, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = Mqtt::connect(port, ca, Some((user, password)), "login-probe");
        match c.outcome() {
            Ok(()) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{user} cannot log in after the reload: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
