//! Faults on a devnet of real processes (`wisp-oracle` with its embedded broker and four
//! `wisp-agent`s, 20 s epochs), each held to the same targets as the run without a fault:
//!
//! - agents killed with SIGKILL and started again, three times at seeded random moments, and
//!   once across an epoch boundary;
//! - the oracle (and with it the broker) killed in the middle of an epoch, inside the ingest
//!   transaction, inside and right after the close transaction, and right when a close is due,
//!   each time started again on the same data;
//! - one agent's clock 30 s ahead (libfaketime);
//! - two of the four agents cut off from the network (the oracle, the broker, the other
//!   agents and the simulated air) for 30 s across an epoch's close, then healed: each runs in
//!   a network namespace of its own, linked to a bridge the others listen on, and the test
//!   takes the link down and up;
//! - and the baseline: the same run without a fault.
//!
//! A run waits until every node was paid in every category (the warm-up), injects its faults,
//! then runs until three epochs that began after the last fault have closed and every agent's
//! outbox has drained. Then everything stops and the test reads the oracle's and the agents'
//! databases:
//!
//! - **no honest proof rejected**: every node is honest, so no proof of the epochs from the
//!   first fault on may be rejected, at ingest or at the close, and no node penalized. (A
//!   bandwidth test whose prover or measurer was killed or cut off in its epoch may fail: its
//!   receipt says so truthfully, `test_failed` — or `late_arrival` when the measurer's
//!   timeouts end after the epoch's close —, pays nothing and is listed, not counted. A
//!   proof of an epoch whose close came while its node was cut off arrives after the close
//!   and is refused `late_arrival`: an epoch is paid once, so that is the partition's cost,
//!   listed, not counted; any other `late_arrival` counts.) Those
//!   refused while the network forms are listed, not counted: the baseline shows which they
//!   are;
//! - **nothing double-counted**: among the accepted proofs, one heartbeat per node and
//!   sequence number, one beacon per node and epoch, one witness per witness and beacon, one
//!   bandwidth receipt per epoch, prover, measurer and direction;
//! - **nothing lost**: every agent's outbox drained, and every heartbeat an agent signed
//!   (sequence numbers 1 to its last) is stored by the oracle or still in the agent's outbox;
//! - **the same rewards**: every epoch that began after the last fault pays every node for
//!   coverage, backhaul and uptime, and every epoch closed from the first fault on pays out
//!   exactly its emission.
//!
//! Each test takes minutes, so a plain `cargo test` skips them; `.ci/run` runs them with
//! `cargo test --workspace --test faults -- --ignored` (as root: the partition test re-runs
//! itself in a network namespace of its own, so no real network is touched). They run one at a time (a lock), as
//! two devnets at once would starve each other on a small machine. Each prints its counts
//! (lost, double-counted, honest proofs rejected); a failure names the seed
//! (`WISP_FAULT_SEED=<seed>` repeats the same fault moments) and the kept data directory
//! (configurations, databases, each process's log, `audit.txt`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rusqlite::Connection;
use wisp_devnet::devnet::{Devnet, Options, http_get};
use wisp_protocol::envelope::EnvelopeRef;
use wisp_protocol::msg::{BandwidthReceipt, Beacon, Heartbeat, Outcome, Witness};
use wisp_protocol::{Kind, NodeId, Reason};
use wisp_shell::clock::system_ms;

mod audit;
mod netns;

use audit::*;
use netns::*;

/// Hotspots.
const NODES: u32 = 4;
/// Epoch length: the devnet's shortest.
const EPOCH_MS: u64 = 20_000;
/// The settle window the devnet configures its oracle with.
const SETTLE_MS: u64 = 5_000;
/// Epochs that must close, all begun after the last fault, before the audit.
const EPOCHS_AFTER: usize = 3;
/// Where Debian's `libfaketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One devnet at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Set in the re-run of a test inside a network namespace of its own.
const INNER: &str = "WISP_FAULTS_NETNS_INNER";
/// The bridge's address in a partition test: the oracle, its broker, the air and the agents
/// not in a namespace listen on it.
const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fn bin_dir() -> Result<PathBuf> {
    Ok(wisp_tests::bin_dir(&["wisp-agent", "wisp-oracle"]))
}

