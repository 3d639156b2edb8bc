//! The OpenAPI document (`oracle/src/openapi.json`, served at `/openapi.json`) against the
//! router and its handlers: every route is documented and every documented path is served, and
//! the answers of a seeded oracle and of an empty one (status code, content type, body) are
//! what the document says, for every documented path.
//!
//! The schemas are checked by the small validator in `schema/`, for the subset of OpenAPI 3.0
//! the document uses. A keyword it does not know fails the test, so the document cannot grow a
//! construct that nothing here checks. `.ci/run` also points schemathesis at a live devnet
//! oracle with this document (`.ci/schemathesis.sh`).
#![allow(clippy::unwrap_used)]

mod common;
mod schema;
mod seeded;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::EPOCH;
use schema::{resolve, validate};
use seeded::{
    GRANTED_DC, OPEN_EPOCH, Reply, UNPAID_EPOCH, block_on, grant_bytes, network, oracle_key, post,
    request, serve, shared, subscriber,
};
use serde_json::Value;
use wisp_oracle::RulesConfig;
use wisp_oracle::state::{Credits, Shared, Snapshot};
use wisp_oracle::store::Store;
use wisp_oracle::usage::Ledger;
use wisp_protocol::NodeKey;
use wisp_protocol::msg::CarrierReport;

const DOC: &str = include_str!("../src/openapi.json");
const HTTP_RS: &str = include_str!("../src/http.rs");

fn doc() -> Value {
    serde_json::from_str(DOC).expect("openapi.json is JSON")
}

/// The body of `http::router`, with each `.route(` call on one line whatever rustfmt made of
/// it.
fn router_body() -> String {
    let start = HTTP_RS.find("pub fn router(").expect("http::router");
    let body = &HTTP_RS[start..start + HTTP_RS[start..].find("\n}\n").unwrap()];
    body.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(".route( ", ".route(")
}

