//! An external broker the oracle cannot reach is said loudly: a WARN line naming the URL and
//! the error from the first attempt, and the same reason in `/readyz`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

mod live;
use live::wait_for;

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[test]
fn an_unreachable_external_broker_is_reported_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wisp-oracle"))
        .args(["run", "--data-dir", &dir.path().display().to_string()])
        .args(["--broker", &url, "--http-listen", "127.0.0.1:0"])
        .env_remove("WISP_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let said = wait_for(Duration::from_secs(30), || {
        read()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&url))
    });
    let addr_file = dir.path().join("http.addr");
    let up = wait_for(Duration::from_secs(10), || addr_file.exists());
    let ready = up.then(|| {
        get(
            std::fs::read_to_string(&addr_file).unwrap().trim(),
            "/readyz",
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    let stderr = read();
    println!("{stderr}\n/readyz {ready:?}");
    assert!(said, "no WARN naming {url}:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&url))
        .unwrap();
    assert!(line.to_lowercase().contains("refused"), "{line}");
    let (code, body) = ready.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains(&url), "{body}");
    assert!(body.to_lowercase().contains("refused"), "{body}");
}
