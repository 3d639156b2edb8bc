//! The `wisp-devnet` binary refuses bad input with a clear error before it starts anything
//! (and building this test builds the binary, which `tests/tests/devnet.rs` starts).

use std::process::Command;

fn devnet(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wisp-devnet"))
        .args(args)
        .output()
        .expect("running wisp-devnet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn until_paid_needs_a_time_limit() {
    let (ok, err) = devnet(&["run", "--until-paid"]);
    assert!(!ok);
    assert!(err.contains("--until-paid needs --for-s"), "{err}");
}

#[test]
fn an_unknown_cheater_is_named() {
    let (ok, err) = devnet(&["run", "--cheaters", "relay,teleport", "--for-s", "1"]);
    assert!(!ok);
    assert!(err.contains("teleport"), "{err}");
}

#[test]
fn cheat_agent_needs_a_configuration() {
    let (ok, err) = devnet(&["cheat-agent", "--shave-uploads", "100"]);
    assert!(!ok);
    assert!(err.contains("--config"), "{err}");
}
