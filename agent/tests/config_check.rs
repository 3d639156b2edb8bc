//! `wisp-agent config check` refuses every key file `wisp-agent run` refuses: both binaries
//! are started for real on the same key states, and both must fail.
#![allow(clippy::unwrap_used)]

use std::path::Path;
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

fn agent(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wisp-agent"));
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

#[test]
fn config_check_refuses_every_key_run_refuses() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("stderr");
    // No key yet (`run` creates one), then a good key: the check passes.
    let data = tempfile::tempdir().unwrap();
    let (ok, err) = finish(&mut agent(data.path(), &["config", "check"]), &log);
    assert!(ok, "{err}");
    assert!(finish(&mut agent(data.path(), &["keygen"]), &log).0);
    let (ok, err) = finish(&mut agent(data.path(), &["config", "check"]), &log);
    assert!(ok, "{err}");

    for state in [
        KeyState::Readable,
        KeyState::SymlinkToReadable,
        KeyState::DanglingSymlink,
        KeyState::Directory,
        KeyState::NotAKey,
    ] {
        let data = tempfile::tempdir().unwrap();
        assert!(finish(&mut agent(data.path(), &["keygen"]), &log).0);
        set_up(&data.path().join("node.key"), state);
        let (run_ok, run_err) = finish(&mut agent(data.path(), &["run"]), &log);
        assert!(!run_ok, "{state:?}: run accepted the key");
        let (check_ok, check_err) = finish(&mut agent(data.path(), &["config", "check"]), &log);
        assert!(
            !check_ok,
            "{state:?}: config check accepted a key run refuses ({run_err})"
        );
        if matches!(state, KeyState::Readable | KeyState::SymlinkToReadable) {
            assert!(run_err.contains("644"), "{state:?}: {run_err}");
            assert!(check_err.contains("644"), "{state:?}: {check_err}");
        }
    }
}
