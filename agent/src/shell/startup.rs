//! Start-up: the node key, the data directory's files, and everything the daemon needs before
//! its loop turns (the store and what it saved, the status server, the network, the outbox,
//! the core, the MQTT client and the bandwidth tasks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::AsyncClient;
use tokio::sync::mpsc;
use tracing::{info, warn};
use wisp_protocol::NodeKey;
use wisp_protocol::msg::Versions;
use wisp_shell::broker_health::{BrokerHealth, REPORT_EVERY_MS};
use wisp_shell::keyfile;

use super::backhaul::{BwDone, BwIo, NetNegotiator, measure_queue, test_margin};
use super::mqtt::{self, Incoming, broker_url, mqtt_options, offline_status};
use super::{
    BEACON_MS, CLOCK_BLOB, Daemon, Faults, HEARTBEAT_MS, MEASURER_SET_BLOB, SEED_BLOB, random_u64,
};
use crate::VERSION;
use crate::backhaul::{self, Backhaul};
use crate::bandwidth::{Measurer, Prover};
use crate::clock::ClockSync;
use crate::config::Config;
use crate::core::{Core, CoreConfig, Proof};
use crate::device::DeviceIo;
use crate::metrics::Metrics;
use crate::net::{self, NetEvent, NetHandle};
use crate::outbox::Outbox;
use crate::status::Shared;
use crate::store::Store;
use crate::wallclock::{system_ms, wall_ms};

/// Loads the node key, creating it on first start (and its directory, 0700, if missing).
pub fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    let (key, created) = keyfile::open_or_create(path)?;
    if created {
        info!(peer_id = %key.id(), path = %path.display(), "created a new node key");
    }
    Ok(key)
}

/// The agent's outbox log in the data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(crate::store::FILE_NAME)
}

/// The outbox of agents before the log (SQLite), which this agent cannot read.
pub(super) const LEGACY_OUTBOX: &str = "outbox.db";

/// Opens the outbox log in `data_dir`, refusing a directory that still holds an older agent's
/// SQLite outbox: its pending proofs and heartbeat counter would be silently left behind.
pub(super) fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let legacy = data_dir.join(LEGACY_OUTBOX);
    if legacy.exists() {
        anyhow::bail!(
            "{} is the outbox of an older agent (SQLite), which this agent cannot read. Run the \
             previous version until its outbox is empty (`outbox_depth` 0 in `wisp-agent \
             status`), then remove {LEGACY_OUTBOX} (and its -wal and -shm files), or move them \
             away; removed while proofs are pending, those proofs are lost",
            legacy.display()
        );
    }
    Store::open(&store_path(data_dir))
        .with_context(|| format!("opening the outbox log in {}", data_dir.display()))
}

/// The file where a running agent writes its libp2p listen addresses (one multiaddr with
/// `/p2p/<peer id>` a line), for operators and tests.
pub fn p2p_addr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("p2p.addr")
}

/// The file where a running agent writes its status server's address.
pub fn http_addr_path(data_dir: &Path) -> PathBuf {
    data_dir.join("http.addr")
}

/// A started daemon and the channels its loop waits on.
pub(super) struct Started {
    pub(super) d: Daemon,
    /// What the MQTT task forwards.
    pub(super) rx: mpsc::Receiver<Incoming>,
    /// The MQTT task, given a moment at shutdown to put the last packets on the wire.
    pub(super) mqtt_task: tokio::task::JoinHandle<()>,
    /// The network's events, when it runs.
    pub(super) net_events: Option<mpsc::Receiver<NetEvent>>,
    /// What the bandwidth tasks hand back.
    pub(super) receipts_rx: mpsc::Receiver<BwDone>,
    /// The usage driver's co-signed receipts, with `usage.enabled`.
    pub(super) usage_rx: Option<mpsc::Receiver<Proof>>,
}

