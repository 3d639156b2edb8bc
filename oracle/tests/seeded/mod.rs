//! A seeded oracle for the HTTP tests (`dashboard.rs`, `openapi.rs`): a real SQLite store with
//! stored proofs, a closed epoch that paid, one that paid nobody and an open one, and a worker
//! snapshot of four onboarded nodes and one funded subscriber; the router serves it on an ephemeral port and is asked
//! over plain HTTP/1.1.
// Test support: a panic is the right answer to a broken fixture; each test crate uses a part.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use crate::common::{EPOCH, Fixture, START};
use wisp_oracle::RulesConfig;
use wisp_oracle::engine::Row;
use wisp_oracle::metrics::Metrics;
use wisp_oracle::state::{Credits, MarkView, NodeView, Shared, Snapshot};
use wisp_oracle::store::{CloseMarks, Store};
use wisp_oracle::usage::Ledger;
use wisp_protocol::msg::{EpochParams, MANIFEST_PAGE_MAX, RewardEntry, RewardManifest, Verdict};
use wisp_protocol::{Kind, NodeKey, ProofId, Reason};
use wisp_shell::broker_health::BrokerHealth;

/// An owner string written to attack the page.
pub const HOSTILE: &str = "<script>alert(\"x\")</script>&'";
/// The emission of the epoch that paid nobody: it must not appear in its row.
pub const UNPAID_EMISSION: u64 = 777_000_000;
pub const UNPAID_EPOCH: u64 = EPOCH - 2;
pub const OPEN_EPOCH: u64 = EPOCH + 1;
pub const EMISSION: u64 = 1_000_000_000;

/// The key the seeded oracle signs its manifests with.
pub fn oracle_key() -> NodeKey {
    crate::common::key(60)
}

/// The signed manifest pages of `entries` (sorted by node, as the store returns them), paged
/// as the oracle pages them.
pub fn manifest_pages(epoch: u64, emission: u64, entries: &[RewardEntry]) -> Vec<Vec<u8>> {
    let leaves: Vec<[u8; 32]> = entries.iter().map(RewardEntry::leaf).collect();
    let root = wisp_protocol::merkle::root(&leaves);
    let chunks: Vec<&[RewardEntry]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(MANIFEST_PAGE_MAX).collect()
    };
    let page_count = u32::try_from(chunks.len()).unwrap();
    chunks
        .iter()
        .enumerate()
        .map(|(page, chunk)| {
            let m = RewardManifest {
                epoch,
                emission,
                entry_count: u32::try_from(entries.len()).unwrap(),
                root: wisp_protocol::bytes::ByteArray(root),
                page: u32::try_from(page).unwrap(),
                page_count,
                entries: chunk.to_vec(),
            };
            crate::common::sign_with(&oracle_key(), &m)
        })
        .collect()
}

/// The router on an ephemeral port, on a runtime of its own.
pub struct Server {
    _rt: tokio::runtime::Runtime,
    /// Where it listens.
    pub addr: SocketAddr,
}

pub fn serve(shared: Arc<Shared>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, wisp_oracle::http::router(shared)).await });
    Server { _rt: rt, addr }
}

/// Runs `f` on a runtime of its own (the store's calls are async; these tests are not).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub code: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: String,
    /// The `Link` header, if any.
    pub link: Option<String>,
}

/// `GET path` (already percent-encoded where it needs to be).
pub fn request(server: &Server, path: &str) -> Reply {
    exchange(server, "GET", path, None)
}

/// `POST path` with `body` as `application/octet-stream`.
pub fn post(server: &Server, path: &str, body: &[u8]) -> Reply {
    exchange(server, "POST", path, Some(body))
}

fn exchange(server: &Server, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    let mut s = TcpStream::connect(server.addr).unwrap();
    match body {
        None => write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap(),
        Some(b) => {
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
            .unwrap();
            // The server may answer (413) and close before it read all of a large body.
            let _ = s.write_all(b);
        }
    }
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |want: &str| {
        head.lines().skip(1).find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(want)
                .then(|| value.trim().to_string())
        })
    };
    let content_type = header("content-type");
    let link = header("link");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    Reply {
        code,
        content_type,
        body: body.to_string(),
        link,
    }
}

/// `GET path`: the status code and the body.
pub fn get(server: &Server, path: &str) -> (u16, String) {
    let r = request(server, path);
    (r.code, r.body)
}

pub fn shared(store: Store, snap: Snapshot) -> Arc<Shared> {
    Arc::new(Shared {
        snapshot: RwLock::new(snap),
        reader: store,
        metrics: Metrics::new(),
        connected: AtomicBool::new(true),
        broker: Mutex::new(BrokerHealth::new("mqtt://127.0.0.1:1883", 60_000)),
        retained: Mutex::new(std::collections::HashMap::new()),
        role: Mutex::new(wisp_oracle::state::Role::Alone),
        // No worker takes grants here: a grant posted gets the worker-less 503.
        grants: tokio::sync::mpsc::channel(1).0,
        carrier_limit: wisp_oracle::carrier_limit::CarrierLimit::default(),
        leaving: AtomicBool::new(false),
        unsubacked: tokio::sync::Notify::new(),
    })
}

