//! What a network monitor reads: the node list filtered and paged (`/v1/nodes`), one reward
//! entry with its Merkle inclusion proof (`/v1/epochs/{epoch}/rewards/{peer_id}`) and the
//! network in one answer (`/v1/summary`). A node's [`NodeStatus`] is defined here once, for
//! these and for the dashboard's colours.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wisp_protocol::geo::Cell;
use wisp_protocol::msg::{MANIFEST_PAGE_MAX, RewardEntry};
use wisp_protocol::{NodeId, merkle};

use super::{bad_path, error, internal, peer, snapshot};
use crate::state::{NodeView, Shared};
use crate::store::{EpochRow, Store, StoreError};

/// Nodes a page holds unless `limit` says otherwise.
pub const PAGE_DEFAULT: usize = 100;
/// Nodes a page holds at most.
pub const PAGE_MAX: usize = 1000;
/// Rejection reasons `/v1/summary` lists, most frequent first.
pub const TOP_REJECTIONS: usize = 5;

/// How a node fares: its colour on the dashboard and its `status` in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Serving a penalty for cheating: it earns nothing (takes precedence).
    Penalized,
    /// Its location trust is 0: its coverage earns nothing.
    Untrusted,
    /// Paid in the last closed epoch.
    Paid,
    /// Not paid in the last closed epoch.
    Unpaid,
}

impl NodeStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [NodeStatus; 4] = [
        NodeStatus::Paid,
        NodeStatus::Unpaid,
        NodeStatus::Untrusted,
        NodeStatus::Penalized,
    ];

    /// The status of `node` during epoch `now` (the current one), given its reward in the
    /// last closed epoch.
    pub fn of(node: &NodeView, reward: Option<&RewardEntry>, now: Option<u64>) -> NodeStatus {
        if node
            .penalized_through
            .is_some_and(|p| now.is_none_or(|now| p >= now))
        {
            NodeStatus::Penalized
        } else if node.location_trust_bps == Some(0) {
            NodeStatus::Untrusted
        } else if reward.is_some_and(|r| r.amount > 0) {
            NodeStatus::Paid
        } else {
            NodeStatus::Unpaid
        }
    }

    /// Its name in the API (and CSS class on the dashboard).
    pub fn name(self) -> &'static str {
        match self {
            NodeStatus::Penalized => "penalized",
            NodeStatus::Untrusted => "untrusted",
            NodeStatus::Paid => "paid",
            NodeStatus::Unpaid => "unpaid",
        }
    }

    /// What it means, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            NodeStatus::Penalized => "penalized for cheating",
            NodeStatus::Untrusted => "location not trusted",
            NodeStatus::Paid => "paid in the last closed epoch",
            NodeStatus::Unpaid => "not paid in the last closed epoch",
        }
    }

    fn parse(s: &str) -> Option<NodeStatus> {
        NodeStatus::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// A node as the API lists it: what the snapshot holds, and its status.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Listed {
    #[serde(flatten)]
    node: NodeView,
    status: &'static str,
}

/// `nodes` with their statuses in the current epoch, read against the last closed epoch's
/// rewards; each with the status itself, to filter on.
pub(super) async fn listed(
    store: &Store,
    nodes: Vec<NodeView>,
    now: Option<u64>,
) -> Result<Vec<(Listed, NodeStatus)>, StoreError> {
    let epochs = store.epochs().await?;
    let paid = last_paid(store, &epochs)
        .await?
        .map(|(_, r)| r)
        .unwrap_or_default();
    let st = statuses(&nodes, &paid, now);
    Ok(nodes
        .into_iter()
        .zip(st)
        .map(|(node, status)| {
            let listed = Listed {
                node,
                status: status.name(),
            };
            (listed, status)
        })
        .collect())
}

/// The last closed epoch of `epochs` (oldest first) and its rewards by node.
async fn last_paid(
    store: &Store,
    epochs: &[EpochRow],
) -> Result<Option<(EpochRow, Vec<RewardEntry>)>, StoreError> {
    let Some(last) = epochs.iter().rev().find(|e| e.closed_ms.is_some()) else {
        return Ok(None);
    };
    Ok(Some((last.clone(), store.rewards(last.epoch).await?)))
}

