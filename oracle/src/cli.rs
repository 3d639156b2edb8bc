//! The operator's commands: `nodes`, `node <peer-id>` and `epoch <n>` read a running oracle's
//! HTTP API and print it for people (or as the API's JSON with `--json`); `verify-manifest`
//! ([`verify`]) checks saved reward manifests offline.
//!
//! The API is reached with [`wisp_shell::http_get`] (bounded in time and size) at `--api`, or
//! else at the address a running oracle writes to `<data_dir>/http.addr`. Everything printed is
//! rendered into a `String` first, so the commands are plain functions of what the API said.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::Value;
use wisp_protocol::NodeId;
use wisp_shell::http_get::{self, Limits};

pub(crate) mod credit;
pub(crate) mod verify;

/// A running oracle's HTTP API.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) addr: SocketAddr,
}

/// An epoch's rewards with its manifest pages take about 300 bytes of JSON per paid node, and
/// the node list as much per node: 64 MiB is room for some 200,000 nodes, and a slow link gets
/// 60 s for it.
const LIMITS: Limits = Limits {
    connect: std::time::Duration::from_secs(5),
    total: std::time::Duration::from_secs(60),
    max_response: 64 << 20,
};

/// What to tell an operator whose API address is missing or unreachable.
pub(crate) const START_HINT: &str =
    "start the oracle (`wisp-oracle run`) or pass --api http://host:port of a running one";

impl Api {
    /// The API at `api` (`http://host:port` or `host:port`), or else at the address in
    /// `<data_dir>/http.addr`, the data directory coming from `data_dir()` (the configuration
    /// `run` reads), called only when `api` is not given.
    pub(crate) fn locate(
        api: Option<&str>,
        data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<Api> {
        let text = match api {
            Some(a) => a.to_string(),
            None => {
                let dir = data_dir().context(
                    "finding the oracle's data directory (pass --api to name the API instead)",
                )?;
                let file = dir.join("http.addr");
                let text = std::fs::read_to_string(&file).with_context(|| {
                    format!(
                        "no API address in {}: no oracle has run with this data directory; {START_HINT}",
                        file.display()
                    )
                })?;
                text.trim().to_string()
            }
        };
        Ok(Api {
            addr: parse_addr(&text)?,
        })
    }

    /// GET `path`: the body if the status is 200; otherwise an error with the API's own
    /// message (its JSON `error`).
    fn get(&self, path: &str) -> anyhow::Result<String> {
        let r = http_get::fetch(self.addr, path, &LIMITS).map_err(|e| match e {
            http_get::Error::Connect { .. } => anyhow::anyhow!(
                "the oracle's API at http://{} is not reachable ({e}): {START_HINT}",
                self.addr
            ),
            e => anyhow::Error::new(e).context(format!("the oracle's API at http://{}", self.addr)),
        })?;
        if r.status == 200 {
            return Ok(r.body);
        }
        let why = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| r.body.trim().to_string());
        bail!("the oracle answered HTTP {} to GET {path}: {why}", r.status)
    }

    fn json(&self, path: &str) -> anyhow::Result<Value> {
        let body = self.get(path)?;
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path}: the oracle's answer is not JSON"))
    }
}

/// `http://host:port`, `host:port` (a trailing `/` allowed) as one socket address.
fn parse_addr(text: &str) -> anyhow::Result<SocketAddr> {
    if text.starts_with("https://") {
        bail!("--api {text}: this client speaks plain HTTP only, as the oracle serves it");
    }
    let hostport = text.strip_prefix("http://").unwrap_or(text);
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    if hostport.contains('/') {
        bail!("API address `{text}`: give http://host:port, without a path");
    }
    hostport
        .to_socket_addrs()
        .with_context(|| format!("API address `{text}` is not host:port"))?
        .next()
        .with_context(|| format!("API address `{text}` resolves to nothing"))
}

