//! The devnet's processes: spawned with their logs (in an agent's network namespace if it
//! has one), checked, stopped (SIGTERM, then SIGKILL), and, for fault tests, killed and
//! restarted.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{AgentInfo, Devnet, Proc, http_get};

impl Devnet {
    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.opts.data_dir.join(format!("{name}.log"))
    }

    /// The command that runs `bin` for process `name`: in its agent's network namespace, if
    /// it has one (`ip netns exec` runs the binary in its own place, so the child is the
    /// agent).
    fn command(&self, name: &str, bin: &Path) -> Command {
        match self.netns.get(name) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    pub(super) fn spawn(
        &mut self,
        name: &str,
        bin: &Path,
        args: &[&str],
        cfg: &Path,
    ) -> Result<()> {
        let log = std::fs::File::create(self.log(name))?;
        self.launch(name, bin, args, cfg, log, &[])
    }

    /// An error naming the first process that exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                let log = self.opts.data_dir.join(format!("{}.log", p.name));
                bail!("{} exited ({status}); see {}", p.name, log.display());
            }
        }
        Ok(())
    }

    /// Stops every process: SIGTERM, then SIGKILL to those still running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for p in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + grace;
        for p in &mut self.procs {
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(None) => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                }
            }
        }
        self.procs.clear();
        self.air_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.air_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if !self.procs.is_empty() || self.air_thread.is_some() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Faults, for end-to-end tests: a process killed with SIGKILL (as a power cut stops it) and
/// started again with the same command, configuration and data directory (as a reboot does).
/// The oracle's embedded broker dies and restarts with the oracle, so killing the oracle is a
/// broker restart too.
impl Devnet {
    /// Where the configurations, data and logs are.
    pub fn data_dir(&self) -> &Path {
        &self.opts.data_dir
    }

    /// The oracle's SQLite database.
    pub fn oracle_db(&self) -> PathBuf {
        self.opts.data_dir.join("oracle").join("oracle.db")
    }

    /// Agent `i`'s outbox log (open it with `wisp_agent::store::Store::open`, the agent stopped).
    pub fn agent_db(&self, i: usize) -> Result<PathBuf> {
        Ok(self.agent(i)?.data_dir.join(wisp_agent::store::FILE_NAME))
    }