/// Opens and starts everything the daemon's loop needs (the rustls provider first).
pub(super) async fn start(
    cfg: Config,
    mut device: Box<dyn DeviceIo>,
    faults: Faults,
) -> anyhow::Result<Started> {
    // TLS to the broker uses rustls with the ring provider. Installed explicitly, because a
    // second provider compiled into the binary (libp2p brings aws-lc) would otherwise make
    // rustls refuse to pick one. A second install is an error we ignore.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Owner only: the key, the outbox and the addresses this process listens on.
    keyfile::create_private_dir(&cfg.data_dir)
        .with_context(|| format!("creating data_dir {}", cfg.data_dir.display()))?;
    let key = load_key(&cfg.key_file)?;
    let store = open_store(&cfg.data_dir)?;
    let heartbeat_seq = store.meta("heartbeat_seq")?;
    // When the last heartbeat was signed (0: never, or stored by an older agent).
    let heartbeat_ms = store.meta(HEARTBEAT_MS)?;
    let beacon_ms = store.meta(BEACON_MS)?;
    let saved_seed = store.blob(SEED_BLOB)?;
    let clock_interval = store
        .blob(CLOCK_BLOB)?
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map(u32::from_le_bytes);
    let saved_set = store.blob(MEASURER_SET_BLOB)?;
    let rows = store.load()?;
    let now = wall_ms();

    let metrics = Arc::new(Metrics::new(VERSION));
    let shared = Shared::new(metrics.clone());
    let listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding the status server to {} (http.listen)",
                cfg.http_listen
            )
        })?;
    let http_addr = listener.local_addr()?;
    let mut usage_io = None;
    let (net, net_events, p2p_listen) = if cfg.net.enabled {
        let mut n = net::start(&key, &cfg.net, cfg.oracle, Some(metrics.clone())).with_context(
            || "starting the libp2p network (check net.listen; set net.enabled = false to run without it)",
        )?;
        let listen = wait_for_listeners(&n.handle, cfg.net.listen.len()).await;
        wisp_shell::keyfile::replace_file(
            &p2p_addr_path(&cfg.data_dir),
            (listen.join("\n") + "\n").as_bytes(),
        )?;
        if cfg.usage.enabled {
            usage_io = Some(super::usage::UsageIo::new(&mut n, None, metrics.clone()));
        }
        (Some(n.handle), Some(n.events), listen)
    } else {
        (None, None, Vec::new())
    };
    wisp_shell::keyfile::replace_file(
        &http_addr_path(&cfg.data_dir),
        http_addr.to_string().as_bytes(),
    )?;
    let status = shared.clone();
    tokio::spawn(crate::http::serve(listener, move |req| {
        crate::status::respond(&status, req)
    }));

    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random: {e}"))?;
    let mut outbox = Outbox::new(cfg.outbox.clone(), u64::from_le_bytes(seed))
        .with_commit_interval(cfg.commit_interval_ms);
    for (row, bytes) in rows {
        let proof = Proof {
            id: row.id,
            kind: row.kind,
            bytes,
            created_ms: row.created_ms,
        };
        outbox.restore(row.seq, proof, now);
    }
    // Not connected yet: nothing is sent until the broker's ConnAck.
    outbox.disconnected();
    let firmware = device.firmware_version();
    let mut core_cfg = CoreConfig::new(cfg.cell, Versions::new(VERSION, &firmware));
    core_cfg.radio = cfg.radio;
    core_cfg.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
    let mut core = Core::new(key.clone(), core_cfg, cfg.oracle, now, heartbeat_seq);
    if heartbeat_ms > 0 {
        // A restart must not heartbeat sooner than the interval allows after the last one.
        core.resume_heartbeats(heartbeat_ms, now);
    }
    if beacon_ms > 0 {
        // Nor beacon twice in one epoch, nor stop witnessing in the epoch it beaconed in.
        core.resume_beacon(beacon_ms);
    }
    // Resume the last epoch at once: a broker need not re-send the retained seed to a client
    // resuming its session (rumqttd does not), and a restart must not stop the heartbeats.
    if let Some(bytes) = saved_seed
        && let Err(e) = core.resume_seed(&bytes, now)
    {
        warn!("ignoring the saved epoch seed: {e}");
    }
    if let Some(seed) = core.epoch() {
        device.set_epoch(seed);
    }

    let (client, eventloop) = AsyncClient::new(
        mqtt_options(&cfg.mqtt, &key, &cfg.oracle, Some(offline_status(&key)))?,
        64,
    );
    let (rx, mqtt_task) = mqtt::spawn_event_loop(eventloop);

    info!(
        peer_id = %key.id(),
        oracle = %cfg.oracle,
        broker = %broker_url(&cfg.mqtt),
        status = %http_addr,
        pending = outbox.len(),
        heartbeat_seq,
        "wisp-agent started"
    );
    if !cfg.mqtt.broker.tls && !cfg.mqtt.broker.is_loopback() {
        warn!(
            broker = %broker_url(&cfg.mqtt),
            "the broker login goes over the network in the clear: use mqtts://"
        );
    }

    let (receipts_tx, receipts_rx) = mpsc::channel::<BwDone>(64);
    // Every bandwidth task lives in this set, so none outlives the daemon (they hold the
    // network's handle, which keeps the swarm running).
    let mut bw_tasks = tokio::task::JoinSet::new();
    let bw = match &net {
        Some(n) if cfg.bandwidth.enabled => {
            let b = &cfg.bandwidth;
            let prover = Arc::new(Prover::new(
                key.clone(),
                b.test,
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ));
            let queue = b.measurer.then(|| {
                let (tx, rx) = mpsc::channel(backhaul::MAX_QUEUED);
                let m = faults.measurer(Measurer::new(key.clone(), b.test, b.listen, b.advertise));
                bw_tasks.spawn(measure_queue(
                    test_margin(&b.test),
                    m,
                    key.id(),
                    NetNegotiator(n.clone()),
                    tx.downgrade(),
                    rx,
                    receipts_tx.clone(),
                    metrics.clone(),
                ));
                tx
            });
            let mut state = Backhaul::new(key.id(), cfg.oracle, b.measurer);
            if let Some(seed) = core.epoch() {
                state.on_seed(seed, now, random_u64());
            }
            for part in saved_set
                .as_deref()
                .map(backhaul::unpack)
                .unwrap_or_default()
            {
                let _ = state.on_measurer_set(&part, now, random_u64());
            }
            Some(BwIo {
                state,
                prover,
                queue,
            })
        }
        _ => None,
    };

    // Proof of usage: the driver lives in the same set, so it stops with the daemon.
    let (mut usage_epoch, mut usage_rx) = (None, None);
    if let Some((io, link)) = usage_io {
        link.epoch.send_replace(core.epoch().map(|s| s.epoch));
        bw_tasks.spawn(super::usage::run(key.clone(), cfg.usage.clone(), io));
        usage_epoch = Some(link.epoch);
        usage_rx = Some(link.proofs);
    }
    let d = Daemon {
        usage_epoch,
        key,
        core,
        outbox,
        store: Arc::new(Mutex::new(store)),
        client,
        connected: false,
        broker: BrokerHealth::new(broker_url(&cfg.mqtt), REPORT_EVERY_MS),
        device,
        metrics,
        shared,
        next_status_ms: now,
        cfg,
        net,
        p2p_listen,
        p2p_peers: 0,
        bw,
        receipts_tx,
        last_backhaul: None,
        bw_tasks,
        clock: ClockSync::new(clock_interval, system_ms()),
    };
    Ok(Started {
        d,
        rx,
        mqtt_task,
        net_events,
        receipts_rx,
        usage_rx,
    })
}

/// The listen addresses with `/p2p/<peer id>`, once every configured listener is up (at
/// most ~2 s; a wildcard listener may report several addresses).
async fn wait_for_listeners(net: &NetHandle, configured: usize) -> Vec<String> {
    let me = net.local_peer_id();
    for _ in 0..100 {
        if let Ok(addrs) = net.listen_addrs().await
            && !addrs.is_empty()
            && addrs.len() >= configured
        {
            return addrs
                .into_iter()
                .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me)).to_string())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    warn!("the libp2p listeners are not up after 2 s");
    Vec::new()
}
