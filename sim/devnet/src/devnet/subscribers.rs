//! The devnet's subscribers: each gets a key (`wisp-client key`) and a grant of data credits
//! from the oracle's operator (`wisp-oracle credit grant`), then uses its hotspot for the rest
//! of the run: the real `wisp-client run`, paced, signing receipts as it goes. An
//! inflated-usage cheater's colluding subscriber runs `wisp-devnet cheat-client` instead.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    AgentInfo, CLAIM_PERMILLE, Cheater, Devnet, SUBSCRIBER_GRANT_DC, SUBSCRIBER_RATE_KIB_S,
    SubscriberInfo,
};

/// The bytes a devnet subscriber signs for at a time: a receipt every 8 s at its rate.
const RECEIPT_EVERY_BYTES: u64 = SUBSCRIBER_RATE_KIB_S * 1024 * 8;

/// The hotspot's first announced address with `/p2p/<peer id>`, once it wrote one.
fn hotspot_addr(a: &AgentInfo) -> Result<String> {
    let file = a.data_dir.join("p2p.addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = std::fs::read_to_string(&file).ok().and_then(|s| {
            s.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        }) {
            return Ok(if l.contains("/p2p/") {
                l
            } else {
                format!("{l}/p2p/{}", a.peer_id)
            });
        }
        if Instant::now() > deadline {
            bail!("{} wrote no p2p address within 30 s", a.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` to its end; its stdout, trimmed, or an error with its stderr.
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Devnet {
    /// Creates the subscribers, grants each its credits and starts its client: `subscribers`
    /// on the honest hotspots in turn, and one colluder per inflated-usage cheater.
    pub(super) fn start_subscribers(
        &mut self,
        oracle_cfg: &Path,
        say: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let honest: Vec<AgentInfo> = self
            .agents
            .iter()
            .filter(|a| a.cheater.is_none())
            .cloned()
            .collect();
        let mut plan: Vec<(AgentInfo, bool)> = (0..self.opts.subscribers as usize)
            .filter_map(|k| Some((honest.get(k % honest.len().max(1))?.clone(), false)))
            .collect();
        plan.extend(
            self.agents
                .iter()
                .filter(|a| a.cheater == Some(Cheater::InflatedCounters))
                .map(|a| (a.clone(), true)),
        );
        if plan.is_empty() {
            return Ok(());
        }
        let client_bin = self.opts.bin_dir.join("wisp-client");
        if !client_bin.is_file() {
            bail!(
                "{} not found: subscribers run it (cargo build -p wisp-client), or pass --subscribers 0",
                client_bin.display()
            );
        }
        let oracle_bin = self.opts.bin_dir.join("wisp-oracle");
        let devnet_bin = self.opts.bin_dir.join("wisp-devnet");
        let rate = SUBSCRIBER_RATE_KIB_S.to_string();
        let every = RECEIPT_EVERY_BYTES.to_string();
        for (k, (hotspot, colluder)) in plan.into_iter().enumerate() {
            let name = format!("sub-{k}");
            let dir = self.opts.data_dir.join(&name);
            let peer_id = output(
                Command::new(&client_bin)
                    .arg("--data-dir")
                    .arg(&dir)
                    .arg("key")
                    .env_remove("WISP_CLIENT_DATA_DIR"),
                "wisp-client key",
            )?;
            output(
                Command::new(&oracle_bin)
                    .args([
                        "credit",
                        "grant",
                        &peer_id,
                        &SUBSCRIBER_GRANT_DC.to_string(),
                    ])
                    .args(["--memo", &name, "-c"])
                    .arg(oracle_cfg),
                "wisp-oracle credit grant",
            )?;
            let addr = hotspot_addr(&hotspot)?;
            let common = [
                "--hotspot",
                &addr,
                "--rate-kib-s",
                &rate,
                "--receipt-every-bytes",
                &every,
            ];
            if colluder {
                let claim = CLAIM_PERMILLE.to_string();
                let mut args: Vec<&str> = vec!["cheat-client", "--claim-permille", &claim];
                args.extend(common);
                args.push("--key");
                self.spawn(&name, &devnet_bin, &args, &dir.join("subscriber.key"))?;
            } else {
                let bytes = u64::MAX.to_string();
                let mut args: Vec<&str> = vec!["run", "--bytes", &bytes];
                args.extend(common);
                args.push("--data-dir");
                self.spawn(&name, &client_bin, &args, &dir)?;
            }
            say(&format!(
                "{name:<9} {peer_id}  uses {} ({} DC granted){}",
                hotspot.name,
                SUBSCRIBER_GRANT_DC,
                if colluder {
                    format!("  colludes: claims {}×", CLAIM_PERMILLE / 1000)
                } else {
                    String::new()
                }
            ));
            self.subscribers.push(SubscriberInfo {
                name,
                peer_id,
                hotspot: hotspot.peer_id.clone(),
                colluder,
            });
        }
        Ok(())
    }
}
