//! `wisp-client run` against a hotspot over real loopback sockets: the hotspot is the agent's
//! libp2p network with its usage driver (`endpoint` counters). An honest run moves its bytes,
//! gets its receipts co-signed and exits 0, and the hotspot's closed epoch carries the
//! session's receipt, signed by both; a run that never signs (its receipt interval beyond what
//! it moves) is blocked past the hotspot's `grace_bytes` and exits 1 saying so. Timeouts only
//! bound a hang.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use wisp_agent::config::{CounterSource, UsageSettings};
use wisp_agent::metrics::Metrics;
use wisp_agent::net::{self, NetConfig};
use wisp_agent::shell::usage::{UsageIo, run};
use wisp_protocol::envelope::open;
use wisp_protocol::msg::UsageReceipt;
use wisp_protocol::{Kind, NodeKey};

const HANG: Duration = Duration::from_secs(120);
const GRACE: u64 = 4 << 20;

async fn client(data_dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wisp-client"));
    c.arg("--data-dir").arg(data_dir).args(args);
    c.env_remove("WISP_CLIENT_DATA_DIR");
    tokio::time::timeout(
        HANG,
        tokio::task::spawn_blocking(move || c.output().unwrap()),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_run_is_cosigned_and_one_that_never_signs_is_blocked() {
    let key = NodeKey::from_seed(&[1; 32]);
    let cfg = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        usage: true,
        ..NetConfig::default()
    };
    let mut n = net::start(&key, &cfg, NodeKey::from_seed(&[0x0a; 32]).id(), None).unwrap();
    let addr = tokio::time::timeout(HANG, async {
        loop {
            if let Some(a) = n.handle.listen_addrs().await.unwrap().into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let hotspot = format!("{addr}/p2p/{}", n.handle.local_peer_id());
    let mut settings = UsageSettings {
        enabled: true,
        policy: Default::default(),
        hook: None,
        counters: CounterSource::Endpoint,
        counters_interval_ms: 200,
    };
    settings.policy.slack_bytes = 256 << 10;
    settings.policy.grace_bytes = GRACE;
    let (io, link) = UsageIo::new(&mut n, Some(7), Arc::new(Metrics::new("test")));
    let (epoch, mut proofs) = (link.epoch, link.proofs);
    let _driver = tokio::spawn(run(key.clone(), settings, io));

    let alice = tempfile::tempdir().unwrap();
    let out = client(alice.path(), &["key"]).await;
    assert!(out.status.success());
    let alice_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = client(
        alice.path(),
        &[
            "run",
            "--hotspot",
            &hotspot,
            "--bytes",
            "8388608",
            "--up",
            "65536",
            "--epoch",
            "7",
            "--receipt-every-bytes",
            "1048576",
            "--receipt-min-interval-ms",
            "100",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("transferred 8388608 bytes down, 65536 up")
            && stdout.contains("co-signed: seq")
            && stdout.contains("8388608 bytes down, 65536 up\n"),
        "{stdout}"
    );

    epoch.send_replace(Some(8));
    let p = tokio::time::timeout(HANG, proofs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.kind, Kind::UsageReceipt);
    let o = open::<UsageReceipt>(&p.bytes).unwrap();
    assert_eq!(o.cosigners, vec![key.id()]);
    assert_eq!(o.signer.to_peer_id().to_string(), alice_id);
    assert_eq!((o.msg.bytes_down, o.msg.bytes_up), (8 << 20, 65536));

    // Never signs before it is blocked: one receipt per 1 GiB.
    let bob = tempfile::tempdir().unwrap();
    assert!(client(bob.path(), &["key"]).await.status.success());
    let out = client(
        bob.path(),
        &[
            "run",
            "--hotspot",
            &hotspot,
            "--bytes",
            &(64 * GRACE).to_string(),
            "--epoch",
            "8",
            "--receipt-every-bytes",
            &(1u64 << 30).to_string(),
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the hotspot blocked this subscriber after"),
        "{stderr}"
    );
}
