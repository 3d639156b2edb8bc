//! The shipped proof-of-usage scripts (`deploy/usage/`), run as the agent runs them, with the
//! programs they call (`iw`, `nft`) replaced on `PATH` by recorders: this machine has no
//! access point and no nftables. `station-counters.sh` turns a recorded `iw station dump` into
//! lines the agent's own parser reads; `nft-hook.sh` turns each decision into the set change it
//! stands for.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wisp_agent::shell::usage::{ClientAddr, parse_counters};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/usage")
        .join(name)
}

/// A directory for `PATH` holding `name`, a shell script with `body`.
fn fake(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(bin: &Path, path_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let path = format!("{}:/usr/bin:/bin", path_dir.display());
    Command::new(bin)
        .args(args)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn station_counters_print_each_stations_bytes_for_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/iw-station-dump.txt");
    let args = dir.path().join("iw.args");
    fake(
        dir.path(),
        "iw",
        &format!(
            "echo \"$@\" > '{}'\ncat '{}'",
            args.display(),
            dump.display()
        ),
    );
    let out = run(
        &script("station-counters.sh"),
        dir.path(),
        &[],
        &[("WISP_USAGE_IFACE", "phy0-ap0")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&args).unwrap().trim(),
        "dev phy0-ap0 station dump"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "02:11:22:33:44:55 73400320 1843212\n02:aa:bb:cc:dd:ee 21474836480 5368709120\n"
    );
    // What the agent reads from it: each station by MAC, down = what the radio sent it, counts
    // above 32 bits kept whole.
    let (lines, bad) = parse_counters(&text);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        lines,
        vec![
            (
                ClientAddr::Mac([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]),
                73_400_320,
                1_843_212
            ),
            (
                ClientAddr::Mac([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]),
                20 << 30,
                5 << 30
            ),
        ]
    );

    // No station: no line. A failing `iw` fails the program (the agent counts it).
    fake(dir.path(), "iw", "exit 0");
    let out = run(&script("station-counters.sh"), dir.path(), &[], &[]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    fake(
        dir.path(),
        "iw",
        "echo 'command failed: No such device (-19)' >&2; exit 237",
    );
    let out = run(&script("station-counters.sh"), dir.path(), &[], &[]);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn the_nft_hook_adds_a_blocked_address_to_its_set_and_serving_takes_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("nft.calls");
    // Records each call; `get element` finds nothing (the address is not in the set).
    fake(
        dir.path(),
        "nft",
        &format!(
            "echo \"$@\" >> '{}'\ncase \"$1\" in get) exit 1 ;; esac",
            calls.display()
        ),
    );
    fake(dir.path(), "logger", "exit 0");
    let hook = script("nft-hook.sh");
    let peer = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";
    let ip = Ipv4Addr::new(192, 168, 1, 23).to_string();
    for (args, ok) in [
        (vec!["block", peer, ip.as_str(), "unsigned"], true),
        (
            vec!["block", peer, "fd00::17", "refused:usage_stale_seq"],
            true,
        ),
        (vec!["serve", peer, ip.as_str(), "agreed"], true),
        (vec!["block", peer, "-", "uncovered"], true),
        (vec!["pause", peer, ip.as_str(), "x"], false),
    ] {
        let out = run(&hook, dir.path(), &args, &[]);
        assert_eq!(out.status.success(), ok, "{args:?}: {out:?}");
    }
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        format!(
            "add element inet wisp_usage blocked4 {{ {ip} }}\n\
             add element inet wisp_usage blocked6 {{ fd00::17 }}\n\
             delete element inet wisp_usage blocked4 {{ {ip} }}\n"
        ),
        "an address-less decision and an unknown action change nothing"
    );

    // Serving an address that is not in the set (never blocked) succeeds; a failing `nft` on
    // a block fails the hook, so the agent logs and retries it.
    fake(
        dir.path(),
        "nft",
        "case \"$1\" in get) exit 1 ;; *) echo 'Error: No such file or directory' >&2; exit 1 ;; esac",
    );
    assert!(
        run(&hook, dir.path(), &["serve", peer, &ip, "agreed"], &[])
            .status
            .success()
    );
    assert!(
        !run(&hook, dir.path(), &["block", peer, &ip, "unsigned"], &[])
            .status
            .success()
    );
}