    /// The log of process `name` (`oracle`, `agent-<i>`); restarts append to it.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log(name)
    }

    fn agent(&self, i: usize) -> Result<&AgentInfo> {
        self.agents
            .get(i)
            .with_context(|| format!("no agent {i}: the devnet has {}", self.agents.len()))
    }

    /// Whether process `name` is running (started, not killed, not exited).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.procs
            .iter_mut()
            .any(|p| p.name == name && matches!(p.child.try_wait(), Ok(None)))
    }

    /// Kills process `name` with SIGKILL and reaps it.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let at = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("{name} is not running"))?;
        let mut p = self.procs.remove(at);
        // `Child::kill` is SIGKILL on Unix; a child that already exited is only reaped.
        let _ = p.child.kill();
        p.child
            .wait()
            .with_context(|| format!("reaping {name} after SIGKILL"))?;
        Ok(())
    }

    /// Kills agent `i` with SIGKILL.
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        let name = self.agent(i)?.name.clone();
        self.kill(&name)
    }

    /// Kills the oracle (and its embedded broker) with SIGKILL.
    pub fn kill_oracle(&mut self) -> Result<()> {
        self.kill("oracle")
    }

    /// Waits up to `timeout` for process `name` to exit by itself (a crash point, a fatal
    /// error), reaps it and returns its exit status.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let at = self
                .procs
                .iter()
                .position(|p| p.name == name)
                .with_context(|| format!("{name} is not running"))?;
            if let Some(status) = self.procs[at].child.try_wait()? {
                self.procs.remove(at);
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{name} still runs after {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts agent `i` again after [`Devnet::kill_agent`]: the same command, configuration and
    /// data directory, `env` added to its environment (e.g. `LD_PRELOAD` and `FAKETIME` for a
    /// skewed clock). It listens for peers on the address it had (`WISP_NET__LISTEN`), as a
    /// hotspot behind a fixed port forward would: the devnet's agents know each other by the
    /// addresses they first announced. Returns once the agent wrote its status address.
    pub fn restart_agent(&mut self, i: usize, env: &[(&str, &str)]) -> Result<()> {
        let a = self.agent(i)?.clone();
        if self.procs.iter().any(|p| p.name == a.name) {
            bail!("{} is still running: kill it first", a.name);
        }
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let listen: Vec<String> = std::fs::read_to_string(a.data_dir.join("p2p.addr"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().split("/p2p/").next())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if !listen.is_empty() && !env.iter().any(|(k, _)| k == "WISP_NET__LISTEN") {
            env.push(("WISP_NET__LISTEN".into(), listen.join(",")));
        }
        let http_addr = a.data_dir.join("http.addr");
        let _ = std::fs::remove_file(&http_addr);
        let cfg = self.opts.data_dir.join(format!("{}.toml", a.name));
        let bin = self.opts.bin_dir.join("wisp-agent");
        self.respawn(&a.name, &bin, &["run", "-c"], &cfg, &env)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&http_addr)
                .is_ok_and(|s| s.trim().parse::<SocketAddr>().is_ok())
            {
                return Ok(());
            }
            if !self.is_running(&a.name) {
                bail!(
                    "{} exited after its restart; see {}",
                    a.name,
                    self.log(&a.name).display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} wrote no status address within 30 s of its restart",
                    a.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the oracle again after [`Devnet::kill_oracle`] (or a crash): the same command,
    /// configuration, data directory and ports, `env` added to its environment (e.g.
    /// `WISP_ORACLE_CRASH_AT`). Does not wait: see [`Devnet::wait_oracle_healthy`].
    pub fn restart_oracle(&mut self, env: &[(&str, &str)]) -> Result<()> {
        if self.procs.iter().any(|p| p.name == "oracle") {
            bail!("the oracle is still running: kill it first");
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let cfg = self.opts.data_dir.join("oracle.toml");
        let bin = self.opts.bin_dir.join("wisp-oracle");
        self.respawn("oracle", &bin, &["run", "-c"], &cfg, &env)
    }

    /// Waits up to `timeout` for the oracle to answer `/healthz` (connected to its broker).
    pub fn wait_oracle_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while http_get(self.oracle_http, "/healthz").is_err() {
            if !self.is_running("oracle") {
                bail!(
                    "the oracle is not running; see {}",
                    self.log("oracle").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the oracle did not become healthy within {} s; see {}",
                    timeout.as_secs(),
                    self.log("oracle").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Agent `i`'s `/status` document.
    pub fn agent_status(&self, i: usize) -> Result<serde_json::Value> {
        let a = self.agent(i)?;
        let addr: SocketAddr = std::fs::read_to_string(a.data_dir.join("http.addr"))
            .with_context(|| format!("{} has no status address", a.name))?
            .trim()
            .parse()
            .with_context(|| format!("{}'s status address", a.name))?;
        Ok(serde_json::from_str(&http_get(addr, "/status")?)?)
    }

    /// Like `spawn`, but appends to the process's log (after a line saying so) and adds `env`.
    fn respawn(
        &mut self,
        name: &str,
        bin: &Path,
        args: &[&str],
        cfg: &Path,
        env: &[(String, String)],
    ) -> Result<()> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))?;
        let extra: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(log, "--- restarted {}", extra.join(" "))?;
        self.launch(name, bin, args, cfg, log, env)
    }

    /// Starts `bin` for process `name` (with `args`, then `cfg`), its output to `log` and `env`
    /// added to its environment.
    fn launch(
        &mut self,
        name: &str,
        bin: &Path,
        args: &[&str],
        cfg: &Path,
        log: std::fs::File,
        env: &[(String, String)],
    ) -> Result<()> {
        let child = self
            .command(name, bin)
            .args(args)
            .arg(cfg)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.procs.push(Proc {
            name: name.to_string(),
            child,
        });
        Ok(())
    }
}
