//! The network layer alone, over real loopback sockets: `/wisp/bw/1` plumbing and its size
//! limit, gossip validation, a node restarting with the same identity over QUIC
//! (rust-libp2p #5097), also after a crash its peer has not noticed yet (a UDP relay that goes
//! silent), discovery through the DHT with default settings, and failed requests that say why.
//! Timeouts only bound a hang; nothing asserts speed.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libp2p::Multiaddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

use wisp_agent::metrics::{GossipLabel, Metrics};
use wisp_agent::net::{self, KadMode, NetConfig, NetError, NetEvent, Network, Topic};
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Beacon, Witness};
use wisp_protocol::units::DeciDb;
use wisp_protocol::{Cell, NodeKey};

const HANG: Duration = Duration::from_secs(60);

fn cfg(listen: &str, bootstrap: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec![listen.parse().unwrap()],
        bootstrap,
        kad_mode: KadMode::Server,
        ..NetConfig::default()
    }
}

fn oracle() -> NodeKey {
    NodeKey::from_seed(&[0x0a; 32])
}

/// A valid witness by `by` of a beacon by `beaconer`; `n` makes each one distinct.
fn witness(by: &NodeKey, beaconer: &NodeKey, n: u64) -> Vec<u8> {
    let beacon = Envelope::sign(
        beaconer,
        &Beacon {
            epoch: 1,
            nonce: [1; 16].into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
            tx_ms: 1_000 + n,
        },
    )
    .to_bytes();
    Envelope::sign(
        by,
        &Witness {
            beacon,
            rssi: DeciDb(-700),
            snr: DeciDb(100),
            freq_khz: 2_412_000,
            rx_ms: 1_001 + n,
            cell: Cell::from_degrees(38.7, -9.101, 12).unwrap(),
        },
    )
    .to_bytes()
}

