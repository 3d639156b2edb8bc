//! End to end: `wisp-sim devnet` starts the real `wisp-oracle` and `wisp-agent` binaries as
//! processes on loopback, their simulated devices on one shared simulated air, and every honest
//! node is paid for coverage, backhaul and uptime, while three cheaters (a forged location,
//! relayed beacons, replayed beacons) lose their reward; then everything stops and no
//! process is left. (The lying measurer is not caught reliably on one busy machine yet: not
//! asserted.)
//!
//! The binaries come from the same `cargo test --workspace` build (target/debug next to this
//! test's directory).

use std::path::PathBuf;
use std::process::Command;

/// target/debug: this test runs from target/debug/deps.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/debug")
        .to_path_buf();
    for b in ["wisp-sim", "wisp-agent", "wisp-oracle"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo test --workspace` (it builds the binaries) or \
             `cargo build -p wisp-sim -p wisp-agent -p wisp-oracle` first",
            dir.join(b).display()
        );
    }
    dir
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

#[test]
fn a_devnet_pays_every_honest_node_in_every_category_catches_its_cheaters_and_stops_cleanly() {
    let bins = bin_dir();
    let data = tempfile::tempdir().expect("a temporary directory");
    let dir = data.path().join("net");
    let out = Command::new(bins.join("wisp-sim"))
        .args([
            "devnet",
            "--nodes",
            "6",
            "--epoch-s",
            "20",
            "--for-s",
            "300",
            "--until-paid",
            "--every-s",
            "20",
            "--cheaters",
            "fake_location,relay,replay",
            "--bin-dir",
        ])
        .arg(&bins)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("running wisp-sim devnet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs =
        |name: &str| std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    assert!(
        out.status.success(),
        "devnet failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- oracle.log\n{}",
        logs("oracle")
    );
    // The final table: six honest agents, each paid in all three categories.
    let final_part = stdout
        .split("final, after")
        .nth(1)
        .expect("a final summary");
    let rows: Vec<&str> = final_part
        .lines()
        .filter(|l| l.trim_start().starts_with("agent-"))
        .collect();
    assert_eq!(rows.len(), 6, "{final_part}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let paid: Vec<u64> = cols[2..5].iter().map(|c| c.parse().unwrap_or(0)).collect();
        assert!(
            paid.iter().all(|p| *p > 0),
            "not paid in every category: {row}"
        );
        // The measured backhaul is shown.
        assert!(
            cols[5..7]
                .iter()
                .any(|c| c.parse::<f64>().is_ok_and(|m| m > 0.0)),
            "no Mbit/s: {row}"
        );
    }
    // Each cheater earned nothing in the last closed epoch and was refused or marked for what
    // it did.
    let cheaters: Vec<&str> = final_part
        .lines()
        .filter(|l| {
            ["[fake_location:", "[relay:", "[replay:"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    assert_eq!(cheaters.len(), 3, "{final_part}");
    for row in cheaters {
        assert!(row.contains(": caught ·"), "a cheater not caught: {row}");
    }
    // Every process stopped with the devnet.
    let left = processes_mentioning(&dir.to_string_lossy());
    assert!(left.is_empty(), "left behind: {left:?}");
}
