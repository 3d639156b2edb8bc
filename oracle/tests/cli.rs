//! The operator commands against a real oracle: the `wisp-oracle` binary with its embedded
//! broker, a node onboarded and heartbeating over MQTT with real signed envelopes until an
//! epoch pays it, then `nodes`, `node`, `epoch` and `verify-manifest` run as an operator would.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::process::{Command, Output};
use std::time::Duration;

use wisp_protocol::NodeKey;
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{self, Envelope};
use wisp_protocol::msg::{
    Heartbeat, MANIFEST_PAGE_MAX, RewardEntry, RewardManifest, Verdict, Versions,
};
use wisp_shell::clock::system_ms;

mod live;
use live::{BIN, NodeConn, free_port, onboard, wait_for};

/// Heartbeat `seq` of `epoch`, signed now.
fn heartbeat(key: &NodeKey, epoch: u64, seq: u64) -> Vec<u8> {
    Envelope::sign(key, &heartbeat_msg(epoch, seq, system_ms())).to_bytes()
}

fn heartbeat_msg(epoch: u64, seq: u64, sent_ms: u64) -> Heartbeat {
    Heartbeat {
        epoch,
        seq,
        uptime_s: seq,
        sent_ms,
        fix: None,
        cell: None,
        versions: Versions::new("test", "none"),
        peers: 0,
    }
}

