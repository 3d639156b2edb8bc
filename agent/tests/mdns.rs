//! mDNS discovery on a LAN: two nodes that know nothing of each other (no bootstrap peers)
//! find each other and connect.
//!
//! The LAN is a veth pair in a network namespace of the test's own: the test re-runs
//! itself under `unshare --net`, so no real network is touched. That needs root (a network
//! namespace and `ip link`), so the test is ignored by plain `cargo test`; `.ci/run` runs it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::time::Duration;

use wisp_agent::net::{self, NetConfig};
use wisp_protocol::NodeKey;

/// Set in the re-run inside the namespace.
const INNER: &str = "WISP_TEST_MDNS_INNER";
const NAME: &str = "two_nodes_without_bootstrap_peers_find_each_other_with_mdns";
/// The two ends of the LAN, one node on each.
const LAN_IPS: [&str; 2] = ["10.77.9.1", "10.77.9.2"];

#[test]
#[ignore = "needs root to create a network namespace; .ci/run runs it"]
fn two_nodes_without_bootstrap_peers_find_each_other_with_mdns() {
    if std::env::var_os(INNER).is_some() {
        return inside_the_namespace();
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates a network namespace and needs root (run it as root, as .ci/run does)"
    );
    // A veth pair is the LAN: what one end sends to the mDNS group arrives at the other.
    let [ip_a, ip_b] = LAN_IPS;
    let script = format!(
        "set -e
         ip link set lo up
         ip link add lan0 type veth peer name lan1
         ip addr add {ip_a}/24 dev lan0
         ip addr add {ip_b}/24 dev lan1
         ip link set lan0 up
         ip link set lan1 up
         exec \"$0\" {NAME} --exact --ignored --nocapture"
    );
    let status = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(INNER, "1")
        .status()
        .expect("unshare (util-linux) runs");
    assert!(status.success(), "the run inside the namespace failed");
}

fn inside_the_namespace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = |ip: &str| NetConfig {
            listen: vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()],
            bootstrap: Vec::new(),
            mdns: true,
            ..NetConfig::default()
        };
        let oracle = NodeKey::from_seed(&[0x0a; 32]).id();
        let a = net::start(
            &NodeKey::from_seed(&[1; 32]),
            &cfg(LAN_IPS[0]),
            oracle,
            None,
        )
        .unwrap();
        let b = net::start(
            &NodeKey::from_seed(&[2; 32]),
            &cfg(LAN_IPS[1]),
            oracle,
            None,
        )
        .unwrap();
        let (a_id, b_id) = (a.handle.local_peer_id(), b.handle.local_peer_id());
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let a_sees = a.handle.connected_peers().await.unwrap();
                let b_sees = b.handle.connected_peers().await.unwrap();
                if a_sees.contains(&b_id) && b_sees.contains(&a_id) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "the nodes did not find each other by mDNS");
        println!("connected by mDNS: {a_id} <-> {b_id}");
    });
}
