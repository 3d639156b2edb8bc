//! The oracle's HTTP API (JSON) and dashboard.
//!
//! `GET /` dashboard · `/healthz` · `/metrics` · `/openapi.json` · `/v1/status` ·
//! `/v1/nodes` · `/v1/nodes/{peer_id}` · `/v1/epochs` · `/v1/epochs/{epoch}/rewards` ·
//! `/v1/rejections`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use wisp_protocol::NodeId;
use wisp_protocol::msg::{RewardEntry, Verdict};

use crate::service::Shared;

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{peer_id}", get(node))
        .route("/v1/epochs", get(epochs))
        .route("/v1/epochs/{epoch}/rewards", get(rewards))
        .route("/v1/rejections", get(rejections))
        .with_state(shared)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    if s.connected.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the broker\n",
        )
            .into_response()
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

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshot.read().map(|x| x.clone()).unwrap_or_default();
    Json(json!({
        "oracle": snap.oracle,
        "epoch": snap.epoch,
        "open_epochs": snap.open_epochs.iter().map(|(e, n)| json!({"epoch": e, "queued": n})).collect::<Vec<_>>(),
        "nodes": snap.nodes.len(),
        "proofs_stored": snap.proofs_stored,
        "broker_connected": s.connected.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn nodes(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshot.read().map(|x| x.clone()).unwrap_or_default();
    Json(snap.nodes).into_response()
}

fn entry_json(epoch: u64, e: &RewardEntry) -> serde_json::Value {
    json!({ "epoch": epoch, "amount": e.amount, "coverage": e.coverage, "backhaul": e.backhaul, "uptime": e.uptime, "owner": e.owner })
}

async fn node(State(s): State<Arc<Shared>>, Path(peer_id): Path<String>) -> Response {
    let Ok(id) = peer_id.parse::<NodeId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{peer_id}` is not an ed25519 peer id"),
        );
    };
    let view = s
        .snapshot
        .read()
        .ok()
        .and_then(|x| x.nodes.iter().find(|n| n.peer_id == peer_id).cloned());
    let Ok(store) = s.reader.lock() else {
        return internal("store lock poisoned");
    };
    let proofs = match store.node_proofs(&id, 100) {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let rewards = match store.node_rewards(&id, 50) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    if view.is_none() && proofs.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no node {peer_id}"));
    }
    let proofs_json: Vec<_> = proofs
        .iter()
        .map(|p| {
            let (verdict, reason) = match (p.verdict, p.closed_reason) {
                (Verdict::Rejected(r), _) => ("rejected", Some(r.name())),
                (Verdict::Accepted, Some(r)) => ("rejected_at_close", Some(r.name())),
                (Verdict::Accepted, None) => ("accepted", None),
            };
            json!({ "proof_id": p.id.to_string(), "kind": p.kind.name(), "epoch": p.epoch, "received_ms": p.received_ms, "verdict": verdict, "reason": reason })
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

async fn epochs(State(s): State<Arc<Shared>>) -> Response {
    let Ok(store) = s.reader.lock() else {
        return internal("store lock poisoned");
    };
    match store.epochs() {
        Ok(list) => Json(
            list.iter()
                .map(|e| json!({ "epoch": e.epoch, "closed_ms": e.closed_ms, "emission": e.emission, "state": if e.closed_ms.is_some() { "closed" } else { "open" } }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn rewards(State(s): State<Arc<Shared>>, Path(epoch): Path<u64>) -> Response {
    let Ok(store) = s.reader.lock() else {
        return internal("store lock poisoned");
    };
    let entries = match store.rewards(epoch) {
        Ok(e) => e,
        Err(e) => return internal(e),
    };
    let pages = match store.manifests(epoch) {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    if pages.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("epoch {epoch} is not closed"),
        );
    }
    let leaves: Vec<[u8; 32]> = entries.iter().map(RewardEntry::leaf).collect();
    let root = wisp_protocol::merkle::root(&leaves);
    Json(json!({
        "epoch": epoch,
        "merkle_root": wisp_protocol::bytes::ByteArray(root).to_string(),
        "total": entries.iter().map(|e| u128::from(e.amount)).sum::<u128>().to_string(),
        "entries": entries.iter().map(|e| json!({"peer_id": e.node.to_string(), "owner": e.owner, "amount": e.amount, "coverage": e.coverage, "backhaul": e.backhaul, "uptime": e.uptime})).collect::<Vec<_>>(),
        "manifest_pages_hex": pages.iter().map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>()).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn rejections(State(s): State<Arc<Shared>>) -> Response {
    let Ok(store) = s.reader.lock() else {
        return internal("store lock poisoned");
    };
    match store.rejection_counts() {
        Ok(c) => Json(
            c.iter()
                .map(|(r, n)| json!({ "code": r.code(), "reason": r.name(), "description": r.describe(), "count": n }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

const OPENAPI: &str = include_str!("openapi.json");
const DASHBOARD: &str = include_str!("dashboard.html");