/// SplitMix64: the fault moments, from the printed seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `WISP_FAULT_SEED`, or a new one each run.
fn seed() -> u64 {
    std::env::var("WISP_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| system_ms() ^ u64::from(std::process::id()).rotate_left(32))
}

/// A devnet under test, and when its faults began and ended.
#[derive(Debug)]
struct Run {
    name: &'static str,
    net: Devnet,
    /// The partition test's namespaces (dropped after the devnet, whose agents run in them).
    namespaces: Option<Namespaces>,
    /// Each time an agent was down or cut off: its index, from and to (Unix ms).
    downtimes: Vec<(usize, u64, u64)>,
    dir: PathBuf,
    t0: Instant,
    /// Unix ms: the warm-up ended, the first fault is about to happen.
    faults_from: u64,
    /// Unix ms: the last fault is over.
    faults_to: u64,
    /// Unix ms: the start of epoch 0.
    genesis_ms: u64,
    /// The oracle's `/v1/nodes` when the run settled.
    nodes: serde_json::Value,
}

impl Run {
    /// Starts the devnet; the agents in `partitionable` each in a network namespace of its
    /// own (then everything listens on [`BRIDGE_IP`] instead of loopback).
    fn start(name: &'static str, seed: u64, dir: PathBuf, partitionable: &[usize]) -> Result<Run> {
        let mut opts = Options {
            seed,
            ..Options::new(
                NODES,
                u32::try_from(EPOCH_MS / 1000)?,
                dir.join("net"),
                bin_dir()?,
            )
        };
        let namespaces = if partitionable.is_empty() {
            None
        } else {
            let ns = Namespaces::create(partitionable)?;
            opts.host = BRIDGE_IP;
            opts.agent_netns = ns.options();
            Some(ns)
        };
        let t0 = Instant::now();
        let net = Devnet::start(opts, &mut |s| eprintln!("[{name}] {s}"))?;
        Ok(Run {
            name,
            net,
            namespaces,
            downtimes: Vec::new(),
            dir,
            t0,
            faults_from: 0,
            faults_to: 0,
            genesis_ms: 0,
            nodes: serde_json::Value::Null,
        })
    }

    fn say(&self, msg: &str) {
        eprintln!("[{} {:>4} s] {msg}", self.name, self.t0.elapsed().as_secs());
    }

    /// Waits until every node was paid in every category (as the devnet's own test does).
    fn warm_up(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            self.net.check_alive()?;
            if let Ok(sum) = self.net.poll()
                && sum.all_paid(&self.net.agents)
            {
                self.say(&format!(
                    "warmed up: every node paid; {} epochs closed",
                    sum.epochs_closed
                ));
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "not every node was paid within 300 s of the start"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        let db = Connection::open(self.net.oracle_db())?;
        db.busy_timeout(Duration::from_secs(5))?;
        self.genesis_ms = u64::try_from(db.query_row(
            "SELECT value FROM meta WHERE key = 'genesis_ms'",
            [],
            |r| r.get::<_, i64>(0),
        )?)?;
        self.faults_from = system_ms();
        Ok(())
    }

    /// The epoch open at Unix ms `t`.
    fn epoch_at(&self, t: u64) -> u64 {
        t.saturating_sub(self.genesis_ms) / EPOCH_MS
    }

    /// The start of the next epoch, Unix ms.
    fn next_boundary(&self) -> u64 {
        self.genesis_ms + (self.epoch_at(system_ms()) + 1) * EPOCH_MS
    }

    fn sleep_until(&self, t: u64) {
        let now = system_ms();
        if t > now {
            std::thread::sleep(Duration::from_millis(t - now));
        }
    }

    /// Runs until [`EPOCHS_AFTER`] epochs begun after the last fault have closed and every
    /// agent was then seen with an empty outbox.
    fn settle(&mut self) -> Result<()> {
        self.faults_to = system_ms();
        let first = self.epoch_at(self.faults_to) + 1;
        let n = self.net.agents.len();
        let mut drained = vec![false; n];
        let deadline = Instant::now()
            + Duration::from_millis((EPOCHS_AFTER as u64 + 2) * EPOCH_MS + SETTLE_MS + 120_000);
        self.say(&format!(
            "faults over; waiting for epochs {first}..{} to close and the outboxes to drain",
            first + EPOCHS_AFTER as u64 - 1
        ));
        loop {
            self.net.check_alive()?;
            let closed = closed_epochs(&self.net).unwrap_or_default();
            let after = closed.iter().filter(|e| **e >= first).count();
            if after >= EPOCHS_AFTER {
                for (i, d) in drained.iter_mut().enumerate() {
                    if let Ok(st) = self.net.agent_status(i)
                        && st["outbox_depth"].as_u64() == Some(0)
                        && st["outbox_in_flight"].as_u64() == Some(0)
                    {
                        *d = true;
                    }
                }
                if drained.iter().all(|d| *d) {
                    self.say("settled: epochs closed, every outbox drained");
                    self.nodes =
                        serde_json::from_str(&http_get(self.net.oracle_http, "/v1/nodes")?)?;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let status: Vec<String> = (0..n)
                    .map(|i| match self.net.agent_status(i) {
                        Ok(st) => format!(
                            "agent-{i}: outbox {} ({} in flight), broker connected {}",
                            st["outbox_depth"], st["outbox_in_flight"], st["broker_connected"]
                        ),
                        Err(e) => format!("agent-{i}: {e:#}"),
                    })
                    .collect();
                bail!(
                    "not settled: {after} of {EPOCHS_AFTER} epochs closed after the faults (closed: {closed:?}); {}",
                    status.join("; ")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills agent `i` and starts it again after `down`, with `env` added.
    fn bounce_agent(&mut self, i: usize, down: Duration, env: &[(&str, &str)]) -> Result<()> {
        self.net.kill_agent(i)?;
        let killed = system_ms();
        self.say(&format!("agent-{i} killed (SIGKILL)"));
        std::thread::sleep(down);
        self.net.restart_agent(i, env)?;
        self.downtimes.push((i, killed, system_ms()));
        self.say(&format!(
            "agent-{i} started again after {} ms {}",
            down.as_millis(),
            env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        Ok(())
    }

    /// Cuts agents `agents` off the network (their links down) for `length`, then heals the
    /// partition.
    fn partition(&mut self, agents: &[usize], length: Duration) -> Result<()> {
        let ns = self
            .namespaces
            .as_ref()
            .context("this run has no namespaces")?;
        for &i in agents {
            ns.set_link(i, false)?;
        }
        let cut = system_ms();
        self.say(&format!(
            "agents {agents:?} cut off (links down) in epoch {}",
            self.epoch_at(cut)
        ));
        std::thread::sleep(length);
        for &i in agents {
            ns.set_link(i, true)?;
        }
        let healed = system_ms();
        for &i in agents {
            self.downtimes.push((i, cut, healed));
        }
        self.say(&format!(
            "partition healed after {:.1} s, in epoch {}",
            (healed - cut) as f64 / 1000.0,
            self.epoch_at(healed)
        ));
        Ok(())
    }

    /// Whether agent `i` was down or cut off at some moment in `[from, to]` (Unix ms).
    fn unreachable(&self, i: usize, from: u64, to: u64) -> bool {
        self.downtimes
            .iter()
            .any(|(j, down, up)| *j == i && *down <= to && *up >= from)
    }

    /// Starts the oracle with `WISP_ORACLE_CRASH_AT=point` and waits for it to abort there.
    fn crash_oracle_at(&mut self, point: &str) -> Result<()> {
        self.net
            .restart_oracle(&[("WISP_ORACLE_CRASH_AT", point)])?;
        self.say(&format!("oracle started again, to crash at {point}"));
        let status = self.net.wait_exit("oracle", Duration::from_secs(60))?;
        let log = std::fs::read_to_string(self.net.log_path("oracle")).unwrap_or_default();
        ensure!(
            log.contains(&format!("crash point {point} reached")),
            "the oracle exited ({status}) but not at crash point {point}"
        );
        self.say(&format!("oracle aborted at {point} ({status})"));
        Ok(())
    }

    /// Starts the oracle without a crash point and waits until it is connected to its broker.
    fn oracle_up(&mut self) -> Result<()> {
        self.net.restart_oracle(&[])?;
        self.net.wait_oracle_healthy(Duration::from_secs(30))?;
        self.say("oracle started again and healthy");
        Ok(())
    }
}

/// Runs a devnet through the warm-up, `faults` and the settling, audits it and asserts the
/// audit is clean. The data directory is removed when it is, kept otherwise.
fn fault_test(name: &'static str, faults: impl FnOnce(&mut Run, &mut Rng) -> Result<()>) {
    fault_test_on(name, &[], faults);
}

/// [`fault_test`] with the agents in `partitionable` each in a network namespace of its own.
fn fault_test_on(
    name: &'static str,
    partitionable: &[usize],
    faults: impl FnOnce(&mut Run, &mut Rng) -> Result<()>,
) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let seed = seed();
    let dir = tempfile::Builder::new()
        .prefix(&format!("wisp-faults-{name}-"))
        .tempdir()
        .expect("a temporary directory")
        .keep();
    eprintln!(
        "[{name}] seed {seed} (WISP_FAULT_SEED={seed} repeats it); data in {}",
        dir.display()
    );
    let started = Instant::now();
    let mut run = match Run::start(name, seed, dir.clone(), partitionable) {
        Ok(r) => r,
        Err(e) => panic!(
            "{name} (seed {seed}): the devnet did not start: {e:#}\ndata and logs kept in {}",
            dir.display()
        ),
    };
    let outcome = (|| -> Result<Audit> {
        run.warm_up()?;
        faults(&mut run, &mut Rng(seed))?;
        run.settle()?;
        run.net.stop(Duration::from_secs(10));
        audit(&run)
    })();
    let audit = match outcome {
        Ok(a) => a,
        Err(e) => {
            run.net.stop(Duration::from_secs(5));
            panic!(
                "{name} (seed {seed}): {e:#}\ndata and logs kept in {}",
                dir.display()
            );
        }
    };
    let counts = audit.counts(name, seed);
    let _ = std::fs::write(
        run.dir.join("audit.txt"),
        format!("{counts}\n{}", audit.text),
    );
    eprintln!(
        "[{name}] audit after {} s:\n{}\n{counts}",
        started.elapsed().as_secs(),
        audit.text
    );
    assert!(
        audit.clean(),
        "{counts}\n{}\nseed {seed}; data, databases and logs kept in {}",
        audit.text,
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "end-to-end fault test, minutes; run by .ci/run"]
fn baseline_without_faults() {
    // The same run as the fault tests, with a minute of nothing where their faults are.
    fault_test("baseline", |run, _| {
        run.say("no fault: one minute of normal running");
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
}

#[test]
#[ignore = "end-to-end fault test, minutes; run by .ci/run"]
fn agents_killed_and_restarted_at_random_moments_cost_nothing() {
    fault_test("agent-kills", |run, rng| {
        // Three different agents, each killed at a random moment of the next three epochs and
        // started again 1 to 8 s later; then the fourth across an epoch boundary.
        let mut agents: Vec<usize> = (0..run.net.agents.len()).collect();
        for i in (1..agents.len()).rev() {
            let j = usize::try_from(rng.below(i as u64 + 1))?;
            agents.swap(i, j);
        }
        let t0 = system_ms();
        let mut plan: Vec<(u64, usize, u64)> = agents
            .iter()
            .take(3)
            .map(|&i| (t0 + rng.below(3 * EPOCH_MS), i, 1_000 + rng.below(7_000)))
            .collect();
        plan.sort_unstable();
        run.say(&format!(
            "plan: {}",
            plan.iter()
                .map(|(at, i, down)| format!(
                    "agent-{i} at +{:.1} s for {:.1} s",
                    (at - t0) as f64 / 1000.0,
                    *down as f64 / 1000.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // Kills and restarts in time order (an agent may go down while another is down).
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (at, i, down) in &plan {
            events.push((*at, true, *i));
            events.push((at + down, false, *i));
        }
        events.sort_unstable();
        let mut killed_at = BTreeMap::new();
        for (at, kill, i) in events {
            run.sleep_until(at);
            if kill {
                run.net.kill_agent(i)?;
                killed_at.insert(i, system_ms());
                run.say(&format!(
                    "agent-{i} killed (SIGKILL) in epoch {}",
                    run.epoch_at(system_ms())
                ));
            } else {
                run.net.restart_agent(i, &[])?;
                let down = killed_at.remove(&i).unwrap_or(at);
                run.downtimes.push((i, down, system_ms()));
                run.say(&format!("agent-{i} started again"));
            }
        }
        // And once across an epoch boundary, on the agent not killed yet: down from 1 s before
        // the boundary to 4.5 s after it, so that the agent starts with the ended epoch's seed
        // in its store and a heartbeat due at once.
        let last = agents[3 % agents.len()];
        let boundary = run.next_boundary();
        run.sleep_until(boundary - 1_000);
        run.bounce_agent(last, Duration::from_millis(5_500), &[])?;
        Ok(())
    });
}

#[test]
#[ignore = "end-to-end fault test, minutes; run by .ci/run"]
fn oracle_killed_in_ingest_and_in_epoch_close_costs_nothing() {
    fault_test("oracle-kills", |run, rng| {
        // 1. SIGKILL in the middle of an epoch, while the agents' proofs stream in.
        let mid = run.next_boundary() + EPOCH_MS / 2;
        run.sleep_until(mid);
        run.net.kill_oracle()?;
        run.say(&format!(
            "oracle killed (SIGKILL) mid-epoch {}",
            run.epoch_at(system_ms())
        ));
        std::thread::sleep(Duration::from_secs(2));
        // 2. Inside an ingest transaction, before its commit: the resent backlog's first batch.
        run.crash_oracle_at("ingest-before-commit")?;
        // 3. Inside the close transaction, the rewards written, before its commit.
        run.crash_oracle_at("close-mid-transaction")?;
        // 4. Right after the close committed, before its manifest was published: the restart
        //    redoes the close of step 3 at once.
        run.crash_oracle_at("close-after-commit")?;
        run.oracle_up()?;
        // 5. SIGKILL when the next close is due (the epoch's end plus the settle window), within
        //    the few milliseconds the worker takes to notice and commit it.
        let due = run.next_boundary() + SETTLE_MS;
        run.sleep_until(due + rng.below(15));
        let killed_at = system_ms();
        run.net.kill_oracle()?;
        let epoch = run.epoch_at(due) - 1;
        run.say(&format!(
            "oracle killed (SIGKILL) {} ms after epoch {epoch}'s close was due",
            killed_at - due
        ));
        std::thread::sleep(Duration::from_secs(1));
        run.oracle_up()?;
        let db = Connection::open(run.net.oracle_db())?;
        let closed: Option<i64> = db.query_row(
            "SELECT closed_ms FROM epochs WHERE epoch = ?1",
            [i64::try_from(epoch)?],
            |r| r.get(0),
        )?;
        run.say(&match closed.map(to_u64) {
            Some(c) if c <= killed_at => format!(
                "epoch {epoch} had closed {} ms before the kill",
                killed_at - c
            ),
            Some(c) => format!(
                "epoch {epoch} was closed by the restarted oracle, {} ms after the kill",
                c - killed_at
            ),
            None => format!("epoch {epoch} is not closed yet"),
        });
        Ok(())
    });
}

#[test]
#[ignore = "end-to-end fault test, minutes; run by .ci/run"]
fn an_agent_with_its_clock_30_s_ahead_costs_nothing() {
    assert!(
        std::path::Path::new(LIBFAKETIME).is_file(),
        "{LIBFAKETIME} is missing: this test skews one agent's clock with libfaketime; \
         install Debian's `libfaketime` package (apt-get install libfaketime)"
    );
    fault_test("clock-skew", |run, _| {
        // Agent 1 restarts with its wall clock 30 s ahead (its monotonic clock untouched) and
        // keeps it to the end.
        let restarted = system_ms();
        run.bounce_agent(
            1,
            Duration::from_secs(1),
            &[
                ("LD_PRELOAD", LIBFAKETIME),
                ("FAKETIME", "+30s"),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ],
        )?;
        // The skew took, and the agent corrected it: its clock reads 30 s ahead, it says so in
        // its status, and its heartbeats since are stamped on the oracle's (the real) clock.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = run.net.agent_status(1).unwrap_or_default();
            if let (Some(offset), Some(hb)) = (
                st["clock_offset_ms"].as_i64(),
                st["last_heartbeat_ms"].as_u64(),
            ) && (-31_000..=-29_000).contains(&offset)
                && hb > restarted
            {
                ensure!(
                    hb <= system_ms() + 2_000,
                    "agent-1's heartbeat is stamped {:.1} s ahead of the real clock",
                    (hb as f64 - system_ms() as f64) / 1000.0
                );
                run.say(&format!(
                    "agent-1's clock is {:.1} s ahead; it corrects by it, and its last heartbeat is stamped {:+.1} s from the real clock",
                    -offset as f64 / 1000.0,
                    (hb as f64 - system_ms() as f64) / 1000.0
                ));
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "agent-1 did not report a clock offset near -30 s with a heartbeat signed after its restart within 60 s \
                 (is libfaketime working? see {}); last status: {st}",
                run.net.log_path("agent-1").display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // A minute with the skew before the settling, as the other tests have their faults.
        std::thread::sleep(Duration::from_secs(40));
        Ok(())
    });
}

#[test]
#[ignore = "end-to-end fault test, minutes, as root; run by .ci/run"]
fn a_partition_of_two_agents_that_heals_costs_nothing() {
    let name = "a_partition_of_two_agents_that_heals_costs_nothing";
    // Outside, this takes the one-at-a-time lock (other tests of this binary wait) and runs
    // the test again in its own network namespace.
    if !{
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        in_own_namespace(name)
    } {
        return;
    }
    fault_test_on("partition", &[2, 3], |run, rng| {
        // Cut 10–14 s into an epoch for 30 s: that epoch's close (5 s after its end) comes
        // while they are cut off, the next epoch passes entirely, and the partition heals in
        // the first 4 s of the epoch after, inside the second close's settle window. The
        // epochs checked begin 16–20 s after the heal: an agent notices a dead broker
        // connection only when its keep-alive (10 s) goes unanswered, and reconnects with
        // backoff.
        let at = run.next_boundary() + 10_000 + rng.below(4_000);
        run.sleep_until(at);
        run.partition(&[2, 3], Duration::from_secs(30))
    });
}
