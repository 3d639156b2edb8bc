//! `wisp-oracle credit grant` and `credit sign`: the operator issues data credits
//! (docs/PROTOCOL.md §5.11). Both build a `credit_grant` (16 random bytes of grant id, issued
//! now) and sign it with the oracle key of the data directory; `grant` posts it to the running
//! oracle's `POST /v1/credits`, `sign` prints the envelope in hex for posting later (or from
//! another machine: `curl --data-binary`).
//!
//! The POST is [`wisp_shell::http_get::post`]: a plain HTTP/1.0 exchange over a std socket,
//! bounded in time and size.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{CREDIT_MEMO_MAX, CreditGrant};
use wisp_protocol::{NodeKey, SubscriberId};
use wisp_shell::http_get::{self, Limits};

use super::{Api, START_HINT};

/// The exchange with the oracle: 5 s to connect, 30 s to send and read everything, and an
/// answer of at most 64 KiB (it is a few short JSON fields).
const LIMITS: Limits = Limits {
    connect: Duration::from_secs(5),
    total: Duration::from_secs(30),
    max_response: 64 << 10,
};

/// A grant of `amount_dc` to `subscriber`, signed with the oracle key at `key_file`: its
/// envelope bytes and grant id.
pub(crate) fn sign(
    key_file: &Path,
    subscriber: &str,
    amount_dc: u64,
    memo: &str,
) -> anyhow::Result<(Vec<u8>, [u8; 16])> {
    let subscriber: SubscriberId = subscriber
        .parse()
        .with_context(|| format!("`{subscriber}` is not a subscriber's ed25519 peer id"))?;
    if amount_dc == 0 {
        bail!("the amount must be at least 1 DC");
    }
    if memo.len() > CREDIT_MEMO_MAX || !memo.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        bail!("--memo must be at most {CREDIT_MEMO_MAX} characters of printable ASCII");
    }
    // Loaded, never created: a grant signed by a new key would be refused by the oracle.
    let key: NodeKey = wisp_shell::keyfile::load(key_file).with_context(|| {
        format!(
            "the oracle key {} (grants must be signed by the running oracle's key: pass its \
             --data-dir or --config)",
            key_file.display()
        )
    })?;
    if subscriber.key() == &key.id() {
        bail!("the oracle cannot grant credits to its own key");
    }
    let mut grant = [0u8; 16];
    getrandom::fill(&mut grant).map_err(|e| anyhow::anyhow!("OS random: {e}"))?;
    let msg = CreditGrant {
        grant: grant.into(),
        subscriber,
        amount_dc,
        issued_ms: wisp_shell::clock::system_ms(),
        memo: memo.to_string(),
    };
    Ok((Envelope::sign(&key, &msg).to_bytes(), grant))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `wisp-oracle credit sign`: the envelope in hex, one line.
pub(crate) fn sign_only(
    key_file: &Path,
    subscriber: &str,
    amount_dc: u64,
    memo: &str,
) -> anyhow::Result<String> {
    let (envelope, _) = sign(key_file, subscriber, amount_dc, memo)?;
    Ok(format!("{}\n", hex(&envelope)))
}

/// `wisp-oracle credit grant`: signs and posts; what the oracle said.
pub(crate) fn grant(
    api: &Api,
    key_file: &Path,
    subscriber: &str,
    amount_dc: u64,
    memo: &str,
    json: bool,
) -> anyhow::Result<String> {
    let (envelope, id) = sign(key_file, subscriber, amount_dc, memo)?;
    let (status, body) = post(api.addr, "/v1/credits", &envelope)?;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 {
        let why = v["error"]
            .as_str()
            .map_or_else(|| body.trim().to_string(), str::to_string);
        bail!("the oracle answered HTTP {status} to POST /v1/credits: {why}");
    }
    if json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let balance = v["balance_dc"].as_u64().unwrap_or(0);
    let id = hex(&id);
    Ok(match (v["verdict"].as_str(), v["reason"].as_str()) {
        (Some("accepted"), _) => {
            format!("granted {amount_dc} DC to {subscriber} (grant {id}): balance {balance} DC\n")
        }
        (_, reason) => bail!(
            "the oracle refused grant {id}: {}; balance {balance} DC",
            reason.unwrap_or("no reason given")
        ),
    })
}

/// POSTs `body` as `application/octet-stream`; the status and the body of the answer.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let octets = "application/octet-stream";
    let r = http_get::post(addr, path, octets, body, &LIMITS).map_err(|e| match e {
        http_get::Error::Connect { .. } => anyhow::Error::new(e).context(format!(
            "the oracle's API at http://{addr} is not reachable: {START_HINT}"
        )),
        e => e.into(),
    })?;
    Ok((r.status, r.body))
}
