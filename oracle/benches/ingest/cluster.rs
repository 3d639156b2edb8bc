//! The cluster part: N `wisp-oracle run` processes with `cluster.enabled`, one PostgreSQL
//! database (a fresh schema per run, dropped after it) and one external broker, set by
//! `WISP_BENCH_POSTGRES` (a `postgres://` URL or libpq `key=value` pairs) and
//! `WISP_BENCH_MOSQUITTO` (`host:port`). The processes share the oracle key, as a cluster
//! must; the CPU of each, of the broker and of the database's processes serving them is read
//! from `/proc` when they run on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Event, MqttOptions, Packet, QoS};
use wisp_protocol::{NodeKey, topics};
use wisp_shell::clock::system_ms as wall_ms;

use crate::load::{Broker, Load};

/// Where the cluster runs.
pub(crate) struct Setup {
    /// For the oracle's `storage.url`.
    url: String,
    /// For this bench's own connection (tokio-postgres takes both forms).
    conninfo: String,
    pub(crate) broker: Broker,
}

impl Setup {
    /// `None` unless `WISP_BENCH_POSTGRES` is set; set without `WISP_BENCH_MOSQUITTO` is a
    /// mistake, named.
    pub(crate) fn from_env() -> Option<Setup> {
        let pg = std::env::var("WISP_BENCH_POSTGRES").ok()?;
        let broker = mosquitto_from_env()
            .expect("the cluster part needs WISP_BENCH_MOSQUITTO as well as WISP_BENCH_POSTGRES");
        Some(Setup {
            url: crate::pg::url_of("WISP_BENCH_POSTGRES", &pg),
            conninfo: pg,
            broker,
        })
    }

    fn sql(&self, statement: &str) -> Vec<tokio_postgres::Row> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.conninfo, tokio_postgres::NoTls)
                .await
                .expect("WISP_BENCH_POSTGRES: cannot connect");
            let task = tokio::spawn(conn);
            let rows = client.query(statement, &[]).await.unwrap();
            drop(client);
            let _ = task.await;
            rows
        })
    }
}

/// The external broker of `WISP_BENCH_MOSQUITTO` (`host:port`), if set; nodes use clean
/// sessions there (see [`Broker::clean`]).
pub(crate) fn mosquitto_from_env() -> Option<Broker> {
    let mq = std::env::var("WISP_BENCH_MOSQUITTO").ok()?;
    let (host, port) = mq
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .expect("WISP_BENCH_MOSQUITTO is host:port");
    Some(Broker {
        host,
        port,
        clean: true,
    })
}

/// What one cluster run measured.
pub(crate) struct Figures {
    pub(crate) secs: f64,
    /// Per process: its role and its CPU seconds during the timed run.
    pub(crate) oracles: Vec<(String, Option<f64>)>,
    pub(crate) broker_cpu: Option<f64>,
    /// The PostgreSQL backends serving these processes, and the server's own processes
    /// (WAL writer, checkpointer, …).
    pub(crate) db_cpu: Option<f64>,
    pub(crate) load_cpu: Option<f64>,
    /// Proofs the standbys verified and handed to the leader.
    pub(crate) handed: u64,
}

/// One oracle process.
struct Proc {
    child: Child,
    dir: PathBuf,
    name: String,
}

impl Proc {
    fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let addr = std::fs::read_to_string(self.dir.join("http.addr")).ok()?;
        let mut s = std::net::TcpStream::connect(addr.trim()).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r.split_once("\r\n\r\n")?.1.to_string())
    }

    /// Its `/v1/status` role once it is connected to the broker.
    fn role(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.get("/v1/status")?).ok()?;
        (v["broker_connected"] == true).then(|| v["role"].as_str().map(String::from))?
    }

    fn counter(&self, name: &str) -> u64 {
        self.get("/metrics")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// SIGTERM (a clean stop gives the lease up), SIGKILL after 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the workload through `n` oracle processes; cleans up (processes, their broker
/// sessions, the retained seed, the schema) before it returns.
pub(crate) fn run(setup: &Setup, n: usize, nodes: &[NodeKey], per_node: u64) -> Figures {
    let tag = format!("{}-{}", std::process::id(), wall_ms());
    let schema = format!(
        "wisp_bench_{}",
        &blake3::hash(format!("{tag}-{n}").as_bytes()).to_hex()[..16]
    );
    let key = NodeKey::from_seed(blake3::hash(format!("oracle-{tag}-{n}").as_bytes()).as_bytes());
    let root = tempfile::tempdir().unwrap();
    // Made here: processes starting together on a schema that is not there yet race in
    // `CREATE SCHEMA IF NOT EXISTS` (PostgreSQL reports the loser's duplicate key), which
    // stops that process.
    setup.sql(&format!("CREATE SCHEMA \"{schema}\""));
    let procs: Vec<Proc> = (0..n)
        .map(|i| spawn(setup, root.path(), &key, &schema, format!("bench{i}-{tag}")))
        .collect();
    let figures = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure(setup, &procs, &key, nodes, per_node)
    }));
    let names: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
    for p in procs {
        p.stop();
    }
    forget_sessions(&setup.broker, &names);
    setup.sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    figures.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn spawn(setup: &Setup, root: &Path, key: &NodeKey, schema: &str, name: String) -> Proc {
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    wisp_shell::keyfile::save_new(&dir.join("oracle.key"), key).unwrap();
    let b = &setup.broker;
    let child = crate::load::oracle_command(&dir, "warn")
        .args(["--broker", &format!("mqtt://{}:{}", b.host, b.port)])
        .env("WISP_STORAGE__URL", &setup.url)
        .env("WISP_STORAGE__SCHEMA", schema)
        .env("WISP_CLUSTER__ENABLED", "true")
        .env("WISP_CLUSTER__NAME", &name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child, dir, name }
}