/// The statuses of `nodes` in the current epoch `now`, given the last closed epoch's rewards.
fn statuses(nodes: &[NodeView], paid: &[RewardEntry], now: Option<u64>) -> Vec<NodeStatus> {
    let by_node: BTreeMap<NodeId, &RewardEntry> = paid.iter().map(|e| (e.node, e)).collect();
    nodes
        .iter()
        .map(|n| {
            let reward = n
                .peer_id
                .parse::<NodeId>()
                .ok()
                .and_then(|id| by_node.get(&id).copied());
            NodeStatus::of(n, reward, now)
        })
        .collect()
}

/// `/v1/nodes`'s query, read as text so that each bad value gets its own message.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NodesQuery {
    status: Option<String>,
    cell: Option<String>,
    owner: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// An H3 cell as the API prints it (lower-case hex of the 64-bit index).
fn parse_cell(s: &str) -> Option<Cell> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if !(15..=16).contains(&s.len()) || !s.bytes().all(lower_hex) {
        return None;
    }
    Cell::from_u64(u64::from_str_radix(s, 16).ok()?).ok()
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /v1/nodes`: the onboarded nodes, filtered by `status`, `cell` (the node's cell or an
/// ancestor of it) and `owner`, by peer id. Without `limit` and `after`, all that match, as
/// before paging existed; with either, a page of `limit` (default [`PAGE_DEFAULT`], at most
/// [`PAGE_MAX`]) after the peer id `after`, and a `Link: <…>; rel="next"` header while more
/// follow. The body is the same array either way.
pub(super) async fn nodes(
    State(s): State<Arc<Shared>>,
    query: Result<Query<NodesQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    // One status, or several separated by commas.
    let mut wanted = Vec::new();
    for x in q
        .status
        .as_deref()
        .map(|x| x.split(','))
        .into_iter()
        .flatten()
    {
        match NodeStatus::parse(x) {
            Some(st) => wanted.push(st),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("status `{x}` is none of paid, unpaid, untrusted, penalized"),
                );
            }
        }
    }
    let cell = match q.cell.as_deref().map(|x| (x, parse_cell(x))) {
        Some((x, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cell `{x}` is not an H3 cell index in hex"),
            );
        }
        Some((_, c)) => c,
        None => None,
    };
    let paging = q.limit.is_some() || q.after.is_some();
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let limit = match q.limit.as_deref().map(|x| (digits(x), x.parse::<usize>())) {
        None => PAGE_DEFAULT,
        Some((true, Ok(n))) if (1..=PAGE_MAX).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be an integer from 1 to {PAGE_MAX}"),
            );
        }
    };

    let snap = snapshot(&s);
    let mut nodes = snap.nodes;
    nodes.retain(|n| {
        q.owner.as_ref().is_none_or(|o| &n.owner == o)
            && cell.is_none_or(|c| {
                parse_cell(&n.cell).is_some_and(|nc| nc.parent(c.resolution()) == c)
            })
    });
    let mut nodes: Vec<Listed> = match listed(&s.reader, nodes, snap.epoch).await {
        Ok(l) => l
            .into_iter()
            .filter(|(_, st)| wanted.is_empty() || wanted.contains(st))
            .map(|(l, _)| l)
            .collect(),
        Err(e) => return internal(e),
    };
    if !paging {
        return Json(nodes).into_response();
    }
    nodes.sort_by(|a, b| a.node.peer_id.cmp(&b.node.peer_id));
    if let Some(after) = &q.after {
        nodes.retain(|n| &n.node.peer_id > after);
    }
    let more = nodes.len() > limit;
    nodes.truncate(limit);
    let mut headers = Vec::new();
    if let Some(last) = nodes.last().filter(|_| more) {
        let mut next = format!(
            "/v1/nodes?limit={limit}&after={}",
            encode(&last.node.peer_id)
        );
        for (k, v) in [
            ("status", &q.status),
            ("cell", &q.cell),
            ("owner", &q.owner),
        ] {
            if let Some(v) = v {
                next.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        headers.push((header::LINK, format!("<{next}>; rel=\"next\"")));
    }
    let mut response = Json(nodes).into_response();
    for (k, v) in headers {
        if let Ok(v) = v.parse() {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /v1/epochs/{epoch}/rewards/{peer_id}`: one node's reward entry, its index, the signed
