//! The oracle's HTTP API (JSON) and dashboard.
//!
//! `GET /` dashboard (rendered here, in [`dashboard`], from the same reads as the JSON
//! handlers) · `/healthz` · `/readyz` · `/metrics` · `/openapi.json` · `/v1/status` ·
//! `/v1/summary` · `/v1/nodes` · `/v1/nodes/{peer_id}` · `/v1/epochs` ·
//! `/v1/epochs/{epoch}/rewards` · `/v1/epochs/{epoch}/rewards/{peer_id}` · `/v1/rejections` ·
//! `/v1/witness-links` · `/v1/subscribers/{peer_id}` · `POST /v1/credits` ·
//! `POST /v1/usage/carrier` · `POST /v1/usage/carrier/batch`. [`credits`] holds the data
//! credits' two (the operator's grants in, a subscriber's balance out), [`carrier`]
//! allow-listed carriers' usage reports in, one a request, [`batch`] many a request, both
//! behind [`crate::carrier_limit`], the rate limit per carrier. [`monitor`] holds what a network monitor reads: the node list's filters
//! and pages, one entry's Merkle inclusion proof, the summary, and a node's status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use wisp_protocol::msg::{RewardEntry, Verdict};
use wisp_protocol::{NodeId, Reason};

use crate::state::{Role, Shared, Snapshot};
use crate::store::{EpochRow, Store, StoreError};

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/summary", get(monitor::summary))
        .route("/v1/nodes", get(monitor::nodes))
        .route("/v1/nodes/{peer_id}", get(node))
        .route("/v1/epochs", get(epochs))
        .route("/v1/epochs/{epoch}/rewards", get(rewards))
        .route(
            "/v1/epochs/{epoch}/rewards/{peer_id}",
            get(monitor::reward_proof),
        )
        .route("/v1/rejections", get(rejections))
        .route("/v1/witness-links", get(witness_links))
        .route("/v1/subscribers/{peer_id}", get(credits::subscriber))
        .route(
            "/v1/credits",
            post(credits::grant).layer(DefaultBodyLimit::max(credits::GRANT_BODY_MAX)),
        )
        .route(
            "/v1/usage/carrier",
            post(carrier::report).layer(DefaultBodyLimit::max(carrier::CARRIER_BODY_MAX)),
        )
        .route(
            "/v1/usage/carrier/batch",
            post(batch::reports).layer(DefaultBodyLimit::max(batch::BATCH_BODY_MAX)),
        )
        .with_state(shared)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Why the broker is not usable (its URL, the last error, the failed attempts), if it is not.
fn broker_trouble(s: &Shared) -> Option<String> {
    if s.connected.load(Ordering::Relaxed) {
        return None;
    }
    Some(
        s.broker
            .lock()
            .ok()
            .and_then(|b| b.reason())
            .unwrap_or_else(|| "MQTT broker not connected".into()),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    match broker_trouble(&s) {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not connected to the broker: {why}\n"),
        )
            .into_response(),
    }
}

/// This process's role among the oracle processes of its database.
fn role(s: &Shared) -> Role {
    s.role.lock().map_or(Role::Alone, |r| *r)
}

/// Ready when proofs can arrive: connected to the broker, and leading if it shares its
/// database with other oracle processes. When not, the body says why.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if role(&s) == Role::Standby {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: standing by, another oracle process leads\n",
        )
            .into_response();
    }
    match broker_trouble(&s) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// The snapshot the worker published last.
fn snapshot(s: &Shared) -> Snapshot {
    s.snapshot.read().map(|x| x.clone()).unwrap_or_default()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let snap = snapshot(&s);
    Json(json!({
        "oracle": snap.oracle,
        "epoch": snap.epoch,
        "open_epochs": snap.open_epochs.iter().map(|(e, n)| json!({"epoch": e, "queued": n})).collect::<Vec<_>>(),
        "nodes": snap.nodes.len(),
        "proofs_stored": snap.proofs_stored,
        "broker_connected": s.connected.load(Ordering::Relaxed),
        "role": role(&s).name(),
    }))
    .into_response()
}

fn entry_json(epoch: u64, e: &RewardEntry) -> serde_json::Value {
    json!({ "epoch": epoch, "amount": e.amount, "coverage": e.coverage, "backhaul": e.backhaul, "uptime": e.uptime, "usage": e.usage, "owner": e.owner })
}

/// A path parameter that does not parse (not UTF-8, not a number, out of range) is the
/// client's error: a 400 in the API's JSON error shape, as the OpenAPI document says.
fn bad_path(rejection: &PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, rejection.body_text())
}

/// A peer id from a path (a node's or a subscriber's): one that does not parse is a 400 in
/// the API's JSON error shape.
fn peer<T: std::str::FromStr>(peer_id: &str) -> Result<T, Box<Response>> {
    peer_id.parse().map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("`{peer_id}` is not an ed25519 peer id"),
        ))
    })
}