fn measure(
    setup: &Setup,
    procs: &[Proc],
    key: &NodeKey,
    nodes: &[NodeKey],
    per_node: u64,
) -> Figures {
    // One leader, the others standing by, every one connected to the broker.
    let deadline = Instant::now() + Duration::from_secs(60);
    let roles = loop {
        let roles: Vec<Option<String>> = procs.iter().map(Proc::role).collect();
        let leaders = roles
            .iter()
            .filter(|r| r.as_deref() == Some("leader"))
            .count();
        let standbys = roles
            .iter()
            .filter(|r| r.as_deref() == Some("standby"))
            .count();
        if leaders == 1 && standbys == procs.len() - 1 {
            break roles.into_iter().map(Option::unwrap).collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "no leader and standbys: {roles:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let load = Load::connect(&setup.broker, key.id(), nodes);
    load.onboard(nodes);
    let proofs = load.sign_heartbeats(nodes, per_node);
    // Pids whose CPU is counted: the oracles, the broker, then the database's.
    let oracle_pids: Vec<String> = procs.iter().map(|p| p.child.id().to_string()).collect();
    let broker_pid = listener_pid(setup.broker.port);
    let db_pids = db_pids(setup, &oracle_pids);
    let mut pids = oracle_pids.clone();
    pids.extend(broker_pid.clone());
    pids.extend(db_pids.iter().cloned());
    let (secs, cpu) = load.publish_timed(proofs, &pids);
    drop(load);
    let n = procs.len();
    let with_broker = usize::from(broker_pid.is_some());
    let broker_cpu = broker_pid.and(cpu[n]);
    let db = &cpu[n + with_broker..cpu.len() - 1];
    // A backend that ended during the run counts nothing; one that could not be read at all
    // (another host) makes the figure unknown.
    let db_cpu =
        (!db.is_empty() && db.iter().any(Option::is_some)).then(|| db.iter().flatten().sum());
    Figures {
        secs,
        oracles: roles.into_iter().zip(cpu[..n].iter().copied()).collect(),
        broker_cpu,
        db_cpu,
        load_cpu: cpu[cpu.len() - 1],
        handed: procs
            .iter()
            .map(|p| p.counter("wisp_oracle_handed_total"))
            .sum(),
    }
}

/// The pid of the process listening on TCP `port` here, from `ss` (none on another host).
pub(crate) fn listener_pid(port: u16) -> Option<String> {
    let out = Command::new("ss")
        .args(["-ltnpH", &format!("( sport = :{port} )")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(pid_in)
}

/// `pid=…` in a line of `ss -p`.
fn pid_in(line: &str) -> Option<String> {
    let rest = line.split_once("pid=")?.1;
    Some(
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .to_string(),
    )
}

/// The PostgreSQL processes that work for `oracles`: the backends whose client ports are
/// theirs (matched through `ss` and `pg_stat_activity`), and the server's own processes
/// (WAL writer, checkpointer, background writer, autovacuum), shared with whatever else
/// uses the server.
fn db_pids(setup: &Setup, oracles: &[String]) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let ports: Vec<i32> = out
        .lines()
        .filter(|l| pid_in(l).is_some_and(|p| oracles.contains(&p)))
        .filter_map(|l| {
            // Local address first, then the peer's.
            let addrs: Vec<&str> = l.split_whitespace().filter(|t| t.contains(':')).collect();
            let local: i32 = addrs.first()?.rsplit_once(':')?.1.parse().ok()?;
            let peer = addrs.get(1)?.rsplit_once(':')?.1;
            (peer == url_port(&setup.url)).then_some(local)
        })
        .collect();
    setup
        .sql("SELECT pid, client_port, backend_type FROM pg_stat_activity")
        .iter()
        .filter(|r| {
            let port: Option<i32> = r.get(1);
            let kind: Option<String> = r.get(2);
            match kind.as_deref() {
                Some("client backend") => port.is_some_and(|p| ports.contains(&p)),
                _ => true,
            }
        })
        .map(|r| r.get::<_, i32>(0).to_string())
        .collect()
}

/// The port of a `postgres://` URL.
fn url_port(url: &str) -> &str {
    let hostport = url
        .split_once("://")
        .map_or(url, |x| x.1)
        .rsplit_once('@')
        .map_or_else(|| url.split_once("://").map_or(url, |x| x.1), |x| x.1);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    hostport.rsplit_once(':').map_or("5432", |x| x.1)
}

/// Ends the stopped processes' broker sessions (a persistent session stays in the shared
/// subscription's group and would be handed proofs of the next run) and clears the retained
/// seed this run's key left.
pub(crate) fn forget_sessions(b: &Broker, names: &[String]) {
    let ids = names
        .iter()
        .map(|n| (format!("wisp-oracle-{n}"), false))
        .chain(std::iter::once((
            format!("bench-clear-{}", wall_ms()),
            true,
        )));
    for (id, clear) in ids {
        let mut o = MqttOptions::new(id, b.host.clone(), b.port);
        o.set_clean_session(true);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = rumqttc::Client::new(o, 10);
        if clear {
            let _ = client.publish(topics::EPOCH, QoS::AtLeastOnce, true, Vec::new());
        }
        for ev in conn.iter().take(20) {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) if !clear => break,
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Err(_) => break,
                _ => {}
            }
        }
        let _ = client.disconnect();
    }
}
