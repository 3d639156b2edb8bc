//! `config check` refuses every key file `run` refuses, for both daemons: each binary is
//! started for real on the same key states, and `run` and `check` must both fail.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wisp_protocol::NodeKey;

/// What is at the key path before `run` and `check` look at it.
#[derive(Clone, Copy, Debug)]
enum KeyState {
    /// The key, mode 0644.
    Readable,
    /// A symlink to a copy of the key with mode 0644.
    SymlinkToReadable,
    /// A symlink to nothing: `run` cannot create a key through it.
    DanglingSymlink,
    /// A directory.
    Directory,
    /// An empty file, mode 0600.
    NotAKey,
}

fn set_up(key_file: &Path, state: KeyState) {
    use std::os::unix::fs::PermissionsExt;
    let dir = key_file.parent().unwrap();
    let readable = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
    match state {
        KeyState::Readable => readable(key_file).unwrap(),
        KeyState::SymlinkToReadable => {
            let shared = dir.join("shared.key");
            std::fs::rename(key_file, &shared).unwrap();
            readable(&shared).unwrap();
            std::os::unix::fs::symlink(&shared, key_file).unwrap();
        }
        KeyState::DanglingSymlink => {
            std::fs::remove_file(key_file).unwrap();
            std::os::unix::fs::symlink(dir.join("nowhere.key"), key_file).unwrap();
        }
        KeyState::Directory => {
            std::fs::remove_file(key_file).unwrap();
            std::fs::create_dir(key_file).unwrap();
        }
        KeyState::NotAKey => {
            std::fs::write(key_file, b"").unwrap();
            std::fs::set_permissions(key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Runs the command to its end (it must end within a minute) and returns whether it
/// succeeded and its standard error.
fn finish(cmd: &mut Command, stderr_file: &Path) -> (bool, String) {
    let err = std::fs::File::create(stderr_file).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after a minute: it did not refuse the key");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(stderr_file).unwrap(),
    )
}

/// One daemon's commands on a data directory.
struct Daemon {
    /// The key file's name in the data directory.
    key_file: &'static str,
    /// The arguments that make a key.
    keygen: &'static [&'static str],
    /// The arguments that run the daemon.
    run: &'static [&'static str],
    /// The arguments that check its configuration.
    check: &'static [&'static str],
    /// The command with these arguments on a data directory.
    command: fn(&Path, &[&str]) -> Command,
}

fn bin(name: &str) -> PathBuf {
    wisp_tests::bin_dir(&[name]).join(name)
}

fn agent(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("wisp-agent"));
    cmd.args(args).envs([
        ("WISP_NODE__DATA_DIR", data_dir.display().to_string()),
        (
            "WISP_ORACLE__PUBLIC_KEY",
            NodeKey::from_seed(&[7; 32]).id().to_string(),
        ),
        // Nothing listens there: `run` must stop at the key, before it connects anywhere.
        ("WISP_MQTT__URL", "mqtt://127.0.0.1:1".into()),
        ("WISP_HTTP__LISTEN", "127.0.0.1:0".into()),
        ("WISP_NET__LISTEN", "/ip4/127.0.0.1/tcp/0".into()),
        ("WISP_LOG__LEVEL", "warn".into()),
    ]);
    cmd
}

fn oracle(data_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("wisp-oracle"));
    c.args(args)
        .args(["--data-dir", &data_dir.display().to_string()]);
    c
}

const AGENT: Daemon = Daemon {
    key_file: "node.key",
    keygen: &["keygen"],
    run: &["run"],
    check: &["config", "check"],
    command: agent,
};

const ORACLE: Daemon = Daemon {
    key_file: "oracle.key",
    keygen: &["key"],
    run: &["run"],
    check: &["check"],
    command: oracle,
};

/// No key yet (`run` creates one) and a good key pass the check; each bad key state fails
/// `run` and `check` alike, and a key readable by others is named by its mode in both.
fn check_refuses_every_key_run_refuses(d: &Daemon) {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("stderr");
    let cmd = |data: &Path, args: &[&str]| (d.command)(data, args);
    let data = tempfile::tempdir().unwrap();
    let (ok, err) = finish(&mut cmd(data.path(), d.check), &log);
    assert!(ok, "{err}");
    assert!(finish(&mut cmd(data.path(), d.keygen), &log).0);
    let (ok, err) = finish(&mut cmd(data.path(), d.check), &log);
    assert!(ok, "{err}");

    for state in [
        KeyState::Readable,
        KeyState::SymlinkToReadable,
        KeyState::DanglingSymlink,
        KeyState::Directory,
        KeyState::NotAKey,
    ] {
        let data = tempfile::tempdir().unwrap();
        assert!(finish(&mut cmd(data.path(), d.keygen), &log).0);
        set_up(&data.path().join(d.key_file), state);
        let (run_ok, run_err) = finish(&mut cmd(data.path(), d.run), &log);
        assert!(!run_ok, "{state:?}: run accepted the key");
        let (check_ok, check_err) = finish(&mut cmd(data.path(), d.check), &log);
        assert!(
            !check_ok,
            "{state:?}: check accepted a key run refuses ({run_err})"
        );
        if matches!(state, KeyState::Readable | KeyState::SymlinkToReadable) {
            assert!(run_err.contains("644"), "{state:?}: {run_err}");
            assert!(check_err.contains("644"), "{state:?}: {check_err}");
        }
    }
}

#[test]
fn the_agents_config_check_refuses_every_key_run_refuses() {
    check_refuses_every_key_run_refuses(&AGENT);
}

#[test]
fn the_oracles_check_refuses_every_key_run_refuses() {
    check_refuses_every_key_run_refuses(&ORACLE);
}
