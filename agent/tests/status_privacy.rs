//! Location privacy: an agent with a GNSS fix (the simulated receiver, at a position that is
//! not its cell's centre) is asked for its status over `/wisp/status/1` by a peer it has never
//! met. The peer gets the asserted cell at `net.status_cell_resolution` and no fix; the local
//! HTTP status and the heartbeats the oracle receives keep the full fix, and the retained MQTT
//! status shows no more than the libp2p answer.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use wisp_agent::net::{self, NetConfig};
use wisp_protocol::NodeKey;
use wisp_protocol::geo::{ASSERT_RESOLUTION, Cell};

/// Where the simulated receiver really is, degrees: 1e-7° digits an H3 res-6 cell cannot hold.
const LAT: f64 = 38.713_912_3;
const LON: f64 = -9.139_456_7;
/// Not the default (7), to show the setting is what the answer follows.
const RESOLUTION: u8 = 6;

#[test]
fn an_anonymous_peer_sees_a_coarse_cell_and_never_the_fix() {
    let broker = start_broker();
    let oracle = TestOracle::start(broker, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(dir.path(), broker, &oracle.key);
    env.extend(
        [
            ("WISP_DEVICE__KIND", "sim"),
            ("WISP_LOCATION__LAT", &LAT.to_string()),
            ("WISP_LOCATION__LON", &LON.to_string()),
            ("WISP_DEVICE__POSITION", &format!("{LAT},{LON}")),
            ("WISP_NET__STATUS_CELL_RESOLUTION", &RESOLUTION.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let agent = Agent::spawn(dir.path(), &env);
    let asserted = Cell::from_degrees(LAT, LON, ASSERT_RESOLUTION).unwrap();

    // The local HTTP status has the full fix (and the asserted cell) once the receiver has one.
    assert!(
        wait_for(Duration::from_secs(30), || !agent.status()["fix"].is_null()),
        "no GNSS fix on /status"
    );
    let status = agent.status();
    let lat_e7 = status["fix"]["lat_e7"].as_i64().unwrap();
    assert!((lat_e7 - 387_139_123).abs() < 2_000, "{status}");
    assert!(status["fix"]["alt_mm"].is_i64(), "{status}");
    assert_eq!(status["cell"], asserted.to_string());

    // So does every heartbeat bound for the oracle, signed after the fix.
    assert!(
        wait_for(Duration::from_secs(30), || oracle
            .seen
            .lock()
            .unwrap()
            .heartbeat_fix
            .is_some()),
        "no heartbeat with a fix reached the oracle"
    );
    let hb_fix = oracle.seen.lock().unwrap().heartbeat_fix.unwrap();
    assert!((i64::from(hb_fix.lat_e7) - 387_139_123).abs() < 2_000);

    // A peer with a fresh key, knowing only the node's address, asks over libp2p.
    let p2p: libp2p::Multiaddr = std::fs::read_to_string(dir.path().join("p2p.addr"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let peer = wisp_shell::keyfile::load(&dir.path().join("node.key"))
        .unwrap()
        .id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let remote = rt.block_on(async {
        let stranger = net::start(
            &NodeKey::from_seed(&[0x5e; 32]),
            &NetConfig {
                listen: vec![],
                ..NetConfig::default()
            },
            oracle.key.id(),
            None,
        )
        .unwrap();
        stranger
            .handle
            .add_address(peer.to_peer_id(), p2p)
            .await
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            stranger.handle.status_request(peer.to_peer_id()),
        )
        .await
        .unwrap()
        .unwrap()
    });
    assert_eq!(remote.peer, peer);
    assert_eq!(remote.report.fix, None);
    assert!(
        remote.report.health.gnss_ok,
        "the node has a fix, and says only that"
    );
    let cell = remote.report.cell.unwrap();
    assert_eq!(cell.resolution(), RESOLUTION);
    assert_eq!(cell, asserted.parent(RESOLUTION));
    assert!(remote.witnesses.is_empty());
    let json = serde_json::to_string(&remote.report).unwrap();
    assert!(!json.contains(&asserted.to_string()), "{json}");
    assert!(
        !json.contains("lat_e7") && !json.contains("alt_mm"),
        "{json}"
    );

    // The retained MQTT status, which anyone the broker lets subscribe reads, no finer.
    let topic = format!("wisp/v1/status/{peer}");
    assert!(wait_for(Duration::from_secs(60), || {
        let seen = oracle.seen.lock().unwrap();
        seen.status
            .get(&topic)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .is_some_and(|doc| doc["state"] == "online" && doc["device"]["gnss_ok"] == true)
    }));
    let doc: serde_json::Value =
        serde_json::from_str(&oracle.seen.lock().unwrap().status[&topic]).unwrap();
    assert!(doc["fix"].is_null(), "{doc}");
    assert_eq!(doc["cell"], cell.to_string());

    assert!(agent.stop().success());
}