/// Runs the CLI with these arguments.
fn cli(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("WISP_ORACLE_CONFIG")
        .output()
        .unwrap();
    println!(
        "$ wisp-oracle {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Its standard output, which must come with success.
fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(out.status.success(), "`{}` failed", args.join(" "));
    String::from_utf8(out.stdout).unwrap()
}

/// Its error, which must come with a failure exit code.
fn fails(args: &[&str]) -> String {
    let out = cli(args);
    assert!(!out.status.success(), "`{}` succeeded", args.join(" "));
    assert!(out.stdout.is_empty(), "output on failure");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn operator_commands_read_a_running_oracle_and_check_its_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = live::spawn_oracle(
        dir.path(),
        3,
        &[("WISP_EPOCH__HEARTBEAT_INTERVAL_S", "0.5")],
    );
    let okey = wisp_shell::keyfile::load(&dir.path().join("oracle.key")).unwrap();
    let node = NodeConn::connect(oracle.broker, &okey, NodeKey::from_seed(&[7; 32]));
    let id = node.key.id().to_string();
    assert_eq!(
        node.send(onboard(&node.key, "owner-cli")),
        Verdict::Accepted
    );

    // Heartbeats through one whole epoch, from its start, every 450 ms (the interval is 500).
    let first = node.seed().unwrap().epoch;
    assert!(wait_for(Duration::from_secs(10), || node
        .seed()
        .is_some_and(|s| s.epoch > first)));
    let seed = node.seed().unwrap();
    let epoch = seed.epoch;
    let mut seq = 0;
    while system_ms() + 450 < seed.end_ms() {
        seq += 1;
        assert_eq!(
            node.send(heartbeat(&node.key, epoch, seq)),
            Verdict::Accepted
        );
        std::thread::sleep(Duration::from_millis(450));
    }
    // The epoch closes and its manifest is published, retained: these are the bytes to check.
    assert!(
        wait_for(Duration::from_secs(20), || node
            .seen
            .lock()
            .unwrap()
            .manifests
            .contains_key(&epoch)),
        "epoch {epoch}'s manifest was not published"
    );
    let published = node.seen.lock().unwrap().manifests[&epoch].clone();
    assert_eq!(published.len(), 1, "one node, one page");
    let emission = envelope::open::<RewardManifest>(&published[&0])
        .unwrap()
        .msg
        .emission;

    let data = dir.path().display().to_string();
    let api = format!(
        "http://{}",
        std::fs::read_to_string(dir.path().join("http.addr")).unwrap()
    );

    // nodes: the API address from the data directory, a table with the node and its reward.
    // The node list is refreshed by the oracle's worker: wait until the rewards show in it.
    assert!(wait_for(Duration::from_secs(10), || ok(&[
        "nodes",
        "--data-dir",
        &data
    ])
    .contains(&emission.to_string())));
    let table = ok(&["nodes", "--data-dir", &data]);
    let header = table.lines().next().unwrap();
    for col in [
        "PEER ID",
        "STATUS",
        "CELL",
        "OWNER",
        "LAST HEARTBEAT",
        "REWARD E",
    ] {
        assert!(header.contains(col), "{col} missing: {header}");
    }
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("owner-cli") && row.contains(" paid "), "{row}");
    assert!(row.trim_end().ends_with(&emission.to_string()), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["nodes", "--api", &api, "--json"])).unwrap();
    assert_eq!(json[0]["peer_id"], id.as_str());

    // node: place, proofs with verdicts, the epoch's reward.
    let detail = ok(&["node", &id, "--api", &api]);
    assert!(
        detail.contains(&format!("node            {id}")),
        "{detail}"
    );
    assert!(detail.contains("owner-cli"), "{detail}");
    assert!(detail.contains("status          paid"), "{detail}");
    let hb_row = detail
        .lines()
        .find(|l| l.contains(" heartbeat ") && l.contains(" accepted"))
        .unwrap_or_else(|| panic!("no accepted heartbeat in {detail}"));
    assert!(
        hb_row.trim_start().starts_with(&epoch.to_string()),
        "{hb_row}"
    );
    assert!(
        detail.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 6 && w[0] == epoch.to_string() && w[1] == emission.to_string()
        }),
        "no reward row for epoch {epoch}: {detail}"
    );

    // A malformed and an unknown peer id: clear errors, non-zero exit.
    let e = fails(&["node", "not-a-peer-id", "--api", &api]);
    assert!(e.contains("`not-a-peer-id` is not a node's peer id"), "{e}");
    let stranger = NodeKey::from_seed(&[9; 32]).id().to_string();
    let e = fails(&["node", &stranger, "--api", &api]);
    assert!(e.contains("HTTP 404") && e.contains(&stranger), "{e}");

    // epoch: emission, the node's reward by category, one manifest page written as published.
    let out_dir = dir.path().join("saved");
    let shown = ok(&[
        "epoch",
        &epoch.to_string(),
        "--api",
        &api,
        "--out",
        &out_dir.display().to_string(),
    ]);
    assert!(
        shown.contains(&format!("epoch           {epoch} (closed)")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("emission        {emission}")),
        "{shown}"
    );
    assert!(shown.contains("manifest pages  1"), "{shown}");
    let row = shown.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(&emission.to_string()), "{row}");
    let saved = out_dir.join(format!("epoch-{epoch}-page-0.manifest"));
    assert_eq!(std::fs::read(&saved).unwrap(), published[&0]);
    let e = fails(&["epoch", "999999", "--api", &api]);
    assert!(e.contains("no epoch 999999"), "{e}");

    // verify-manifest: the real manifest passes; a flipped byte and another key do not.
    let oracle_id = okey.id().to_string();
    let saved_s = saved.display().to_string();
    let report = ok(&["verify-manifest", &saved_s, "--oracle", &oracle_id]);
    assert!(
        report.contains(&format!("manifest of epoch {epoch}: OK")),
        "{report}"
    );
    assert!(report.contains("entries      1"), "{report}");
    assert!(report.contains(&format!("total        {emission} = emission {emission}")));
    let root = envelope::open::<RewardManifest>(&published[&0])
        .unwrap()
        .msg
        .root;
    assert!(report.contains(&root.to_string()), "{report}");

    // Byte 5 is in the payload, which starts at byte 3 or 4 (after the version, the kind and
    // its length as a varint of one or two bytes).
    let mut flipped = published[&0].clone();
    flipped[5] ^= 0x01;
    let bad = dir.path().join("flipped.manifest");
    std::fs::write(&bad, &flipped).unwrap();
    let e = fails(&[
        "verify-manifest",
        &bad.display().to_string(),
        "--oracle",
        &oracle_id,
    ]);
    assert!(e.contains("signature check failed"), "{e}");

    let e = fails(&["verify-manifest", &saved_s, "--oracle", &stranger]);
    assert!(
        e.contains("signer check failed") && e.contains(&stranger),
        "{e}"
    );
}