/// `wisp-oracle nodes`.
pub(crate) fn nodes(api: &Api, json: bool) -> anyhow::Result<String> {
    let body = api.get("/v1/nodes")?;
    if json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let list: Value = serde_json::from_str(&body).context("GET /v1/nodes: not JSON")?;
    let status = api.json("/v1/status")?;
    let current = status["epoch"].as_u64();
    // The latest rewards: the last closed epoch's.
    let epochs = api.json("/v1/epochs")?;
    let last_closed = epochs
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|e| e["state"] == "closed")
        .and_then(|e| e["epoch"].as_u64());
    let mut paid = std::collections::BTreeMap::new();
    if let Some(n) = last_closed {
        let r = api.json(&format!("/v1/epochs/{n}/rewards"))?;
        for e in r["entries"].as_array().into_iter().flatten() {
            if let (Some(id), Some(a)) = (e["peer_id"].as_str(), e["amount"].as_u64()) {
                paid.insert(id.to_string(), a);
            }
        }
    }
    let now = wisp_shell::clock::system_ms();
    let reward_head = last_closed.map_or_else(|| "REWARD".into(), |n| format!("REWARD E{n}"));
    let mut rows = Vec::new();
    for n in list.as_array().into_iter().flatten() {
        let id = n["peer_id"].as_str().unwrap_or("?");
        rows.push(vec![
            id.to_string(),
            text(&n["status"]),
            text(&n["cell"]),
            format!(
                "{:.5},{:.5}",
                n["lat"].as_f64().unwrap_or(f64::NAN),
                n["lon"].as_f64().unwrap_or(f64::NAN)
            ),
            text(&n["owner"]),
            n["last_heartbeat_ms"]
                .as_u64()
                .map_or_else(|| "never".into(), |t| ago(t, now)),
            trust(&n["location_trust_bps"]),
            match (last_closed, paid.get(id)) {
                (None, _) => "-".into(),
                (Some(_), Some(a)) => a.to_string(),
                (Some(_), None) => "0".into(),
            },
        ]);
    }
    let mut out = table(
        &[
            "PEER ID",
            "STATUS",
            "CELL",
            "LOCATION",
            "OWNER",
            "LAST HEARTBEAT",
            "TRUST",
            &reward_head,
        ],
        &[7],
        &rows,
    );
    let _ = writeln!(
        out,
        "{} node(s); epoch {} open",
        rows.len(),
        current.map_or_else(|| "-".into(), |e| e.to_string())
    );
    Ok(out)
}

/// `wisp-oracle node <peer-id>`.
pub(crate) fn node(api: &Api, peer_id: &str, json: bool) -> anyhow::Result<String> {
    let id: NodeId = peer_id.parse().map_err(|e| {
        anyhow::anyhow!("`{peer_id}` is not a node's peer id (an ed25519 libp2p peer id): {e}")
    })?;
    let body = api.get(&format!("/v1/nodes/{id}"))?;
    if json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("GET /v1/nodes/{id}: not JSON"))?;
    let now = wisp_shell::clock::system_ms();
    let n = &v["node"];
    let mut out = String::new();
    let _ = writeln!(out, "node            {id}");
    if n.is_object() {
        let _ = writeln!(out, "owner           {}", text(&n["owner"]));
        let _ = writeln!(out, "status          {}", text(&n["status"]));
        let _ = writeln!(
            out,
            "place           cell {} (centre {:.5}, {:.5})",
            text(&n["cell"]),
            n["lat"].as_f64().unwrap_or(f64::NAN),
            n["lon"].as_f64().unwrap_or(f64::NAN)
        );
        let _ = writeln!(out, "location trust  {}", trust(&n["location_trust_bps"]));
        let mbps = |b: &Value| {
            b.as_u64()
                .map_or_else(|| "-".into(), |b| format!("{:.1} Mb/s", b as f64 / 1e6))
        };
        let _ = writeln!(
            out,
            "backhaul        down {}, up {}",
            mbps(&n["down_bps"]),
            mbps(&n["up_bps"])
        );
        if let Some(t) = n["penalized_through"].as_u64() {
            let _ = writeln!(out, "penalized       through epoch {t}");
        }
        for m in n["marks"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "caught          epoch {}: {}",
                m["epoch"],
                text(&m["reason"])
            );
        }
    } else {
        let _ = writeln!(out, "(not in the registry: proofs only)");
    }
    let _ = writeln!(
        out,
        "last heartbeat  {}",
        v["last_heartbeat_received_ms"]
            .as_u64()
            .map_or_else(|| "none among the recent proofs".into(), |t| ago(t, now))
    );
    let proofs: Vec<Vec<String>> = v["proofs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(&p["epoch"]),
                text(&p["kind"]),
                p["received_ms"]
                    .as_u64()
                    .map_or_else(|| "-".into(), |t| ago(t, now)),
                text(&p["verdict"]),
                // A refusal's reason, or the flag on a proof counted anyway.
                match (p["reason"].as_str(), p["flag"].as_str()) {
                    (Some(r), _) => r.to_string(),
                    (None, Some(f)) => format!("flagged {f}"),
                    (None, None) => String::new(),
                },
                text(&p["proof_id"]),
            ]
        })
        .collect();
    let _ = writeln!(out, "\nrecent proofs ({}, newest first):", proofs.len());
    out.push_str(&table(
        &["EPOCH", "KIND", "RECEIVED", "VERDICT", "REASON", "PROOF ID"],
        &[0],
        &proofs,
    ));
    let rewards: Vec<Vec<String>> = v["rewards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            ["epoch", "amount", "coverage", "backhaul", "uptime", "usage"]
                .iter()
                .map(|k| r[k].to_string())
                .collect()
        })
        .collect();
    let _ = writeln!(out, "\nrewards per epoch ({}):", rewards.len());
    out.push_str(&table(
        &["EPOCH", "AMOUNT", "COVERAGE", "BACKHAUL", "UPTIME", "USAGE"],
        &[0, 1, 2, 3, 4, 5],
        &rewards,
    ));
    Ok(out)
}