/// The paths of the router, read from the `.route("…", …)` calls of `http::router`. Axum's
/// `{name}` captures are OpenAPI's path templates already.
fn routes() -> BTreeSet<String> {
    let body = router_body();
    body.match_indices(".route(\"")
        .map(|(at, m)| {
            let rest = &body[at + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

fn documented() -> BTreeSet<String> {
    doc()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// The one path served for POST, and only for POST: the operator's credit grants.
const POST_ONLY: &str = "/v1/credits";

/// The other: carriers' usage reports, one a request and many.
const CARRIER: &str = "/v1/usage/carrier";
const CARRIER_BATCH: &str = "/v1/usage/carrier/batch";

/// The paths served for POST only.
const POSTS: [&str; 3] = [POST_ONLY, CARRIER, CARRIER_BATCH];

/// The documented paths a GET is sent to.
fn documented_get() -> BTreeSet<String> {
    documented()
        .into_iter()
        .filter(|p| !POSTS.contains(&p.as_str()))
        .collect()
}

/// Checks a reply to `GET <template>` against the document: its status code is documented,
/// its content type is the documented one, and a JSON body fits the schema.
fn conforms(doc: &Value, template: &str, reply: &Reply) -> Result<(), String> {
    conforms_to(doc, "get", template, reply)
}

/// [`conforms`] for a reply to `method`.
fn conforms_to(doc: &Value, method: &str, template: &str, reply: &Reply) -> Result<(), String> {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "no {method} {template} in the document");
    let Some(response) = op["responses"].get(reply.code.to_string()) else {
        return Err(format!("status {} is not documented", reply.code));
    };
    let response = resolve(doc, response);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return Err(format!(
            "status {}: the document gives no content",
            reply.code
        ));
    };
    let media = reply.content_type.as_deref().unwrap_or("");
    let media = media.split(';').next().unwrap().trim();
    let Some(documented) = content.get(media) else {
        let want: Vec<_> = content.keys().collect();
        return Err(format!("content type `{media}`, documented {want:?}"));
    };
    let schema = &documented["schema"];
    let value = if media == "application/json" {
        serde_json::from_str(&reply.body).map_err(|e| format!("not JSON ({e})"))?
    } else {
        Value::String(reply.body.clone())
    };
    let mut errors = Vec::new();
    validate(doc, schema, &value, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_a_route() {
    let routes = routes();
    assert!(
        routes.len() >= 12,
        "the router's routes were not found: {routes:?}"
    );
    let documented = documented();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes missing from openapi.json: {undocumented:?}; \
         openapi.json lists paths the router does not serve: {unserved:?}"
    );
    // Only GET is served and documented, but for the credit grants' and carrier reports' POSTs.
    for (path, item) in doc()["paths"].as_object().unwrap() {
        let methods: Vec<_> = item.as_object().unwrap().keys().collect();
        let want = if POSTS.contains(&path.as_str()) {
            "post"
        } else {
            "get"
        };
        assert_eq!(methods, [want], "{path}");
    }
    let body = router_body();
    let methods = (
        body.matches(" get(").count(),
        body.matches(" post(").count(),
    );
    assert_eq!(
        methods,
        (routes.len() - POSTS.len(), POSTS.len()),
        "a route with another method"
    );
}

/// The requests sent for each documented path: concrete paths and the status each must get.
fn cases(ids: &[String], unknown_id: &str, seeded: bool) -> Vec<(&'static str, String, u16)> {
    let mut c: Vec<(&'static str, String, u16)> = [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/status",
        "/v1/summary",
        "/v1/nodes",
        "/v1/epochs",
        "/v1/rejections",
        "/v1/witness-links",
    ]
    .into_iter()
    .map(|p| (p, p.to_string(), 200))
    .collect();
    let list = "/v1/nodes";
    for status in ["paid", "unpaid", "untrusted", "penalized", "paid,penalized"] {
        c.push((list, format!("/v1/nodes?status={status}"), 200));
    }
    for ok in [
        "limit=1",
        "limit=1000&after=x",
        "after=",
        "owner=owner-zero&limit=2",
    ] {
        c.push((list, format!("/v1/nodes?{ok}"), 200));
    }
    for bad in [
        "status=gone",
        "status=",
        "status=paid,",
        "status=paid,gone",
        "cell=zz",
        "cell=8C2A1072B59A5FF",
        "cell=8c2a1072b59a5f",
        "cell=ffffffffffffffff",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=1.5",
        "limit=+5",
        "limit=",
        "limit=1&limit=2",
    ] {
        c.push((list, format!("/v1/nodes?{bad}"), 400));
    }
    let node = "/v1/nodes/{peer_id}";
    for id in ids {
        c.push((
            node,
            format!("/v1/nodes/{id}"),
            if seeded { 200 } else { 404 },
        ));
    }
    c.push((node, format!("/v1/nodes/{unknown_id}"), 404));
    for bad in ["not-a-peer-id", "%FF%FE", "12D3KooW", "%20"] {
        c.push((node, format!("/v1/nodes/{bad}"), 400));
    }
    let rewards = "/v1/epochs/{epoch}/rewards";
    let closed = if seeded { 200 } else { 404 };
    c.push((rewards, format!("/v1/epochs/{EPOCH}/rewards"), closed));
    c.push((
        rewards,
        format!("/v1/epochs/{UNPAID_EPOCH}/rewards"),
        closed,
    ));
    c.push((rewards, format!("/v1/epochs/{OPEN_EPOCH}/rewards"), 404));
    c.push((rewards, format!("/v1/epochs/{}/rewards", u64::MAX), 404));
    for bad in ["x", "-1", "1.5", "18446744073709551616", "%FF"] {
        c.push((rewards, format!("/v1/epochs/{bad}/rewards"), 400));
    }
    let proof = "/v1/epochs/{epoch}/rewards/{peer_id}";
    // The first two nodes are paid in EPOCH; the others, and every node in the other epochs,
    // have no entry.
    for (i, id) in ids.iter().enumerate() {
        let paid = seeded && i < 2;
        let want = if paid { 200 } else { 404 };
        c.push((proof, format!("/v1/epochs/{EPOCH}/rewards/{id}"), want));
        c.push((
            proof,
            format!("/v1/epochs/{UNPAID_EPOCH}/rewards/{id}"),
            404,
        ));
        c.push((proof, format!("/v1/epochs/{OPEN_EPOCH}/rewards/{id}"), 404));
    }
    c.push((
        proof,
        format!("/v1/epochs/{EPOCH}/rewards/{unknown_id}"),
        404,
    ));
    for bad in ["not-a-peer-id", "%FF%FE", "12D3KooW"] {
        c.push((proof, format!("/v1/epochs/{EPOCH}/rewards/{bad}"), 400));
    }
    for bad in ["x", "-1", "18446744073709551616"] {
        c.push((proof, format!("/v1/epochs/{bad}/rewards/{unknown_id}"), 400));
    }
    let sub = "/v1/subscribers/{peer_id}";
    let funded = subscriber().id().to_string();
    c.push((
        sub,
        format!("/v1/subscribers/{funded}"),
        if seeded { 200 } else { 404 },
    ));
    c.push((sub, format!("/v1/subscribers/{unknown_id}"), 404));
    for bad in ["not-a-peer-id", "%FF%FE", "12D3KooW", "%20"] {
        c.push((sub, format!("/v1/subscribers/{bad}"), 400));
    }
    c
}

/// Sends every case to `server` and checks each reply against the document; returns the
/// replies by concrete path.
fn check_all(
    server: &seeded::Server,
    cases: &[(&'static str, String, u16)],
) -> Vec<(String, Reply)> {
    let doc = doc();
    let covered: BTreeSet<String> = cases.iter().map(|(t, ..)| t.to_string()).collect();
    assert_eq!(
        covered,
        documented_get(),
        "a documented path without a case here"
    );
    let mut failures = Vec::new();
    let mut replies = Vec::new();
    for (template, path, want) in cases {
        let reply = request(server, path);
        if reply.code != *want {
            failures.push(format!(
                "GET {path}: {} (want {want}): {}",
                reply.code, reply.body
            ));
        } else if let Err(e) = conforms(&doc, template, &reply) {
            failures.push(format!("GET {path}: {e}\n{}", reply.body));
        }
        replies.push((path.clone(), reply));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    replies
}

fn json_of(replies: &[(String, Reply)], path: &str) -> Value {
    let (_, r) = replies.iter().find(|(p, _)| p == path).unwrap();
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn a_seeded_oracle_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (fx, shared) = network(dir.path());
    let server = serve(shared.clone());
    let ids: Vec<String> = fx.ids.iter().map(ToString::to_string).collect();
    let unknown = common::key(99).id().to_string();
    let replies = check_all(&server, &cases(&ids, &unknown, true));

    // The schemas were checked against data, not against empty lists.
    assert_eq!(json_of(&replies, "/v1/nodes").as_array().unwrap().len(), 4);
    let balance = json_of(&replies, &format!("/v1/subscribers/{}", subscriber().id()));
    assert_eq!(balance["balance_dc"], GRANTED_DC, "{balance}");
    let detail = json_of(&replies, &format!("/v1/nodes/{}", ids[1]));
    assert!(!detail["proofs"].as_array().unwrap().is_empty(), "{detail}");
    assert!(
        !detail["rewards"].as_array().unwrap().is_empty(),
        "{detail}"
    );
    let marked = json_of(&replies, &format!("/v1/nodes/{}", ids[3]));
    assert!(
        !marked["node"]["marks"].as_array().unwrap().is_empty(),
        "{marked}"
    );
    let rewards = json_of(&replies, &format!("/v1/epochs/{EPOCH}/rewards"));
    assert_eq!(rewards["entries"].as_array().unwrap().len(), 2, "{rewards}");
    assert_eq!(json_of(&replies, "/v1/epochs").as_array().unwrap().len(), 3);
    let links = json_of(&replies, "/v1/witness-links");
    assert_eq!(links["links"].as_array().unwrap().len(), 2, "{links}");
    // The bad requests say what is wrong.
    let bad = json_of(&replies, "/v1/epochs/x/rewards");
    assert!(bad["error"].as_str().unwrap().contains("`x`"), "{bad}");
    let bad = json_of(&replies, "/v1/nodes?status=gone");
    assert!(bad["error"].as_str().unwrap().contains("`gone`"), "{bad}");

    // Node 0 is paid, 1 untrusted (though paid), 2 unpaid, 3 penalized: the dashboard's colours.
    for (status, want) in [
        ("paid", 0),
        ("untrusted", 1),
        ("unpaid", 2),
        ("penalized", 3),
    ] {
        let list = json_of(&replies, &format!("/v1/nodes?status={status}"));
        let got: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["peer_id"])
            .collect();
        assert_eq!(got, [&Value::from(ids[want].clone())], "{status}");
        // Each node's status is in the list too.
        assert_eq!(list[0]["status"], status, "{list}");
    }
    // Several statuses at once, separated by commas.
    let list = json_of(&replies, "/v1/nodes?status=paid,penalized");
    let got: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{list}");
    assert!(got.contains(&ids[0].as_str()) && got.contains(&ids[3].as_str()));
    let bad = json_of(&replies, "/v1/nodes?status=paid,gone");
    assert!(bad["error"].as_str().unwrap().contains("`gone`"), "{bad}");
    let summary = json_of(&replies, "/v1/summary");
    let counts = &summary["nodes"];
    assert_eq!(
        [
            &counts["total"],
            &counts["paid"],
            &counts["unpaid"],
            &counts["untrusted"],
            &counts["penalized"]
        ],
        [4, 1, 1, 1, 1],
        "{summary}"
    );
    let last = &summary["last_closed_epoch"];
    assert_eq!(last["epoch"], EPOCH, "{summary}");
    assert_eq!(last["emission"], seeded::EMISSION, "{summary}");
    assert_eq!(last["nodes_paid"], 2, "{summary}");
    let split = ["coverage", "backhaul", "uptime", "usage", "paid"].map(|k| &last[k]);
    let want = [
        "550000000",
        "280000000",
        "150000000",
        "20000000",
        "1000000000",
    ];
    assert_eq!(split, want, "{summary}");

    nodes_are_filtered_and_paged(&server, &fx);
    for id in &ids[..2] {
        inclusion_proof_verifies(&json_of(
            &replies,
            &format!("/v1/epochs/{EPOCH}/rewards/{id}"),
        ));
    }

    // Without the broker, the probes answer 503 as documented.
    shared.connected.store(false, Ordering::Relaxed);
    let doc = doc();
    for probe in ["/healthz", "/readyz"] {
        let reply = request(&server, probe);
        assert_eq!(reply.code, 503, "{probe}");
        conforms(&doc, probe, &reply).unwrap();
    }
}

/// The cell and owner filters, and pages that follow their `Link` to the end.
fn nodes_are_filtered_and_paged(server: &seeded::Server, fx: &common::Fixture) {
    let list = |path: &str| -> (Vec<String>, Option<String>) {
        let r = request(server, path);
        assert_eq!(r.code, 200, "{path}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let ids = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["peer_id"].as_str().unwrap().to_string());
        (ids.collect(), r.link)
    };
    let mut all: Vec<String> = fx.ids.iter().map(ToString::to_string).collect();
    // Without paging parameters, the whole list in the snapshot's order, and no Link.
    assert_eq!(list("/v1/nodes"), (all.clone(), None));
    all.sort();
    // Pages of 3 by peer id: the first says where the next starts, the last says nothing.
    let (first, link) = list("/v1/nodes?limit=3");
    assert_eq!(first, all[..3]);
    let link = link.expect("a Link to the next page");
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap();
    assert_eq!(next, format!("/v1/nodes?limit=3&after={}", all[2]));
    assert_eq!(list(next), (all[3..].to_vec(), None));
    assert_eq!(list(&format!("/v1/nodes?after={}", all[3])), (vec![], None));
    // A filter is carried into the next page's link.
    let (page, link) = list("/v1/nodes?limit=1&status=paid");
    assert_eq!((page.len(), link), (1, None));
    // The hostile owner, percent-encoded.
    let (hostile, _) = list("/v1/nodes?owner=%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E%26%27");
    assert_eq!(hostile, [fx.ids[2].to_string()]);
    // A node's own cell finds it; a coarse ancestor finds every node near it.
    let cell = fx.cell(0);
    assert_eq!(
        list(&format!("/v1/nodes?cell={cell}")).0,
        [fx.ids[0].to_string()]
    );
    let coarse = cell.parent(cell.resolution().saturating_sub(4));
    let (near, _) = list(&format!("/v1/nodes?cell={coarse}"));
    assert!(near.contains(&fx.ids[0].to_string()), "{coarse}: {near:?}");
    let in_coarse = (0..4)
        .filter(|i| fx.cell(*i).parent(coarse.resolution()) == coarse)
        .count();
    assert_eq!(near.len(), in_coarse);
    if in_coarse > 1 {
        let (_, link) = list(&format!("/v1/nodes?cell={coarse}&limit=1"));
        let link = link.expect("a Link to the next page");
        assert!(
            link.ends_with(&format!("&cell={coarse}>; rel=\"next\"")),
            "{link}"
        );
    }
}

/// Checks a `/v1/epochs/{epoch}/rewards/{peer_id}` answer as anyone would with the oracle's
/// public key alone: the page's signature, the entry in it, and the Merkle path to its root.
fn inclusion_proof_verifies(r: &Value) {
    use wisp_protocol::msg::{MANIFEST_PAGE_MAX, RewardManifest};
    let unhex = |s: &Value| -> Vec<u8> {
        let s = s.as_str().unwrap();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let hash = |s: &Value| -> [u8; 32] { unhex(s).try_into().unwrap() };
    let page = wisp_protocol::envelope::open::<RewardManifest>(&unhex(&r["manifest_page_hex"]))
        .expect("a signed manifest page");
    assert_eq!(
        page.signer,
        seeded::oracle_key().id(),
        "signed by the oracle"
    );
    let m = page.msg;
    let index = usize::try_from(r["index"].as_u64().unwrap()).unwrap();
    assert_eq!(m.page as usize, index / MANIFEST_PAGE_MAX);
    assert_eq!(r["entry_count"], m.entry_count);
    let entry = &m.entries[index % MANIFEST_PAGE_MAX];
    assert_eq!(r["entry"]["peer_id"], entry.node.to_string());
    assert_eq!(r["entry"]["amount"], entry.amount);
    let leaf = entry.leaf();
    assert_eq!(hash(&r["leaf"]), leaf);
    assert_eq!(hash(&r["merkle_root"]), m.root.0);
    let proof: Vec<[u8; 32]> = r["proof"].as_array().unwrap().iter().map(hash).collect();
    let count = m.entry_count as usize;
    assert!(
        wisp_protocol::merkle::verify(&leaf, index, count, &proof, &m.root.0),
        "{r}"
    );
    // A tampered entry or proof does not verify.
    let mut forged = entry.clone();
    forged.amount += 1;
    assert!(!wisp_protocol::merkle::verify(
        &forged.leaf(),
        index,
        count,
        &proof,
        &m.root.0
    ));
    let mut bent = proof.clone();
    bent[0][0] ^= 1;
    assert!(!wisp_protocol::merkle::verify(
        &leaf, index, count, &bent, &m.root.0
    ));
}

#[test]
fn an_empty_oracle_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(Store::open_sqlite(&dir.path().join("oracle.db"))).unwrap();
    let server = serve(shared(store, Snapshot::default()));
    let some = common::key(1).id().to_string();
    let unknown = common::key(99).id().to_string();
    let replies = check_all(&server, &cases(&[some], &unknown, false));
    assert!(json_of(&replies, "/v1/status")["epoch"].is_null());
    assert!(json_of(&replies, "/v1/witness-links")["epoch"].is_null());
    assert!(json_of(&replies, "/v1/summary")["last_closed_epoch"].is_null());
}

/// `POST /v1/credits` as documented: garbage and another key's grant are 400s, an oversized body
/// a 413 (before the worker sees it), and this oracle's grant a 503 here, where no ingest worker
/// takes grants (`tests/usage.rs` posts to a real oracle).
#[test]
fn credit_grants_are_answered_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(Store::open_sqlite(&dir.path().join("oracle.db"))).unwrap();
    let oracle = oracle_key().id().to_string();
    let server = serve(shared(
        store,
        Snapshot {
            oracle,
            ..Snapshot::default()
        },
    ));
    for (body, want) in [
        (Vec::new(), 400),
        (b"not an envelope".to_vec(), 400),
        (grant_bytes(&common::key(7), 2, 10), 400),
        (vec![0u8; 385], 413),
        (grant_bytes(&oracle_key(), 3, 10), 503),
    ] {
        let reply = post(&server, POST_ONLY, &body);
        assert_eq!(reply.code, want, "{}", reply.body);
        conforms_to(&doc(), "post", POST_ONLY, &reply).unwrap();
    }
}

/// An oracle's state on a fresh store in `dir` whose rules allow-list `carrier` (permissionless
/// otherwise), with no credits granted: the carrier endpoints' tests start from it.
fn carrier_shared(dir: &Path, carrier: &NodeKey) -> Arc<Shared> {
    let store = block_on(Store::open_sqlite(&dir.join("oracle.db"))).unwrap();
    let rules = RulesConfig {
        usage_carriers: vec![carrier.id().to_string()],
        ..RulesConfig::permissionless()
    }
    .validate()
    .unwrap();
    shared(
        store,
        Snapshot {
            oracle: oracle_key().id().to_string(),
            credits: Credits::new(Ledger::new(), rules),
            ..Snapshot::default()
        },
    )
}

/// A report of 1 MiB down in session `[session; 16]` of [`EPOCH`], naming `named` as the
/// carrier and signed by `signer`.
fn carrier_report(signer: &NodeKey, named: &NodeKey, session: u8) -> Vec<u8> {
    let msg = CarrierReport {
        session: [session; 16].into(),
        hotspot: common::key(1).id(),
        carrier: named.id(),
        epoch: EPOCH,
        seq: 1,
        bytes_down: 1 << 20,
        bytes_up: 0,
        signed_ms: 1_800_000_000_000,
        start_ms: None,
    };
    common::sign_with(signer, &msg)
}

/// `POST /v1/usage/carrier` as documented: garbage and a report signed by another key than
/// the carrier it names are 400s, a carrier off the allow-list a 403 with its reason, an
/// oversized body a 413, and an allow-listed carrier's report a 503 here, where no ingest
/// worker takes it (`tests/usage.rs` posts to a real oracle).
#[test]
fn carrier_reports_are_answered_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (carrier, stranger) = (common::key(60), common::key(61));
    let server = serve(carrier_shared(dir.path(), &carrier));
    let report = |signer: &NodeKey, named: &NodeKey| carrier_report(signer, named, 0xca);
    for (body, want, reason) in [
        (Vec::new(), 400, None),
        (b"not an envelope".to_vec(), 400, None),
        (
            grant_bytes(&oracle_key(), 3, 10),
            400,
            Some("unexpected_kind"),
        ),
        (report(&stranger, &carrier), 400, Some("signer_mismatch")),
        (
            report(&stranger, &stranger),
            403,
            Some("usage_carrier_unknown"),
        ),
        (vec![0u8; 385], 413, None),
        (report(&carrier, &carrier), 503, None),
    ] {
        let reply = post(&server, CARRIER, &body);
        assert_eq!(reply.code, want, "{}", reply.body);
        conforms_to(&doc(), "post", CARRIER, &reply).unwrap();
        if let Some(r) = reason {
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["reason"], r, "{body}");
        }
    }
}

#[test]
fn the_document_is_the_one_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(Store::open_sqlite(&dir.path().join("oracle.db"))).unwrap();
    let server = serve(shared(store, Snapshot::default()));
    let reply = request(&server, "/openapi.json");
    assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap(), doc());
    // Every $ref resolves, and the router's fallback (an empty 404) is not a documented answer.
    let text = DOC;
    for (at, _) in text.match_indices("\"$ref\": \"") {
        let r = &text[at + 9..];
        let r = &r[..r.find('"').unwrap()];
        assert!(doc().pointer(&r[1..]).is_some(), "dangling {r}");
    }
    let fallback = request(&server, "/v1/not-a-route");
    assert_eq!((fallback.code, fallback.body.as_str()), (404, ""));
}

/// The batch of carrier reports: each item answered as the single endpoint answers it, the
/// batch's own refusals, and a carrier over its rate (its bucket drained here) a 429 with
/// `Retry-After`, alone and in a batch.
#[test]
fn carrier_batches_and_rate_limits_are_answered_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (carrier, stranger) = (common::key(60), common::key(61));
    let shared = carrier_shared(dir.path(), &carrier);
    // The carrier's burst spent: its next report is over its rate.
    while shared.carrier_limit.check(&carrier.id()).is_ok() {}
    let server = serve(shared);
    let report = |signer: &NodeKey, named: &NodeKey| carrier_report(signer, named, 0xcb);
    let items = |envelopes: &[String]| {
        serde_json::json!({ "reports": envelopes })
            .to_string()
            .into_bytes()
    };
    let hex = |b: Vec<u8>| hex::encode(b);
    for (body, want, statuses) in [
        (b"[]".to_vec(), 400, vec![]),
        (items(&vec!["00".to_string(); 257]), 400, vec![]),
        (vec![b' '; 200_000], 413, vec![]),
        (
            items(&[
                hex(report(&stranger, &stranger)),
                hex(report(&stranger, &carrier)),
                "zz".to_string(),
                hex(vec![0; 385]),
                hex(report(&carrier, &carrier)),
                hex(report(&stranger, &stranger)),
            ]),
            200,
            vec![403, 400, 400, 413, 429, 429],
        ),
    ] {
        let reply = post(&server, CARRIER_BATCH, &body);
        assert_eq!(reply.code, want, "{}", reply.body);
        conforms_to(&doc(), "post", CARRIER_BATCH, &reply).unwrap();
        if want == 200 {
            let v: Value = serde_json::from_str(&reply.body).unwrap();
            let got: Vec<u64> = v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["status"].as_u64().unwrap())
                .collect();
            assert_eq!(got, statuses, "{v}");
            assert_eq!(v["results"][4]["reason"], "rate_limited", "{v}");
        }
    }
    let reply = post(&server, CARRIER, &report(&carrier, &carrier));
    assert_eq!(reply.code, 429, "{}", reply.body);
    conforms_to(&doc(), "post", CARRIER, &reply).unwrap();
}