/// manifest page holding it and its Merkle inclusion proof against the signed root, so that
/// the oracle's public key is all it takes to check it.
pub(super) async fn reward_proof(
    State(s): State<Arc<Shared>>,
    path: Result<Path<(u64, String)>, PathRejection>,
) -> Response {
    let (epoch, peer_id) = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(&e),
    };
    let id = match peer::<NodeId>(&peer_id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let (entries, pages) = match super::closed_rewards(&s, epoch).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(index) = entries.iter().position(|e| e.node == id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("{peer_id} has no reward entry in epoch {epoch}"),
        );
    };
    let page = index / MANIFEST_PAGE_MAX;
    let Some(page_bytes) = pages.get(page) else {
        return internal(format!(
            "epoch {epoch}: entry {index} would be on manifest page {page}, of {} stored",
            pages.len()
        ));
    };
    let tree = merkle::REWARDS.tree(entries.iter().map(RewardEntry::leaf).collect());
    let proof = tree.proof(index).unwrap_or_default();
    let e = &entries[index];
    Json(json!({
        "epoch": epoch,
        "index": index,
        "entry_count": entries.len(),
        "entry": { "peer_id": e.node.to_string(), "owner": e.owner, "amount": e.amount, "coverage": e.coverage, "backhaul": e.backhaul, "uptime": e.uptime, "usage": e.usage },
        "leaf": hex(&e.leaf()),
        "merkle_root": hex(&tree.root()),
        "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "manifest_page": page,
        "manifest_page_hex": hex(page_bytes),
    }))
    .into_response()
}

/// `GET /v1/summary`: nodes by status, proofs stored, the last closed epoch's emission and
/// rewards by category, and the most frequent rejection reasons.
pub(super) async fn summary(State(s): State<Arc<Shared>>) -> Response {
    let snap = snapshot(&s);
    let read = async {
        let epochs = s.reader.epochs().await?;
        Ok::<_, StoreError>((
            last_paid(&s.reader, &epochs).await?,
            s.reader.rejection_counts().await?,
        ))
    };
    let (last, mut rejections) = match read.await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let paid: &[RewardEntry] = last.as_ref().map_or(&[], |(_, r)| r);
    let st = statuses(&snap.nodes, paid, snap.epoch);
    let mut by_status = serde_json::Map::new();
    by_status.insert("total".into(), json!(snap.nodes.len()));
    for x in NodeStatus::ALL {
        by_status.insert(
            x.name().into(),
            json!(st.iter().filter(|y| **y == x).count()),
        );
    }
    let sum = |f: fn(&RewardEntry) -> u64| paid.iter().map(|e| u128::from(f(e))).sum::<u128>();
    let last_json = last.as_ref().map(|(row, entries)| {
        json!({
            "epoch": row.epoch,
            "closed_ms": row.closed_ms,
            "emission": row.emission,
            "nodes_paid": entries.iter().filter(|e| e.amount > 0).count(),
            "paid": sum(|e| e.amount).to_string(),
            "coverage": sum(|e| e.coverage).to_string(),
            "backhaul": sum(|e| e.backhaul).to_string(),
            "uptime": sum(|e| e.uptime).to_string(),
            "usage": sum(|e| e.usage).to_string(),
        })
    });
    rejections.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.code().cmp(&b.0.code())));
    rejections.truncate(TOP_REJECTIONS);
    Json(json!({
        "nodes": by_status,
        "proofs_stored": snap.proofs_stored,
        "last_closed_epoch": last_json,
        "top_rejections": rejections.iter().map(|(r, n)| json!({ "code": r.code(), "reason": r.name(), "description": r.describe(), "count": n })).collect::<Vec<_>>(),
    }))
    .into_response()
}
