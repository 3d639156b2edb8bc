//! What the tests that run the real `wisp-oracle` binary share: the binary, a free port, a
//! polling wait, the running oracle (spawned on a data directory, killed when dropped) with a
//! raw HTTP exchange with its API, and a node's MQTT connection logged in to the embedded broker
//! as itself (the seed, acks and manifest pages it sees) with an onboarding to send first.
//!
//! Each test crate that declares `mod live;` compiles all of it and uses a part, hence the
//! `dead_code` allowance.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{Band, EpochSeed, Onboard, RewardManifest, Verdict, open_sealed_ack};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey, ProofId, topics};
use wisp_shell::clock::system_ms;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wisp-oracle");

/// A port the kernel handed out for `127.0.0.1:0`, for the embedded broker (which writes no
/// address file, unlike the HTTP API, which listens on `:0` itself).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs `cmd` to its end and prints its exit status and output under `what` (the test's output
/// shows them when it fails).
pub(crate) fn logged(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap();
    println!(
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `wisp-oracle run`, killed (and reaped) when dropped.
pub(crate) struct Oracle {
    child: Child,
    /// Its HTTP API, as it wrote it to `http.addr` in its data directory.
    pub(crate) api: SocketAddr,
    /// The port of its embedded broker.
    pub(crate) broker: u16,
    /// Its data directory (its key is `oracle.key` there).
    pub(crate) data: PathBuf,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wisp-oracle run` on SQLite in `data`, with epochs of `epoch_s` (settled after 1 s, 3 slots),
/// its broker on a free port, its API on an ephemeral one, no config file, and then the `WISP_…`
/// variables `vars` (set last, so they may override these). Returns once the broker accepts
/// connections and the API's status names the oracle's key and the open epoch.
pub(crate) fn spawn_oracle(data: &Path, epoch_s: u32, vars: &[(&str, &str)]) -> Oracle {
    // A restart must not read the address its predecessor wrote.
    let _ = std::fs::remove_file(data.join("http.addr"));
    let broker = free_port();
    let child = Command::new(BIN)
        .args(["run", "--data-dir", &data.display().to_string()])
        .env("WISP_BROKER__LISTEN", format!("127.0.0.1:{broker}"))
        .env("WISP_HTTP__LISTEN", "127.0.0.1:0")
        .env("WISP_EPOCH__DURATION_S", epoch_s.to_string())
        .env("WISP_EPOCH__SETTLE_S", "1")
        .env("WISP_EPOCH__SLOT_COUNT", "3")
        .env("WISP_LOG", "warn,rumqttd=off")
        .envs(vars.iter().copied())
        .env_remove("WISP_ORACLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut o = Oracle {
        child,
        api: "127.0.0.1:1".parse().unwrap(),
        broker,
        data: data.to_path_buf(),
    };
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(data.join("http.addr"))
                .ok()
                .and_then(|a| a.trim().parse().ok())
                .is_some_and(|a| {
                    o.api = a;
                    true
                })
        }),
        "the oracle did not start"
    );
    // Its first snapshot names its key (the API refuses other keys' grants by it).
    assert!(
        wait_for(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", broker)).is_ok() && {
                let status = wisp_shell::http_get::get(o.api, "/v1/status").unwrap_or_default();
                let status: Value = serde_json::from_str(&status).unwrap_or(Value::Null);
                status["oracle"].as_str().is_some_and(|s| !s.is_empty())
                    && status["epoch"].as_u64().is_some()
            }
        }),
        "the oracle's broker or API did not come up"
    );
    o
}

impl Oracle {
    /// One HTTP/1.0 exchange with the API, `body` sent as `content_type`: the status, the head
    /// in lower case (for its headers) and the body as JSON (`Null` if it is not).
    pub(crate) fn exchange(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String, Value) {
        let mut s = TcpStream::connect(self.api).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.api,
            body.len()
        )
        .unwrap();
        // A 413 may come, and the connection close, before all of a large body was sent.
        let _ = s.write_all(body);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            code,
            head.to_ascii_lowercase(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

/// What a node's connection saw: the current seed, acks, and manifest pages by epoch.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) seed: Option<EpochSeed>,
    pub(crate) acks: BTreeMap<ProofId, Verdict>,
    pub(crate) manifests: BTreeMap<u64, BTreeMap<u32, Vec<u8>>>,
}

/// One node logged in to the embedded broker with its key.
pub(crate) struct NodeConn {
    pub(crate) key: NodeKey,
    client: AsyncClient,
    pub(crate) seen: Arc<Mutex<Seen>>,
    rt: tokio::runtime::Runtime,
}

impl NodeConn {
    pub(crate) fn connect(broker: u16, oracle: &NodeKey, key: NodeKey) -> NodeConn {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut o = MqttOptions::new(format!("wisp-test-{}", key.id()), "127.0.0.1", broker);
        o.set_max_packet_size(2 << 20, 2 << 20);
        o.set_credentials(
            key.id().to_string(),
            wisp_protocol::login::password(&key, &oracle.id()),
        );
        let (client, mut events) = AsyncClient::new(o, 100);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, c, oracle_id) = (seen.clone(), client.clone(), oracle.id());
        let subs = [
            topics::acks(&key.id()),
            topics::EPOCH.to_string(),
            "wisp/v1/rewards/+".to_string(),
        ];
        rt.spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in &subs {
                            c.subscribe(t.clone(), QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut s = s.lock().unwrap();
                        if p.topic == topics::EPOCH {
                            if let Ok(o) = envelope::open::<EpochSeed>(&p.payload) {
                                s.seed = Some(o.msg);
                            }
                        } else if let Ok(o) = envelope::open::<RewardManifest>(&p.payload) {
                            assert_eq!(o.signer, oracle_id);
                            s.manifests
                                .entry(o.msg.epoch)
                                .or_default()
                                .insert(o.msg.page, p.payload.to_vec());
                        } else if let Ok(o) = open_sealed_ack(&p.payload) {
                            for e in o.ack.entries {
                                s.acks.insert(e.proof_id, e.verdict);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let n = NodeConn {
            key,
            client,
            seen,
            rt,
        };
        assert!(
            wait_for(Duration::from_secs(10), || n.seed().is_some()),
            "no epoch seed"
        );
        n
    }

    pub(crate) fn seed(&self) -> Option<EpochSeed> {
        self.seen.lock().unwrap().seed.clone()
    }

    /// Publishes `bytes` on the node's proof topic and waits for the oracle's verdict.
    pub(crate) fn send(&self, bytes: Vec<u8>) -> Verdict {
        let id = ProofId::of(&bytes);
        let (c, topic) = (self.client.clone(), topics::proofs(&self.key.id()));
        self.rt.block_on(async move {
            c.publish(topic, QoS::AtLeastOnce, false, bytes)
                .await
                .unwrap();
        });
        let mut v = None;
        assert!(
            wait_for(Duration::from_secs(10), || {
                v = self.seen.lock().unwrap().acks.get(&id).copied();
                v.is_some()
            }),
            "no ack for {id}"
        );
        v.unwrap()
    }
}

pub(crate) fn onboard(key: &NodeKey, owner: &str) -> Vec<u8> {
    let msg = Onboard {
        owner: owner.into(),
        cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
        antenna_gain: DeciDb(30),
        antenna_height_dm: 50,
        bands: vec![Band {
            low_khz: 2_400_000,
            high_khz: 2_483_500,
            max_eirp: DeciDb(200),
        }],
        measurer: false,
        issued_ms: system_ms(),
        attestation: None,
    };
    Envelope::sign(key, &msg).to_bytes()
}