async fn listen_addr(n: &Network, want: &str) -> Multiaddr {
    tokio::time::timeout(HANG, async {
        loop {
            if let Some(a) = n
                .handle
                .listen_addrs()
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.to_string().contains(want))
            {
                return a.with(libp2p::multiaddr::Protocol::P2p(n.handle.local_peer_id()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap()
}

/// Waits for the next witness event, answering nothing else.
async fn next_witness(n: &mut Network) -> Vec<u8> {
    tokio::time::timeout(HANG, async {
        loop {
            match n.events.recv().await.unwrap() {
                NetEvent::Witness { bytes, .. } => return bytes,
                _ => continue,
            }
        }
    })
    .await
    .expect("no witness arrived")
}

/// Publishes until the message gets through (the first publish may precede the mesh, and
/// then nothing carries it): again every 5 s, until [`HANG`].
async fn publish_until_received(from: &Network, to: &mut Network, bytes: Vec<u8>) {
    let end = tokio::time::Instant::now() + HANG;
    loop {
        from.handle.try_publish(Topic::Poc, bytes.clone()).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let NetEvent::Witness { bytes: b, .. } = to.events.recv().await.unwrap() {
                    return b;
                }
            }
        })
        .await;
        match got {
            Ok(b) => {
                assert_eq!(b, bytes);
                return;
            }
            Err(_) => assert!(
                tokio::time::Instant::now() < end,
                "no witness arrived within {HANG:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bw_requests_round_trip_within_the_size_limit() {
    let a_key = NodeKey::from_seed(&[1; 32]);
    let b_key = NodeKey::from_seed(&[2; 32]);
    let a = net::start(
        &a_key,
        &cfg("/ip4/127.0.0.1/tcp/0", vec![]),
        oracle().id(),
        None,
    )
    .unwrap();
    let a_addr = listen_addr(&a, "/tcp/").await;
    let mut b = net::start(
        &b_key,
        &cfg("/ip4/127.0.0.1/tcp/0", vec![a_addr.clone()]),
        oracle().id(),
        None,
    )
    .unwrap();
    let b_peer = b.handle.local_peer_id();
    // b answers every bw request with the body reversed.
    let server = tokio::spawn(async move {
        let mut served = 0;
        while let Some(ev) = b.events.recv().await {
            if let NetEvent::BwRequest {
                body, responder, ..
            } = ev
            {
                let mut r = body.clone();
                r.reverse();
                responder.respond(r).await.unwrap();
                served += 1;
                if served == 2 {
                    return b;
                }
            }
        }
        panic!("b's events ended");
    });
    // b dialled a; wait for that connection (a knows b only through it).
    tokio::time::timeout(HANG, async {
        while !a.handle.connected_peers().await.unwrap().contains(&b_peer) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let body: Vec<u8> = (0..=255).cycle().take(4096).collect();
    let mut expect = body.clone();
    expect.reverse();
    let got = tokio::time::timeout(HANG, a.handle.bw_request(b_peer, body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, expect);
    let got = tokio::time::timeout(HANG, a.handle.bw_request(b_peer, b"x".to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"x");
    // Over the limit: refused before anything is sent.
    assert_eq!(
        a.handle.bw_request(b_peer, vec![0; 4097]).await,
        Err(NetError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
    let b = server.await.unwrap();
    assert!(
        b.handle
            .connected_peers()
            .await
            .unwrap()
            .contains(&a.handle.local_peer_id())
    );
    assert!(
        !b.handle
            .peer_addrs(a.handle.local_peer_id())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_the_same_identity_publishes_again_over_quic() {
    let a_key = NodeKey::from_seed(&[3; 32]);
    let b_key = NodeKey::from_seed(&[4; 32]);
    let other = NodeKey::from_seed(&[5; 32]);
    let mut a = net::start(
        &a_key,
        &cfg("/ip4/127.0.0.1/udp/0/quic-v1", vec![]),
        oracle().id(),
        None,
    )
    .unwrap();
    let a_addr = listen_addr(&a, "/quic-v1").await;
    for round in 0..3u64 {
        // Same key every round; a fresh port, as after a reboot.
        let b = net::start(
            &b_key,
            &cfg("/ip4/127.0.0.1/udp/0/quic-v1", vec![a_addr.clone()]),
            oracle().id(),
            None,
        )
        .unwrap();
        publish_until_received(&b, &mut a, witness(&b_key, &other, round)).await;
        // A crash: the task is aborted, nothing is closed politely.
        b.task.abort();
        let _ = b.task.await;
        println!("round {round}: delivered");
    }
}

/// A UDP relay in front of `to` that can be cut: from then on it drops every datagram both ways,
/// as a host that crashed or lost power would, so neither end hears of it (no close, no ICMP).
struct Relay {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(to).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let cut = cut.clone();
            async move {
                let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
                let mut client = None;
                loop {
                    tokio::select! {
                        Ok((n, from)) = front.recv_from(&mut up) => {
                            client = Some(from);
                            if !cut.load(Ordering::SeqCst) {
                                let _ = back.send(&up[..n]).await;
                            }
                        }
                        Ok(n) = back.recv(&mut down) => {
                            if let Some(c) = client.filter(|_| !cut.load(Ordering::SeqCst)) {
                                let _ = front.send_to(&down[..n], c).await;
                            }
                        }
                    }
                }
            }
        });
        Self { addr, cut, task }
    }

    /// `/ip4/127.0.0.1/udp/<port>/quic-v1/p2p/<peer>`: `peer`, reached through the relay.
    fn quic_addr(&self, peer: libp2p::PeerId) -> Multiaddr {
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{peer}", self.addr.port())
            .parse()
            .unwrap()
    }
}

/// The UDP port the oldest live connection of `n` to `peer` reaches it at.
async fn remote_port(n: &Network, peer: libp2p::PeerId) -> Option<u16> {
    let remotes = n.handle.remote_addrs().await.unwrap();
    let (_, a) = remotes.into_iter().find(|(p, _)| *p == peer)?;
    Some(udp_socket(&a).port())
}

/// The UDP socket address of a `/ip4/…/udp/…` multiaddr.
fn udp_socket(a: &Multiaddr) -> std::net::SocketAddr {
    use libp2p::multiaddr::Protocol;
    let (mut ip, mut port) = (None, None);
    for p in a {
        match p {
            Protocol::Ip4(i) => ip = Some(i),
            Protocol::Udp(u) => port = Some(u),
            _ => {}
        }
    }
    (ip.unwrap(), port.unwrap()).into()
}

/// A node `b` whose QUIC connection with `a` silently died (its host crashed) comes back with
/// the same key and dials `a` directly, before `a` can notice that the old connection is dead
/// (QUIC's idle timeout, 10 s). `a_dials_first` chooses who opened the old connection: `b`
/// (its bootstrap, through the relay) or `a` (through the relay to `b`). Gossip must flow both
/// ways over the new connection.
async fn restart_behind_a_dead_connection(seeds: [u8; 2], a_dials_first: bool) {
    let a_key = NodeKey::from_seed(&[seeds[0]; 32]);
    let b_key = NodeKey::from_seed(&[seeds[1]; 32]);
    let other = NodeKey::from_seed(&[seeds[1] + 1; 32]);
    let quic = "/ip4/127.0.0.1/udp/0/quic-v1";
    let mut a = net::start(&a_key, &cfg(quic, vec![]), oracle().id(), None).unwrap();
    let a_addr = listen_addr(&a, "/quic-v1").await;
    let b_peer = b_key.id().to_peer_id();
    let (mut b_old, relay) = if a_dials_first {
        let b = net::start(&b_key, &cfg(quic, vec![]), oracle().id(), None).unwrap();
        let relay = Relay::start(udp_socket(&listen_addr(&b, "/quic-v1").await)).await;
        a.handle.dial(relay.quic_addr(b_peer)).await.unwrap();
        (b, relay)
    } else {
        let relay = Relay::start(udp_socket(&a_addr)).await;
        let boot = vec![relay.quic_addr(a.handle.local_peer_id())];
        let b = net::start(&b_key, &cfg(quic, boot), oracle().id(), None).unwrap();
        (b, relay)
    };
    publish_until_received(&b_old, &mut a, witness(&b_key, &other, 0)).await;
    publish_until_received(&a, &mut b_old, witness(&a_key, &other, 1)).await;
    let relayed = remote_port(&a, b_peer).await.unwrap();
    // The crash: the path goes silent first, so not even a close reaches `a`.
    relay.cut.store(true, Ordering::SeqCst);
    b_old.task.abort();
    let _ = b_old.task.await;
    let mut b = net::start(&b_key, &cfg(quic, vec![a_addr]), oracle().id(), None).unwrap();
    let b_port = udp_socket(&listen_addr(&b, "/quic-v1").await).port();
    assert_ne!(relayed, b_port);
    publish_until_received(&b, &mut a, witness(&b_key, &other, 2)).await;
    publish_until_received(&a, &mut b, witness(&a_key, &other, 3)).await;
    // The dead connection is gone: `a` reaches `b` where `b` is now.
    assert_eq!(remote_port(&a, b_peer).await, Some(b_port));
    relay.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_before_its_peer_noticed_its_crash_publishes_again() {
    restart_behind_a_dead_connection([40, 41], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_before_the_peer_that_dialled_it_noticed_its_crash_publishes_again() {
    restart_behind_a_dead_connection([43, 44], true).await;
}

fn count(m: &Metrics, outcome: &'static str) -> u64 {
    m.gossip_received
        .get_or_create(&GossipLabel {
            topic: "wisp/poc/1",
            outcome,
        })
        .get()
}

/// Waits until `n` delivers `want`, skipping other witnesses.
async fn until_delivered(n: &mut Network, want: &[u8]) {
    while next_witness(n).await != want {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_gossip_is_rejected_and_not_forwarded() {
    // a — b — c in a line (connection limits keep it one): c hears a only through b.
    let keys: Vec<NodeKey> = (10..13).map(|i| NodeKey::from_seed(&[i; 32])).collect();
    let metrics: Vec<Arc<Metrics>> = (0..3).map(|_| Arc::new(Metrics::new("test"))).collect();
    let line = |max: u32, boot: Vec<Multiaddr>| NetConfig {
        max_connections: max,
        ..cfg("/ip4/127.0.0.1/tcp/0", boot)
    };
    let mut b = net::start(
        &keys[1],
        &line(2, vec![]),
        oracle().id(),
        Some(metrics[1].clone()),
    )
    .unwrap();
    let b_addr = listen_addr(&b, "/tcp/").await;
    let a = net::start(
        &keys[0],
        &line(1, vec![b_addr.clone()]),
        oracle().id(),
        Some(metrics[0].clone()),
    )
    .unwrap();
    let mut c = net::start(
        &keys[2],
        &line(1, vec![b_addr]),
        oracle().id(),
        Some(metrics[2].clone()),
    )
    .unwrap();
    // Valid witnesses from a until c has one: the line is up and the mesh formed.
    let beaconer = NodeKey::from_seed(&[20; 32]);
    let mut n = 0;
    let ready = tokio::time::timeout(HANG, async {
        loop {
            n += 1;
            a.handle
                .try_publish(Topic::Poc, witness(&keys[0], &beaconer, n))
                .unwrap();
            if tokio::time::timeout(Duration::from_millis(500), next_witness(&mut c))
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "no valid witness crossed a → b → c");
    assert_eq!(count(&metrics[1], "rejected"), 0);
    // A tampered witness (rssi changed after signing) is rejected by b and never reaches c;
    // the valid one after it does.
    let mut tampered = witness(&keys[0], &beaconer, 1_000);
    let len = tampered.len();
    tampered[len - 100] ^= 0x01;
    a.handle.try_publish(Topic::Poc, tampered).unwrap();
    let good = witness(&keys[0], &beaconer, 1_001);
    a.handle.try_publish(Topic::Poc, good.clone()).unwrap();
    until_delivered(&mut b, &good).await;
    until_delivered(&mut c, &good).await;
    assert_eq!(count(&metrics[1], "rejected"), 1);
    assert_eq!(
        count(&metrics[2], "rejected"),
        0,
        "c saw the tampered witness"
    );
    // A second invalid message (a self-witness) takes a below b's graylist threshold: b
    // ignores everything a sends from then on, valid or not.
    a.handle
        .try_publish(Topic::Poc, witness(&keys[0], &keys[0], 1_002))
        .unwrap();
    let after = witness(&keys[0], &beaconer, 1_003);
    a.handle.try_publish(Topic::Poc, after.clone()).unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(3), until_delivered(&mut b, &after)).await;
    assert!(quiet.is_err(), "a graylisted peer's message was delivered");
    assert_eq!(count(&metrics[2], "rejected"), 0);
}

/// Default settings but for an ephemeral loopback port.
fn default_on_loopback(bootstrap: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        ..NetConfig::default()
    }
}

/// Answers every `/wisp/bw/1` request of `n` with the body reversed, until `n` stops.
fn echo(mut n: Network) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = n.events.recv().await {
            if let NetEvent::BwRequest {
                body, responder, ..
            } = ev
            {
                let mut r = body;
                r.reverse();
                let _ = responder.respond(r).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_default_settings_find_each_other_through_the_dht() {
    // A private network (loopback), nobody configured as a DHT server: c and b each know only
    // a, and b reaches c by its peer id alone. Under libp2p's own rule no node here would
    // answer DHT queries (no external address is ever confirmed) and b would never find c.
    let a = net::start(
        &NodeKey::from_seed(&[20; 32]),
        &default_on_loopback(vec![]),
        oracle().id(),
        None,
    )
    .unwrap();
    let a_addr = listen_addr(&a, "/tcp/").await;
    let c = net::start(
        &NodeKey::from_seed(&[21; 32]),
        &default_on_loopback(vec![a_addr.clone()]),
        oracle().id(),
        None,
    )
    .unwrap();
    let c_peer = c.handle.local_peer_id();
    let c_handle = c.handle.clone();
    let _c = echo(c);
    let b = net::start(
        &NodeKey::from_seed(&[22; 32]),
        &default_on_loopback(vec![a_addr]),
        oracle().id(),
        None,
    )
    .unwrap();
    for n in [&a.handle, &b.handle, &c_handle] {
        assert!(
            n.dht_serving().await.unwrap(),
            "a node that can be reached serves"
        );
    }
    assert!(b.handle.peer_addrs(c_peer).await.unwrap().is_empty());
    // Until a has both in its routing table (identify must tell it they serve), the lookup
    // may come back empty: ask again.
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let got = tokio::time::timeout(HANG, b.handle.bw_request(c_peer, b"ping".to_vec()))
            .await
            .unwrap();
        match got {
            Ok(body) => {
                assert_eq!(body, b"gnip");
                break;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "b never found c: {e}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    assert!(!b.handle.peer_addrs(c_peer).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_says_why() {
    let a = net::start(
        &NodeKey::from_seed(&[30; 32]),
        &NetConfig {
            request_timeout: Duration::from_secs(1),
            ..default_on_loopback(vec![])
        },
        oracle().id(),
        None,
    )
    .unwrap();
    let ask = |peer| {
        let h = a.handle.clone();
        async move {
            tokio::time::timeout(HANG, h.bw_request(peer, b"x".to_vec()))
                .await
                .unwrap()
                .unwrap_err()
        }
    };
    // Nobody knows the peer.
    let unknown = NodeKey::from_seed(&[31; 32]).id().to_peer_id();
    let e = ask(unknown).await;
    assert_eq!(e, NetError::NotFound(unknown));
    assert!(e.to_string().contains("no address known"), "{e}");
    // A known address where nothing listens any more: the dial error, with the OS's reason.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = NodeKey::from_seed(&[32; 32]).id().to_peer_id();
    a.handle
        .add_address(
            gone,
            format!("/ip4/127.0.0.1/tcp/{closed}").parse().unwrap(),
        )
        .await
        .unwrap();
    match ask(gone).await {
        NetError::DialFailed { peer, why } => {
            assert_eq!(peer, gone);
            assert!(why.to_lowercase().contains("refused"), "{why}");
        }
        other => panic!("not a dial failure: {other}"),
    }
    // A peer that takes the request and never answers.
    let mut mute = net::start(
        &NodeKey::from_seed(&[33; 32]),
        &default_on_loopback(vec![]),
        oracle().id(),
        None,
    )
    .unwrap();
    let mute_peer = mute.handle.local_peer_id();
    a.handle
        .add_address(mute_peer, listen_addr(&mute, "/tcp/").await)
        .await
        .unwrap();
    let holder = tokio::spawn(async move {
        let mut unanswered = Vec::new();
        while let Some(ev) = mute.events.recv().await {
            if let NetEvent::BwRequest { responder, .. } = ev {
                unanswered.push(responder);
            }
        }
    });
    assert_eq!(ask(mute_peer).await, NetError::Timeout(mute_peer));
    holder.abort();
}
