//! Carriers against a real oracle: `POST /v1/usage/carrier/batch` judging many reports alike
//! the single endpoint, the per-carrier rate limit (429, `Retry-After`, nothing stored, the
//! metric), and the carrier's own tool, `wisp-client carrier report`, posting a FreeRADIUS
//! `detail` file (client/tests/fixtures/radacct-detail): accepted and stored, a second run
//! idempotent, and a carrier off the allow-list refused with a message saying what to do.
//!
//! The tool's binary is the workspace's `target/debug/wisp-client`, beside this test's
//! `wisp-oracle`: `cargo build -p wisp-client` first (`cargo test --workspace` builds it).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use wisp_protocol::NodeKey;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{CarrierReport, Verdict};
use wisp_shell::clock::system_ms;

mod live;
use live::{BIN, NodeConn, Oracle, onboard, wait_for};

/// An oracle on SQLite with epochs of `epoch_s`, allow-listing `carriers`, with more `vars`.
fn spawn(data: &Path, epoch_s: u32, carriers: &[&str], vars: &[(&str, &str)]) -> Oracle {
    let allow = serde_json::to_string(carriers).unwrap();
    let mut all = vec![
        ("WISP_RULES__PERMISSIONLESS", "true"),
        ("WISP_RULES__USAGE_CARRIERS", allow.as_str()),
    ];
    all.extend_from_slice(vars);
    live::spawn_oracle(data, epoch_s, &all)
}

/// The status, the headers and the JSON body of a POST.
fn post(o: &Oracle, path: &str, body: &[u8]) -> (u16, String, Value) {
    o.exchange("POST", path, "application/json", body)
}

