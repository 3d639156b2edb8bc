//! A broker the agent cannot use is said loudly: a WARN line naming the URL and the error from
//! the first attempt, and the same reason in `/readyz`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Runs the agent against `url` (stderr to a file) until it has said what is wrong, and returns
/// the stderr and the `/readyz` answer.
fn trouble(url: &str) -> (String, (u16, String)) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env_at(dir.path(), "127.0.0.1:1", &oracle_key());
    env.retain(|(k, _)| k != "WISP_MQTT__URL" && k != "WISP_LOG__LEVEL");
    env.push(("WISP_MQTT__URL".into(), url.into()));
    env.push(("WISP_LOG__LEVEL".into(), "info".into()));
    let log = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .arg("run")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("WISP_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent {
        child,
        data_dir: dir.path().to_path_buf(),
    };
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let said = wait_for(Duration::from_secs(30), || {
        read()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("cannot connect") && l.contains(url))
    });
    let ready = agent.get("/readyz");
    let stderr = read();
    assert!(said, "no WARN that it cannot connect to {url}:\n{stderr}");
    drop(agent);
    (stderr, ready)
}

fn check(url: &str, error_words: &[&str]) {
    let (stderr, (code, body)) = trouble(url);
    println!("{stderr}\n/readyz {code}: {body}");
    let line = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("cannot connect") && l.contains(url))
        .unwrap();
    assert!(
        error_words.iter().any(|w| line.contains(w)),
        "the line does not say what failed ({error_words:?}): {line}"
    );
    // A login sent in the clear to another host is said once, at start-up; to a broker on
    // this machine or over TLS it is not.
    let in_the_clear = url.starts_with("mqtt://") && !url.starts_with("mqtt://127.0.0.1");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("in the clear"))
            .count(),
        usize::from(in_the_clear),
        "{url}"
    );
    assert_eq!(code, 503);
    assert!(
        body.contains(url),
        "/readyz does not name the broker: {body}"
    );
    assert!(
        error_words.iter().any(|w| body.contains(w)),
        "/readyz does not say what failed ({error_words:?}): {body}"
    );
}

#[test]
fn a_closed_port_is_reported() {
    check(
        &format!("mqtt://127.0.0.1:{}", free_port()),
        &["refused", "Refused"],
    );
}

#[test]
fn a_name_that_does_not_resolve_is_reported() {
    check(
        "mqtt://wisp-broker.invalid:1883",
        &["lookup", "resolve", "Name", "name"],
    );
}

#[test]
fn tls_against_a_plain_broker_is_reported() {
    let broker = start_broker();
    check(
        &format!("mqtts://127.0.0.1:{broker}"),
        &["TLS", "Tls", "tls", "reset", "closed", "EOF", "eof"],
    );
}
