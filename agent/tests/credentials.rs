//! `wisp-agent credentials`, the real binary: the node's broker login as a `mosquitto_passwd`
//! command, the login the agent itself uses and the oracle's embedded broker checks; never a
//! new key.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use wisp_protocol::{NodeKey, login};
use wisp_shell::keyfile;

/// Runs `wisp-agent <args>` with only `env` (and the data directory) in its environment.
fn agent(data_dir: &Path, oracle: &NodeKey, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .args(args)
        .env_clear()
        .env("WISP_NODE__DATA_DIR", data_dir)
        .env("WISP_ORACLE__PUBLIC_KEY", oracle.id().to_string())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn credentials_print_the_nodes_login_as_a_mosquitto_passwd_command_and_never_create_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let oracle = NodeKey::from_seed(&[7; 32]);
    let key_file = dir.path().join("node.key");

    // No key yet: refused, and none is created.
    let out = agent(dir.path(), &oracle, &[], &["credentials"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no node key at") && err.contains("wisp-agent keygen"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(key_file.symlink_metadata().is_err(), "a key was created");

    let out = agent(dir.path(), &oracle, &[], &["keygen"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = keyfile::load(&key_file).unwrap();
    let id = key.id().to_string();

    let out = agent(dir.path(), &oracle, &[], &["credentials"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let password = login::password(&key, &oracle.id());
    assert_eq!(
        lines.last().copied(),
        Some(format!("mosquitto_passwd -b /etc/mosquitto/wisp.passwd {id} {password}").as_str()),
        "{stdout}"
    );
    // The other lines are comments: the whole output can be pasted into a shell.
    assert!(lines[..lines.len() - 1].iter().all(|l| l.starts_with('#')));
    assert!(stdout.contains(&format!("# username: {id}\n")), "{stdout}");
    assert!(
        stdout.contains(&format!("# password: {password}\n")),
        "{stdout}"
    );
    // The login the oracle's embedded broker accepts, on this network only.
    assert_eq!(login::check(&id, &password, &oracle.id()), Ok(key.id()));
    let other = NodeKey::from_seed(&[8; 32]);
    assert!(login::check(&id, &password, &other.id()).is_err());

    // Another password file, quoted for the shell; a configured username is pointed out.
    let out = agent(
        dir.path(),
        &oracle,
        &[
            ("WISP_MQTT__USERNAME", "shared"),
            ("WISP_MQTT__PASSWORD", "x"),
        ],
        &[
            "credentials",
            "--password-file",
            "/srv/it's here/wisp.passwd",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "mosquitto_passwd -b '/srv/it'\\''s here/wisp.passwd' {id} {password}\n"
        )),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("mqtt.username is set"),
        "{}",
        text(&out.stderr)
    );

    // Without the oracle's key there is no login to derive.
    let out = Command::new(env!("CARGO_BIN_EXE_wisp-agent"))
        .arg("credentials")
        .env_clear()
        .env("WISP_NODE__DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("oracle.public_key"),
        "{}",
        text(&out.stderr)
    );
}