/// `wisp-oracle epoch <n>`; with `out`, each manifest page's bytes are written there as
/// `epoch-<n>-page-<p>.manifest`, the input `verify-manifest` takes.
pub(crate) fn epoch(
    api: &Api,
    n: u64,
    json: bool,
    out_dir: Option<&Path>,
) -> anyhow::Result<String> {
    let epochs = api.json("/v1/epochs")?;
    let list = epochs.as_array().cloned().unwrap_or_default();
    let Some(row) = list.iter().find(|e| e["epoch"].as_u64() == Some(n)) else {
        let span = match (list.first(), list.last()) {
            (Some(a), Some(b)) => format!("it has epochs {} to {}", a["epoch"], b["epoch"]),
            _ => "it has no epochs yet".into(),
        };
        bail!("the oracle has no epoch {n}: {span}");
    };
    let closed = row["state"] == "closed";
    if !closed {
        if out_dir.is_some() {
            bail!("epoch {n} is still open: it has no manifest to write yet");
        }
        if json {
            return Ok(format!("{row}\n"));
        }
        return Ok(format!(
            "epoch {n}: open, emission {}; rewards are paid when it closes\n",
            row["emission"]
        ));
    }
    let body = api.get(&format!("/v1/epochs/{n}/rewards"))?;
    let r: Value = serde_json::from_str(&body).context("the epoch's rewards: not JSON")?;
    let pages: Vec<Vec<u8>> = r["manifest_pages_hex"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| unhex(p.as_str().unwrap_or("")))
        .collect::<anyhow::Result<_>>()?;
    let mut out = String::new();
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the directory {}", dir.display()))?;
        for (p, bytes) in pages.iter().enumerate() {
            let file = dir.join(format!("epoch-{n}-page-{p}.manifest"));
            std::fs::write(&file, bytes)
                .with_context(|| format!("writing the manifest page {}", file.display()))?;
            let _ = writeln!(out, "wrote {} ({} bytes)", file.display(), bytes.len());
        }
    }
    if json {
        let _ = writeln!(out, "{}", body.trim_end());
        return Ok(out);
    }
    let entries: Vec<&Value> = r["entries"].as_array().into_iter().flatten().collect();
    let _ = writeln!(out, "epoch           {n} (closed)");
    let _ = writeln!(out, "emission        {}", row["emission"]);
    let _ = writeln!(
        out,
        "paid            {} to {} node(s)",
        text(&r["total"]),
        entries.len()
    );
    for cat in ["coverage", "backhaul", "uptime", "usage"] {
        let sum: u128 = entries
            .iter()
            .filter_map(|e| e[cat].as_u64())
            .map(u128::from)
            .sum();
        let _ = writeln!(out, "  {cat:<13} {sum}");
    }
    let _ = writeln!(out, "merkle root     {}", text(&r["merkle_root"]));
    let _ = writeln!(out, "manifest pages  {}", pages.len());
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut row = vec![text(&e["peer_id"]), text(&e["owner"])];
            row.extend(
                ["amount", "coverage", "backhaul", "uptime", "usage"]
                    .iter()
                    .map(|k| e[k].to_string()),
            );
            row
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "PEER ID", "OWNER", "AMOUNT", "COVERAGE", "BACKHAUL", "UPTIME", "USAGE",
        ],
        &[2, 3, 4, 5, 6],
        &rows,
    ));
    Ok(out)
}

/// Bytes from the API's lowercase hex.
fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("a manifest page in the API's answer is not hex");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .context("a manifest page in the API's answer is not hex")
        })
        .collect()
}

/// A JSON string as is, anything else as JSON, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// Location trust in basis points as a percentage.
fn trust(v: &Value) -> String {
    v.as_u64().map_or_else(
        || "not established".into(),
        |b| format!("{}.{:02} %", b / 100, b % 100),
    )
}

/// How long before `now` the Unix-ms time `t` was.
fn ago(t: u64, now: u64) -> String {
    let Some(d) = now.checked_sub(t) else {
        return format!("{} s ahead", (t - now) / 1000);
    };
    let s = d / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7_200 => format!("{} min ago", s / 60),
        7_200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// An aligned table; the columns in `right` are right-aligned (numbers).
fn table(head: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&width).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            if right.contains(&i) {
                let _ = write!(l, "{cell:>w$}");
            } else {
                let _ = write!(l, "{cell:<w$}");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut head.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}
