//! The network paths that need a LAN or public addresses, in a network namespace of the test's
//! own: each test re-runs itself under `unshare --net` with a veth pair as the network, so no
//! real network is touched. That needs root (a network namespace and `ip link`), so these
//! tests are ignored by plain `cargo test`; `.ci/run` runs them.
//!
//! - mDNS: two nodes that know nothing of each other (no bootstrap peers) find each other.
//! - autonat: a node learns its public address from a peer's observation and autonat's dial
//!   back, and that address is what a measurer gives provers (`NetHandle::public_ip`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use libp2p::Multiaddr;
use wisp_agent::net::{self, KadMode, NetConfig, Network};
use wisp_protocol::NodeKey;

/// Set in the re-run inside the namespace.
const INNER: &str = "WISP_TEST_NETNS_INNER";

/// Runs test `name` again inside a new network namespace whose veth pair `lan0`/`lan1` has
/// addresses `ips`; returns true when called inside it (the caller then runs the test body).
fn in_namespace(name: &str, ips: [&str; 2]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates a network namespace and needs root (run it as root, as .ci/run does)"
    );
    let [ip_a, ip_b] = ips;
    let script = format!(
        "set -e
         ip link set lo up
         ip link add lan0 type veth peer name lan1
         ip addr add {ip_a}/24 dev lan0
         ip addr add {ip_b}/24 dev lan1
         ip link set lan0 up
         ip link set lan1 up
         exec \"$0\" {name} --exact --ignored --nocapture"
    );
    let status = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(INNER, "1")
        .status()
        .expect("unshare (util-linux) runs");
    assert!(status.success(), "the run inside the namespace failed");
    false
}

fn runtime() -> tokio::runtime::Runtime {
    if let Ok(f) = std::env::var("WISP_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .try_init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn node(seed: u8, cfg: &NetConfig) -> Network {
    let oracle = NodeKey::from_seed(&[0x0a; 32]).id();
    net::start(&NodeKey::from_seed(&[seed; 32]), cfg, oracle, None).unwrap()
}

/// The node's first listen address with its `/p2p` suffix, once it listens.
async fn dial_addr(n: &Network) -> Multiaddr {
    loop {
        if let Some(a) = n.handle.listen_addrs().await.unwrap().first() {
            return a
                .clone()
                .with(libp2p::multiaddr::Protocol::P2p(n.handle.local_peer_id()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listening_on(ip: &str) -> NetConfig {
    NetConfig {
        listen: vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()],
        bootstrap: Vec::new(),
        ..NetConfig::default()
    }
}

#[test]
#[ignore = "needs root to create a network namespace; .ci/run runs it"]
fn two_nodes_without_bootstrap_peers_find_each_other_with_mdns() {
    const IPS: [&str; 2] = ["10.77.9.1", "10.77.9.2"];
    if !in_namespace(
        "two_nodes_without_bootstrap_peers_find_each_other_with_mdns",
        IPS,
    ) {
        return;
    }
    runtime().block_on(async {
        let cfg = |ip| NetConfig {
            mdns: true,
            ..listening_on(ip)
        };
        let (a, b) = (node(1, &cfg(IPS[0])), node(2, &cfg(IPS[1])));
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

#[test]
#[ignore = "needs root to create a network namespace; .ci/run runs it"]
fn autonat_confirms_the_address_a_peer_observed_and_measurers_use_it() {
    // Public addresses (autonat ignores private ones), on a network that exists only here.
    const IPS: [&str; 2] = ["1.2.3.4", "1.2.3.5"];
    if !in_namespace(
        "autonat_confirms_the_address_a_peer_observed_and_measurers_use_it",
        IPS,
    ) {
        return;
    }
    runtime().block_on(async {
        // The node under test knows nothing about its address; a peer dials it, tells it the
        // address it dialled (identify), and dials back when asked (autonat). (Both ends of the
        // veth pair are local to the namespace, so only an address someone dialled is seen
        // as it is: the node under test is the one dialled.)
        let tested = node(
            1,
            &NetConfig {
                kad_mode: KadMode::Server,
                ..listening_on(IPS[0])
            },
        );
        assert_eq!(tested.handle.public_ip().await, None);
        let tested_addr = dial_addr(&tested).await;
        let _peer = node(
            2,
            &NetConfig {
                bootstrap: vec![tested_addr],
                ..listening_on(IPS[1])
            },
        );
        let want: IpAddr = IPS[0].parse().unwrap();
        let found = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                if tested.handle.public_ip().await == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "no confirmed external address; external addresses: {:?}",
            tested.handle.external_addrs().await
        );
        println!(
            "confirmed external addresses: {:?}",
            tested.handle.external_addrs().await.unwrap()
        );
    });
}

#[test]
#[ignore = "needs root to create a network namespace; .ci/run runs it"]
fn a_node_autonat_finds_private_listens_through_a_relay_and_is_dialled_there() {
    // The relay has a public address; the other node's own address is never confirmed (both
    // ends of the veth pair are local to the namespace, so what the relay observes of it is
    // the relay's own IP, and the dial back fails): autonat calls it private.
    const IPS: [&str; 2] = ["1.2.3.4", "1.2.3.5"];
    if !in_namespace(
        "a_node_autonat_finds_private_listens_through_a_relay_and_is_dialled_there",
        IPS,
    ) {
        return;
    }
    runtime().block_on(async {
        let relay = node(
            1,
            &NetConfig {
                kad_mode: KadMode::Server,
                relay_server: true,
                ..listening_on(IPS[0])
            },
        );
        let relay_addr = dial_addr(&relay).await;
        let private = node(
            2,
            &NetConfig {
                bootstrap: vec![relay_addr.clone()],
                ..listening_on(IPS[1])
            },
        );
        let private_id = private.handle.local_peer_id();
        let circuit = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                if let Some(a) = private
                    .handle
                    .listen_addrs()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|a| {
                        a.iter()
                            .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
                    })
                {
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await
        .expect("the private node never listened through the relay");
        println!("listening through the relay: {circuit}");
        // Found private, the node stopped answering DHT queries (its addresses cannot be
        // dialled from outside); the relay, set to serve, serves.
        assert!(!private.handle.dht_serving().await.unwrap());
        assert!(relay.handle.dht_serving().await.unwrap());
        // A third node that knows only the relayed address reaches the private node.
        let third = node(3, &listening_on(IPS[0]));
        let via_relay = relay_addr
            .with(libp2p::multiaddr::Protocol::P2pCircuit)
            .with(libp2p::multiaddr::Protocol::P2p(private_id));
        third.handle.dial(via_relay.clone()).await.unwrap();
        let reached = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if third
                    .handle
                    .connected_peers()
                    .await
                    .unwrap()
                    .contains(&private_id)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "no connection through {via_relay}");
    });
}