async fn node(
    State(s): State<Arc<Shared>>,
    peer_id: Result<Path<String>, PathRejection>,
) -> Response {
    let peer_id = match peer_id {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(&e),
    };
    let id = match peer::<NodeId>(&peer_id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    // The node as the snapshot holds it, and the current epoch (for its status), read once.
    let (view, now) = s.snapshot.read().ok().map_or((None, None), |x| {
        let view = x.nodes.iter().find(|n| n.peer_id == peer_id).cloned();
        (view, x.epoch)
    });
    let read = async {
        Ok::<_, StoreError>((
            s.reader.node_proofs(&id, 100).await?,
            s.reader.node_rewards(&id, 50).await?,
        ))
    };
    let (proofs, rewards) = match read.await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    if view.is_none() && proofs.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no node {peer_id}"));
    }
    let view = match monitor::listed(&s.reader, view.into_iter().collect(), now).await {
        Ok(mut l) => l.pop().map(|(l, _)| l),
        Err(e) => return internal(e),
    };
    let proofs_json: Vec<_> = proofs
        .iter()
        .map(|p| {
            let (verdict, reason) = match (p.verdict, p.closed_reason) {
                (Verdict::Rejected(r), _) => ("rejected", Some(r.name())),
                (Verdict::Accepted, Some(r)) => ("rejected_at_close", Some(r.name())),
                (Verdict::Accepted, None) => ("accepted", None),
            };
            json!({ "proof_id": p.id.to_string(), "kind": p.kind.name(), "epoch": p.epoch, "received_ms": p.received_ms, "verdict": verdict, "reason": reason, "flag": p.flag.map(|r| r.name()) })
        })
        .collect();
    let last_heartbeat = proofs
        .iter()
        .find(|p| p.kind == wisp_protocol::Kind::Heartbeat)
        .map(|p| p.received_ms);
    Json(json!({
        "node": view,
        "last_heartbeat_received_ms": last_heartbeat,
        "proofs": proofs_json,
        "rewards": rewards.iter().map(|(e, r)| entry_json(*e, r)).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// An epoch's state as the API and the dashboard name it.
fn epoch_state(e: &EpochRow) -> &'static str {
    if e.closed_ms.is_some() {
        "closed"
    } else {
        "open"
    }
}

async fn epochs(State(s): State<Arc<Shared>>) -> Response {
    match s.reader.epochs().await {
        Ok(list) => Json(
            list.iter()
                .map(|e| json!({ "epoch": e.epoch, "closed_ms": e.closed_ms, "emission": e.emission, "state": epoch_state(e) }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

/// A closed epoch's reward entries and signed manifest pages, from the database; a 404 for an
/// epoch not closed.
async fn closed_rewards(
    s: &Shared,
    epoch: u64,
) -> Result<(Vec<RewardEntry>, Vec<Vec<u8>>), Response> {
    let read = async {
        Ok::<_, StoreError>((
            s.reader.rewards(epoch).await?,
            s.reader.manifests(epoch).await?,
        ))
    };
    let (entries, pages) = read.await.map_err(internal)?;
    if pages.is_empty() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("epoch {epoch} is not closed"),
        ));
    }
    Ok((entries, pages))
}

async fn rewards(
    State(s): State<Arc<Shared>>,
    epoch: Result<Path<u64>, PathRejection>,
) -> Response {
    let epoch = match epoch {
        Ok(Path(e)) => e,
        Err(e) => return bad_path(&e),
    };
    let (entries, pages) = match closed_rewards(&s, epoch).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let leaves: Vec<[u8; 32]> = entries.iter().map(RewardEntry::leaf).collect();
    let root = wisp_protocol::merkle::root(&leaves);
    Json(json!({
        "epoch": epoch,
        "merkle_root": wisp_protocol::bytes::ByteArray(root).to_string(),
        "total": entries.iter().map(|e| u128::from(e.amount)).sum::<u128>().to_string(),
        "entries": entries.iter().map(|e| json!({"peer_id": e.node.to_string(), "owner": e.owner, "amount": e.amount, "coverage": e.coverage, "backhaul": e.backhaul, "uptime": e.uptime, "usage": e.usage})).collect::<Vec<_>>(),
        "manifest_pages_hex": pages.iter().map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>()).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn rejections(State(s): State<Arc<Shared>>) -> Response {
    match s.reader.rejection_counts().await {
        Ok(c) => Json(
            c.iter()
                .map(|(r, n)| json!({ "code": r.code(), "reason": r.name(), "description": r.describe(), "count": n }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

/// Witnesses read per request (and [`MAX_LINKS`] returned): the map stays readable and the
/// request cheap however large the network.
const WITNESSES_READ: u32 = 20_000;
/// Distinct witness links `/v1/witness-links` returns at most.
pub const MAX_LINKS: usize = 2_000;

/// The witness links the map draws: the last closed epoch's, capped.
#[derive(Debug, Default)]
struct WitnessLinks {
    /// The last closed epoch, if any.
    epoch: Option<u64>,
    /// Distinct (beaconer, witness) pairs, at most [`MAX_LINKS`].
    links: Vec<(NodeId, NodeId)>,
    /// Whether some were left out.
    truncated: bool,
}

/// The beaconer → witness pairs of the last closed epoch of `epochs`, from its counted
/// witnesses.
async fn witness_links_of(store: &Store, epochs: &[EpochRow]) -> Result<WitnessLinks, StoreError> {
    let Some(epoch) = epochs
        .iter()
        .rev()
        .find(|e| e.closed_ms.is_some())
        .map(|e| e.epoch)
    else {
        return Ok(WitnessLinks::default());
    };
    let envelopes = store.counted_witnesses(epoch, WITNESSES_READ).await?;
    let (links, truncated) = links_of(&envelopes, MAX_LINKS);
    Ok(WitnessLinks {
        epoch: Some(epoch),
        links,
        truncated: truncated || envelopes.len() >= WITNESSES_READ as usize,
    })
}

async fn witness_links(State(s): State<Arc<Shared>>) -> Response {
    let read = async {
        let epochs = s.reader.epochs().await?;
        witness_links_of(&s.reader, &epochs).await
    };
    let wl = match read.await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    Json(json!({
        "epoch": wl.epoch,
        "links": wl.links.iter().map(|(b, w)| json!({ "beaconer": b.to_string(), "witness": w.to_string() })).collect::<Vec<_>>(),
        "truncated": wl.truncated,
    }))
    .into_response()
}

/// Distinct (beaconer, witness) pairs of stored witness envelopes, at most `max` of them;
/// true if some were left out. The envelopes verified when they arrived: only decoded here.
pub fn links_of(envelopes: &[Vec<u8>], max: usize) -> (Vec<(NodeId, NodeId)>, bool) {
    let mut links = std::collections::BTreeSet::new();
    for bytes in envelopes {
        let Ok(env) = wisp_protocol::envelope::EnvelopeRef::parse(bytes) else {
            continue;
        };
        let Ok(w) = env.decode::<wisp_protocol::msg::Witness>() else {
            continue;
        };
        let Ok(beacon) = wisp_protocol::envelope::EnvelopeRef::parse(&w.msg.beacon) else {
            continue;
        };
        links.insert((NodeId(*beacon.signer), w.signer));
        if links.len() > max {
            let mut v: Vec<_> = links.into_iter().collect();
            v.truncate(max);
            return (v, true);
        }
    }
    (links.into_iter().collect(), false)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Epochs the dashboard lists (the latest), with their rewards read for the totals.
const DASHBOARD_EPOCHS: usize = 12;

/// Everything the dashboard shows, read the way the JSON handlers read it.
#[derive(Debug)]
struct Board {
    /// The worker's snapshot (`/v1/status`, `/v1/nodes`).
    snap: Snapshot,
    /// Why the broker is not usable, if it is not (`/readyz`).
    broker_trouble: Option<String>,
    /// The latest [`DASHBOARD_EPOCHS`] epochs, oldest first (`/v1/epochs`).
    epochs: Vec<EpochRow>,
    /// The rewards of each closed epoch among them (`/v1/epochs/{epoch}/rewards`).
    rewards: BTreeMap<u64, Vec<RewardEntry>>,
    /// Rejections by reason (`/v1/rejections`).
    rejections: Vec<(Reason, u64)>,
    /// The last closed epoch's witness links (`/v1/witness-links`).
    links: WitnessLinks,
}

/// What the dashboard may load: its own inline style and script, and `/` again for the refresh.
/// Nothing from elsewhere: the page works on a LAN without the internet and tells no third
/// party of a visit, and markup that ever got past the escaping could not load anything either.
const DASHBOARD_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the dashboard, complete as served (its script only re-fetches it).
async fn dashboard(State(s): State<Arc<Shared>>) -> Response {
    let snap = snapshot(&s);
    let broker_trouble = broker_trouble(&s);
    let store = &s.reader;
    let read = async {
        let mut epochs = store.epochs().await?;
        let links = witness_links_of(store, &epochs).await?;
        epochs.drain(..epochs.len().saturating_sub(DASHBOARD_EPOCHS));
        let mut rewards = BTreeMap::new();
        for e in epochs.iter().filter(|e| e.closed_ms.is_some()) {
            rewards.insert(e.epoch, store.rewards(e.epoch).await?);
        }
        Ok::<_, StoreError>((epochs, rewards, store.rejection_counts().await?, links))
    };
    let (epochs, rewards, rejections, links) = match read.await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let board = Board {
        snap,
        broker_trouble,
        epochs,
        rewards,
        rejections,
        links,
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP),
        ],
        Html(dashboard::page(&board)),
    )
        .into_response()
}

const OPENAPI: &str = include_str!("openapi.json");

pub mod batch;
pub mod carrier;
pub mod credits;
pub mod dashboard;
pub mod monitor;