/// Four nodes 250 m apart on a west–east line. Node 0 is paid in the last closed epoch, node 1
/// too but its location is not trusted, node 2 (with a hostile owner) is not paid, node 3 serves
/// a penalty. Nodes 1 and 2 witnessed node 0's beacon. Epoch 5 closed paying nobody, 7 closed
/// paying everything, 8 is open.
pub fn network(dir: &std::path::Path) -> (Fixture, Arc<Shared>) {
    let fx = Fixture::grid(4, 4, RulesConfig::permissionless(), EpochParams::default());
    let store = block_on(async {
        let mut store = Store::open_sqlite(&dir.join("oracle.db")).await.unwrap();

        let beacon = fx.beacon_msg(0);
        let beacon_bytes = fx.sign(0, &beacon);
        let rows: Vec<Row> = (1..3)
            .map(|j| {
                let envelope = fx.sign(j, &fx.witness_msg(j, &beacon_bytes, &beacon, 0));
                Row {
                    seq: j as u64,
                    id: ProofId::of(&envelope),
                    node: fx.ids[j],
                    kind: Kind::Witness,
                    epoch: Some(EPOCH),
                    received_ms: START + 1_000,
                    verdict: Verdict::Accepted,
                    envelope,
                }
            })
            .collect();
        store.insert_rows(&rows).await.unwrap();

        store
            .insert_epoch(UNPAID_EPOCH, b"seed-5", UNPAID_EMISSION, 0)
            .await
            .unwrap();
        assert!(
            store
                .commit_close(
                    UNPAID_EPOCH,
                    START - 1,
                    0,
                    &[],
                    CloseMarks::default(),
                    &manifest_pages(UNPAID_EPOCH, UNPAID_EMISSION, &[]),
                )
                .await
                .unwrap()
        );
        store
            .insert_epoch(EPOCH, b"seed-7", EMISSION, 0)
            .await
            .unwrap();
        let entry =
            |i: usize, owner: &str, [coverage, backhaul, uptime, usage]: [u64; 4]| RewardEntry {
                node: fx.ids[i],
                owner: owner.into(),
                amount: coverage + backhaul + uptime + usage,
                coverage,
                backhaul,
                uptime,
                usage,
            };
        let mut entries = vec![
            entry(0, "owner-zero", [400_000_000, 250_000_000, 100_000_000, 0]),
            entry(
                1,
                "owner-one",
                [150_000_000, 30_000_000, 50_000_000, 20_000_000],
            ),
        ];
        entries.sort_by_key(|e| e.node);
        let pages = manifest_pages(EPOCH, EMISSION, &entries);
        assert!(
            store
                .commit_close(
                    EPOCH,
                    START + 3_600_000,
                    3,
                    &entries,
                    CloseMarks::default(),
                    &pages,
                )
                .await
                .unwrap()
        );
        store
            .insert_epoch(OPEN_EPOCH, b"seed-8", EMISSION, 3)
            .await
            .unwrap();
        store
    });

    let view = |i: usize, owner: &str, trust: Option<u16>, down: Option<u64>| {
        let (lat, lon) = fx.cell(i).center();
        NodeView {
            peer_id: fx.ids[i].to_string(),
            owner: owner.into(),
            cell: fx.cell(i).to_string(),
            lat,
            lon,
            last_heartbeat_ms: Some(START),
            location_trust_bps: trust,
            down_bps: down,
            up_bps: down.map(|d| d / 5),
            penalized_through: None,
            marks: Vec::new(),
        }
    };
    let snap = Snapshot {
        oracle: "oracle-under-test".into(),
        epoch: Some(OPEN_EPOCH),
        open_epochs: vec![(OPEN_EPOCH, 4)],
        nodes: vec![
            view(0, "owner-zero", Some(10_000), Some(52_300_000)),
            view(1, "owner-one", Some(0), None),
            view(2, HOSTILE, None, Some(8_000_000)),
            NodeView {
                penalized_through: Some(OPEN_EPOCH),
                marks: vec![MarkView {
                    epoch: EPOCH,
                    reason: Reason::WrongEpoch.name(),
                }],
                ..view(3, "owner-three", Some(10_000), None)
            },
        ],
        proofs_stored: 2,
        credits: credits(),
    };
    (fx, shared(store, snap))
}

/// The subscriber the seeded oracle granted [`GRANTED_DC`].
pub fn subscriber() -> NodeKey {
    NodeKey::from_seed(&[50; 32])
}

/// What [`subscriber`] was granted.
pub const GRANTED_DC: u64 = 5_000;

/// A credit grant signed by `signer` for [`subscriber`].
pub fn grant_bytes(signer: &NodeKey, id: u8, amount_dc: u64) -> Vec<u8> {
    let msg = wisp_protocol::msg::CreditGrant {
        grant: [id; 16].into(),
        subscriber: wisp_protocol::SubscriberId::of(&subscriber()),
        amount_dc,
        issued_ms: START,
        memo: "seeded".into(),
    };
    crate::common::sign_with(signer, &msg)
}

/// The ledger of the seeded oracle: [`subscriber`] granted [`GRANTED_DC`].
fn credits() -> Credits {
    let oracle = oracle_key();
    let mut ledger = Ledger::new();
    let grant = crate::common::open(&grant_bytes(&oracle, 1, GRANTED_DC));
    ledger.apply_grant(&grant, &oracle.id()).unwrap();
    Credits::new(ledger, wisp_oracle::Rules::permissionless())
}
