//! The `wisp-client` binary as a subscriber runs it: the key file, the peer id, a signed
//! receipt a hotspot can co-sign, and the balance from an oracle (a stand-in HTTP server on an
//! ephemeral loopback port), with the errors an operator sees for bad answers.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::thread::JoinHandle;

use wisp_protocol::NodeKey;
use wisp_protocol::msg::UsageReceipt;

fn client(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wisp-client"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("WISP_CLIENT_DATA_DIR")
        .env_remove("WISP_ORACLE_URL")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// An oracle stand-in that answers one request with `reply` and gives back the request line.
fn oracle_once(reply: Vec<u8>) -> (String, JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&b[..n]);
        }
        // The client may have stopped reading an oversize answer: a broken pipe is fine.
        let _ = s.write_all(&reply);
        let req = String::from_utf8(req).unwrap();
        req.lines().next().unwrap_or_default().to_owned()
    });
    (url, h)
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn key_id_and_sign() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("client");

    let e = err(&client(&dir, &["id"]));
    assert!(e.contains("wisp-client key"), "{e}");

    let id = ok(&client(&dir, &["key"]));
    assert!(id.starts_with("12D3KooW"), "{id}");
    let key_file = dir.join("subscriber.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let pem = std::fs::read(&key_file).unwrap();

    let e = err(&client(&dir, &["key"]));
    assert!(e.contains("already exists"), "{e}");
    assert!(e.contains("back it up"), "{e}");
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        pem,
        "the key is unchanged"
    );

    assert_eq!(ok(&client(&dir, &["id"])), id);
    assert_eq!(ok(&client(&dir, &["id"])), id);

    let hotspot = NodeKey::from_seed(&[7; 32]).id();
    let session = "00112233445566778899aabbccddeeff";
    let args = [
        "sign",
        "--hotspot",
        &hotspot.to_string(),
        "--session",
        session,
        "--seq",
        "3",
        "--down",
        "1048576",
        "--up",
        "2048",
        "--epoch",
        "42",
        "--signed-ms",
        "1800000005000",
        "--start-ms",
        "1800000000000",
    ];
    let bytes = hex::decode(ok(&client(&dir, &args))).unwrap();
    let opened = UsageReceipt::open_for_cosigning(&bytes).unwrap();
    assert_eq!(opened.signer.to_string(), id);
    let r = opened.msg;
    assert_eq!(r.hotspot, hotspot);
    assert_eq!(hex::encode(r.session.0), session);
    assert_eq!(
        (
            r.seq,
            r.bytes_down,
            r.bytes_up,
            r.epoch,
            r.signed_ms,
            r.start_ms
        ),
        (
            3,
            1_048_576,
            2_048,
            42,
            1_800_000_005_000,
            Some(1_800_000_000_000)
        )
    );

    let mut bad = args;
    bad[4] = "abc";
    assert!(err(&client(&dir, &bad)).contains("--session must be 16 bytes"));
    let mut bad = args;
    bad[6] = "0";
    let e = err(&client(&dir, &bad));
    assert!(e.contains("not signed") && e.contains("seq"), "{e}");
}

#[test]
fn balance_from_the_oracle_and_clear_errors_for_bad_answers() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("client");
    let id = ok(&client(&dir, &["key"]));

    let body =
        format!(r#"{{"subscriber":"{id}","balance_dc":1000,"burned_dc":20,"pending_dc":3}}"#);
    let (url, h) = oracle_once(http("200 OK", &body));
    let out = ok(&client(&dir, &["balance", "--oracle", &url]));
    assert_eq!(
        h.join().unwrap(),
        format!("GET /v1/subscribers/{id} HTTP/1.0")
    );
    assert!(out.contains("balance_dc  1000"), "{out}");
    assert!(
        out.contains("burned_dc   20") && out.contains("pending_dc  3"),
        "{out}"
    );

    let (url, h) = oracle_once(http("200 OK", &body));
    let out = ok(&client(
        &dir,
        &["balance", "--oracle", &format!("{url}/"), "--json"],
    ));
    h.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["balance_dc"], 1000);

    let (url, h) = oracle_once(http("200 OK", "<html>hello</html>"));
    let e = err(&client(&dir, &["balance", "--oracle", &url]));
    h.join().unwrap();
    assert!(e.contains("not a balance") && e.contains(&url), "{e}");

    let other = NodeKey::from_seed(&[3; 32]).id();
    let (url, h) = oracle_once(http(
        "200 OK",
        &format!(r#"{{"subscriber":"{other}","balance_dc":1,"burned_dc":0,"pending_dc":0}}"#),
    ));
    let e = err(&client(&dir, &["balance", "--oracle", &url]));
    h.join().unwrap();
    assert!(e.contains("is for subscriber"), "{e}");

    let (url, h) = oracle_once(http("200 OK", &" ".repeat(64 << 10)));
    let e = err(&client(&dir, &["balance", "--oracle", &url]));
    h.join().unwrap();
    assert!(
        e.contains("cannot read the balance") && e.contains("response over"),
        "{e}"
    );

    let (url, h) = oracle_once(http("404 Not Found", r#"{"error":"unknown subscriber"}"#));
    let e = err(&client(&dir, &["balance", "--oracle", &url]));
    h.join().unwrap();
    assert!(
        e.contains("no credits granted yet") && e.contains("unknown subscriber"),
        "{e}"
    );

    for bad in [
        "https://127.0.0.1:1",
        "127.0.0.1:1",
        "http://127.0.0.1:1/api",
    ] {
        let e = err(&client(&dir, &["balance", "--oracle", bad]));
        assert!(e.contains("http://HOST:PORT"), "{bad}: {e}");
    }
    // A closed port: the address and what failed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = err(&client(
        &dir,
        &["balance", "--oracle", &format!("http://{closed}")],
    ));
    assert!(
        e.contains("cannot connect") && e.contains(&closed.to_string()),
        "{e}"
    );
}