#[test]
fn without_a_running_oracle_the_error_names_the_address_and_what_to_do() {
    // A port nothing listens on any more.
    let closed = free_port();
    let api = format!("http://127.0.0.1:{closed}");
    let e = fails(&["nodes", "--api", &api]);
    assert!(e.contains(&format!("127.0.0.1:{closed}")), "{e}");
    assert!(e.contains("start the oracle") && e.contains("--api"), "{e}");

    // No oracle ever ran with this data directory: no address file.
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&[
        "epoch",
        "1",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    assert!(e.contains("http.addr") && e.contains("--api"), "{e}");
}

/// Manifest pages of `n` entries, signed by `key` after `edit` changed them.
fn pages(key: &NodeKey, n: usize, edit: impl Fn(&mut RewardManifest)) -> Vec<Vec<u8>> {
    let mut ids: Vec<_> = (0..n)
        .map(|i| NodeKey::from_seed(blake3::hash(&i.to_le_bytes()).as_bytes()).id())
        .collect();
    ids.sort();
    let entries: Vec<RewardEntry> = ids
        .into_iter()
        .enumerate()
        .map(|(i, node)| RewardEntry {
            node,
            owner: format!("owner-{i}"),
            amount: 1_000 + i as u64,
            coverage: 0,
            backhaul: 0,
            uptime: 1_000 + i as u64,
            usage: 0,
        })
        .collect();
    let leaves: Vec<[u8; 32]> = entries.iter().map(RewardEntry::leaf).collect();
    let chunks: Vec<&[RewardEntry]> = entries.chunks(MANIFEST_PAGE_MAX).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(p, chunk)| {
            let mut m = RewardManifest {
                epoch: 42,
                emission: entries.iter().map(|e| e.amount).sum(),
                entry_count: n as u32,
                root: ByteArray(wisp_protocol::merkle::root(&leaves)),
                page: p as u32,
                page_count: chunks.len() as u32,
                entries: chunk.to_vec(),
            };
            edit(&mut m);
            Envelope::sign(key, &m).to_bytes()
        })
        .collect()
}

#[test]
fn verify_manifest_joins_the_pages_and_names_the_check_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = NodeKey::from_seed(&[3; 32]);
    let id = oracle.id().to_string();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let good = pages(&oracle, MANIFEST_PAGE_MAX + 1, |_| {});
    assert_eq!(good.len(), 2);
    let (p0, p1) = (write("p0", &good[0]), write("p1", &good[1]));
    // Both pages, in either order.
    let report = ok(&["verify-manifest", &p1, &p0, "--oracle", &id]);
    assert!(report.contains("manifest of epoch 42: OK"), "{report}");
    assert!(report.contains(&format!("entries      {}", MANIFEST_PAGE_MAX + 1)));

    let check = |files: &[&str], want: &str| {
        let mut args = vec!["verify-manifest"];
        args.extend_from_slice(files);
        args.extend_from_slice(&["--oracle", &id]);
        let e = fails(&args);
        assert!(e.contains(want), "wanted {want:?} in {e}");
    };
    check(&[&p0], "has 2 pages and these files hold page(s) 0");
    check(&[&p0, &p0], "are both page 0");
    // Validly signed, but the root is not the entries' root, or the total not the emission.
    let bad_root = pages(&oracle, 3, |m| m.root = ByteArray([7; 32]));
    check(&[&write("root", &bad_root[0])], "merkle root check failed");
    let bad_total = pages(&oracle, 3, |m| m.emission += 1);
    check(&[&write("total", &bad_total[0])], "total check failed");
    let other_epoch = pages(&oracle, MANIFEST_PAGE_MAX + 1, |m| m.epoch = 43);
    check(
        &[&p0, &write("other", &other_epoch[1])],
        "different manifests",
    );
    // Not a manifest at all.
    let hb = Envelope::sign(&oracle, &heartbeat_msg(1, 1, 1)).to_bytes();
    check(
        &[&write("hb", &hb)],
        "a `heartbeat` envelope, not a reward manifest",
    );
    check(
        &[&write("junk", b"not an envelope")],
        "not a signed envelope",
    );
    check(
        &[&dir.path().join("absent").display().to_string()],
        "cannot read",
    );
}