fn get(o: &Oracle, path: &str) -> Value {
    let body = wisp_shell::http_get::get(o.api, path).unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn status(o: &Oracle) -> Value {
    get(o, "/v1/status")
}

fn batch(reports: &[Vec<u8>]) -> Vec<u8> {
    let hex: Vec<String> = reports.iter().map(hex::encode).collect();
    json!({ "reports": hex }).to_string().into_bytes()
}

/// A hotspot (key seed `[seed; 32]`) onboarded on `o`.
fn hotspot(o: &Oracle, seed: u8) -> NodeConn {
    let okey = wisp_shell::keyfile::load(&o.data.join("oracle.key")).unwrap();
    let h = NodeConn::connect(o.broker, &okey, NodeKey::from_seed(&[seed; 32]));
    assert_eq!(h.send(onboard(&h.key, "owner-carrier")), Verdict::Accepted);
    h
}

/// The operator grants `payer` 100 DC with the oracle's CLI.
fn fund(o: &Oracle, payer: &str) {
    let out = Command::new(BIN)
        .args(["credit", "grant", payer, "100", "--data-dir"])
        .arg(&o.data)
        .env_remove("WISP_ORACLE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn metric(o: &Oracle, verdict: &str) -> u64 {
    let text = wisp_shell::http_get::get(o.api, "/metrics").unwrap();
    let prefix = format!("wisp_oracle_carrier_reports_total{{verdict=\"{verdict}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_batch_is_judged_item_by_item_and_a_carrier_over_its_rate_gets_429s() {
    let dir = tempfile::tempdir().unwrap();
    let (carrier, stranger) = (NodeKey::from_seed(&[31; 32]), NodeKey::from_seed(&[32; 32]));
    let cid = carrier.id().to_string();
    let o = spawn(
        &dir.path().join("oracle"),
        3,
        &[&cid],
        &[
            ("WISP_HTTP__CARRIER_REPORTS_PER_S", "0.5"),
            ("WISP_HTTP__CARRIER_BURST", "3"),
        ],
    );
    let h = hotspot(&o, 33);
    fund(&o, &cid);
    let report = |signer: &NodeKey, session: u8| {
        let r = CarrierReport {
            session: [session; 16].into(),
            hotspot: h.key.id(),
            carrier: signer.id(),
            epoch: status(&o)["epoch"].as_u64().unwrap(),
            seq: 1,
            bytes_down: 1 << 20,
            bytes_up: 0,
            signed_ms: system_ms(),
            start_ms: None,
        };
        Envelope::sign(signer, &r).to_bytes()
    };

    // Refused before any is judged: not the batch's JSON, more than 256 items, too big.
    let path = "/v1/usage/carrier/batch";
    assert_eq!(post(&o, path, b"[]").0, 400);
    let many = json!({ "reports": vec!["00"; 257] }).to_string();
    let (code, _, why) = post(&o, path, many.as_bytes());
    assert_eq!(code, 400, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("at most 256"),
        "{why}"
    );
    assert_eq!(post(&o, path, &vec![b' '; 300_000]).0, 413);

    // Items the single endpoint would refuse get its answers, and take no token: a stranger's
    // (403), bytes that are not hex (400), an envelope over the limit (413).
    let items = json!({ "reports": [
        hex::encode(report(&stranger, 1)), "zz", hex::encode(vec![0u8; 385]),
    ] });
    let (code, _, answer) = post(&o, path, items.to_string().as_bytes());
    assert_eq!(code, 200, "{answer}");
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [403, 400, 413], "{answer}");
    assert_eq!(answer["results"][0]["reason"], "usage_carrier_unknown");

    // Five of the carrier's reports with a burst of three: three judged, then 429s for the
    // rest (the fifth not judged either), with Retry-After on the answer.
    let five: Vec<Vec<u8>> = (10..15).map(|s| report(&carrier, s)).collect();
    let (code, head, answer) = post(&o, path, &batch(&five));
    assert_eq!(code, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    for r in &results[..3] {
        assert_eq!(r["status"], 200, "{answer}");
        assert!(
            r["verdict"] == "accepted" || r["verdict"] == "rejected",
            "{answer}"
        );
    }
    for r in &results[3..] {
        assert_eq!(r["status"], 429, "{answer}");
        assert_eq!(r["reason"], "rate_limited", "{answer}");
        assert!(r["retry_after_s"].as_u64().unwrap() >= 1, "{answer}");
    }
    let wait = results[3]["retry_after_s"].as_u64().unwrap();
    assert!((1..=2).contains(&wait), "{answer}");
    assert!(head.contains(&format!("retry-after: {wait}")), "{head}");
    assert_eq!(metric(&o, "rate_limited"), 2);

    // The single endpoint too: a 429 with Retry-After and the reason.
    let (code, head, why) = post(&o, "/v1/usage/carrier", &five[3]);
    assert_eq!(code, 429, "{why}");
    assert!(head.contains("retry-after: "), "{head}");
    assert_eq!(why["reason"], "rate_limited", "{why}");
    assert_eq!(metric(&o, "rate_limited"), 3);

    // Nothing rate-limited was stored: once a token is back, the fourth is judged anew.
    std::thread::sleep(Duration::from_millis(2_100));
    let (code, _, answer) = post(&o, path, &batch(&five[3..4]));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], 200, "{answer}");
    assert_eq!(answer["results"][0]["duplicate"], false, "{answer}");
    // And one judged before is a duplicate, judged alike in a batch and alone.
    std::thread::sleep(Duration::from_millis(2_100));
    let (_, _, alone) = post(&o, "/v1/usage/carrier", &five[0]);
    assert_eq!(alone["duplicate"], true, "{alone}");
    assert_eq!(
        alone["verdict"], results[0]["verdict"],
        "{alone} against {}",
        results[0]
    );
}

/// The workspace's `wisp-client`, beside `wisp-oracle`.
fn client_bin() -> PathBuf {
    let bin = Path::new(BIN).with_file_name("wisp-client");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p wisp-client` first",
        bin.display()
    );
    bin
}

fn client(data: &Path, args: &[&str]) -> Output {
    live::logged(
        Command::new(client_bin())
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env_remove("WISP_CLIENT_DATA_DIR")
            .env_remove("WISP_ORACLE_URL"),
        &format!("wisp-client {args:?}"),
    )
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../client/tests/fixtures/radacct-detail"
);

#[test]
fn the_carrier_tool_posts_radius_accounting_once_and_off_list_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("carrier"), dir.path().join("stranger"));
    let key = |d: &Path| {
        let out = client(d, &["carrier", "key"]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (cid, sid) = (key(&ours), key(&theirs));
    // The key file is private, and `carrier id` reads it.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ours.join("carrier.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let id = client(&ours, &["carrier", "id"]);
    assert_eq!(String::from_utf8(id.stdout).unwrap().trim(), cid);

    // Epochs of 10 s: the run below starts just after one opened, so its reports land in it.
    let o = spawn(&dir.path().join("oracle"), 10, &[&cid], &[]);
    let (h1, h2) = (hotspot(&o, 41), hotspot(&o, 42));
    fund(&o, &cid);
    let stations = dir.path().join("stations");
    std::fs::write(
        &stations,
        format!(
            "# the site's access points\nAA-BB-CC-00-00-01:wisp-offload {}\nap-lisbon-02 {}\n",
            h1.key.id(),
            h2.key.id()
        ),
    )
    .unwrap();
    let url = format!("http://{}", o.api);
    let run = |data: &Path| {
        client(
            data,
            &[
                "carrier",
                "report",
                "--oracle",
                &url,
                "--stations",
                &stations.display().to_string(),
                FIXTURE,
            ],
        )
    };
    let epoch = status(&o)["epoch"].as_u64().unwrap();
    assert!(wait_for(Duration::from_secs(15), || status(&o)["epoch"]
        .as_u64()
        .is_some_and(|e| e > epoch)));

    // Five reports (three of one session, two of another), each accepted and stored: the
    // carrier's credits are pending or, once the epoch closed, burned.
    let out = run(&ours);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches(": accepted\n").count(), 5, "{stdout}");
    assert!(
        stdout.contains("session 5F3A0001 seq 3: accepted"),
        "{stdout}"
    );
    assert_eq!(metric(&o, "accepted"), 5);
    assert!(
        wait_for(Duration::from_secs(5), || {
            let b = get(&o, &format!("/v1/subscribers/{cid}"));
            b["pending_dc"].as_u64() > Some(0) || b["burned_dc"].as_u64() > Some(0)
        }),
        "{}",
        get(&o, &format!("/v1/subscribers/{cid}"))
    );

    // Again: the same envelopes, each a duplicate; nothing signed or stored anew.
    let out = run(&ours);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.matches(": accepted (duplicate)\n").count(),
        5,
        "{stdout}"
    );

    // A carrier off the allow-list: refused, told what to do, exit 1.
    let out = run(&theirs);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches(": refused: ").count(), 5, "{stdout}");
    assert!(stdout.contains(&sid), "{stdout}");
    assert!(stdout.contains("[rules] usage_carriers"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 of 5 reports were not accepted"));
    assert!(get(&o, &format!("/v1/subscribers/{sid}"))["balance_dc"].is_null());
}
