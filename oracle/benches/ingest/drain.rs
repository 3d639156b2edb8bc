//! The drain part: broker → committed database alone. One `wisp-oracle run` on SQLite takes
//! its proofs from an external broker (`WISP_BENCH_MOSQUITTO`, `host:port`); it is stopped
//! (`SIGSTOP`) while every node publishes, so the broker holds the whole workload queued for
//! the oracle's session, and the clock runs from `SIGCONT` to the last accepted verdict. The
//! load generator only receives acks meanwhile, so what the two cores do in the timed run is
//! the oracle's work and the broker's: the measure of the ingest path the raw verification
//! rate is compared with. The broker must queue the whole burst (`max_queued_messages` ≥ the
//! proofs, as in deploy/mosquitto/wisp.conf's 100,000) and must not be serving another oracle.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wisp_protocol::NodeKey;
use wisp_shell::clock::system_ms as wall_ms;

use crate::cluster::{forget_sessions, listener_pid};
use crate::load::{Broker, Load};

/// What the drain run measured.
pub(crate) struct Figures {
    pub(crate) secs: f64,
    pub(crate) oracle_cpu: Option<f64>,
    pub(crate) broker_cpu: Option<f64>,
    pub(crate) load_cpu: Option<f64>,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(broker: &Broker, nodes: &[NodeKey], per_node: u64) -> Figures {
    let tag = format!("drain{}-{}", std::process::id(), wall_ms());
    let dir = tempfile::tempdir().unwrap();
    let child = crate::load::oracle_command(dir.path(), "warn")
        .args([
            "--broker",
            &format!("mqtt://{}:{}", broker.host, broker.port),
        ])
        .env("WISP_BROKER__CLIENT_ID", format!("wisp-oracle-{tag}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let oracle = Proc(child);
    let figures = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.path().join("oracle.key").exists() {
            assert!(Instant::now() < deadline, "the drain oracle did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let key = wisp_shell::keyfile::load(&dir.path().join("oracle.key")).unwrap();
        let load = Load::connect(broker, key.id(), nodes);
        load.onboard(nodes);
        let proofs = load.sign_heartbeats(nodes, per_node);
        let pid = oracle.0.id();
        let broker_pid = listener_pid(broker.port);
        let mut pids = vec![pid.to_string()];
        pids.extend(broker_pid.clone());
        let (secs, cpu) = load.drain_timed(proofs, pid, &pids);
        drop(load);
        Figures {
            secs,
            oracle_cpu: cpu[0],
            broker_cpu: broker_pid.and(cpu[1]),
            load_cpu: cpu[cpu.len() - 1],
        }
    }));
    drop(oracle);
    forget_sessions(broker, &[tag]);
    figures.unwrap_or_else(|e| std::panic::resume_unwind(e))
}
