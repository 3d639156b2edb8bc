//! What the tests that run the real `wisp-oracle` binary share: the binary, a free port, a
//! polling wait, and a node's MQTT connection logged in to the embedded broker as itself (the
//! seed, acks and manifest pages it sees) with an onboarding to send first.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
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
