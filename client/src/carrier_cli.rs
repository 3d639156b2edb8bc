//! `wisp-client carrier …`: an offload partner's tool (docs/PROTOCOL.md §5.12).
//!
//! - `carrier key` creates the carrier's key file (`<data-dir>/carrier.key`, PKCS#8 PEM, mode
//!   0600), refusing to overwrite one, and prints its peer id: the id the oracle's operator
//!   puts on `[rules] usage_carriers` and grants data credits to.
//! - `carrier id` prints it.
//! - `carrier report` reads FreeRADIUS `detail` files, signs a cumulative report of each
//!   Interim-Update and Stop record ([`wisp_client::carrier`]) for the oracle's current epoch
//!   (`GET /v1/status`), saves the ledger (`<data-dir>/carrier-ledger.json`, 0600) and posts
//!   the reports to `POST /v1/usage/carrier/batch`, at most 256 a request. A batch answer that
//!   rate-limits a report is retried from that report on after its `Retry-After`, a bounded
//!   number of times. It prints one line per report and exits 1 when any was not accepted.
//!
//! The ledger is written before anything is posted, so a report signed once is never signed
//! again with its sequence number: a second run over the same file posts the same envelopes,
//! which the oracle answers as duplicates.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use wisp_client::carrier::{Ledger, Planned, Stations, detail};
use wisp_protocol::NodeKey;
use wisp_shell::{http_get, keyfile};

/// The carrier's key file in the data directory.
const KEY_FILE: &str = "carrier.key";

/// The ledger's file in the data directory.
const LEDGER_FILE: &str = "carrier-ledger.json";

/// The largest `detail` file, stations file or ledger read.
const FILE_MAX: u64 = 256 << 20;

/// Reports in one batch: the oracle's limit (`BATCH_ITEMS_MAX`).
const BATCH: usize = 256;

/// The largest answer to a batch read: 256 results of a few hundred bytes.
const ANSWER_MAX: usize = 1 << 20;

/// The carrier's subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CarrierCmd {
    /// Create the carrier's key (refuses to overwrite one) and print its peer id.
    Key,
    /// Print the carrier's peer id.
    Id,
    /// Sign reports of RADIUS accounting and post them to the oracle.
    Report {
        /// The oracle's API, `http://HOST:PORT`.
        #[arg(long, env = "WISP_ORACLE_URL")]
        oracle: String,
        /// The stations file: one `<Called-Station-Id or NAS-Identifier> <hotspot peer id>`
        /// a line (`#` comments).
        #[arg(long)]
        stations: PathBuf,
        /// The ledger (default: `carrier-ledger.json` in the data directory).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Times a rate-limited batch is posted again.
        #[arg(long, default_value_t = 5)]
        retries: u32,
        /// The longest `Retry-After` waited for, seconds; a longer one ends the run.
        #[arg(long, default_value_t = 60)]
        max_wait_s: u64,
        /// Seconds one request may take (a batch of 256 is judged one report after another,
        /// each stored in a transaction of its own, and on a standby each handed to the
        /// leader).
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// FreeRADIUS `detail` files, read in order.
        #[arg(required = true)]
        detail: Vec<PathBuf>,
    },
}

/// Runs a carrier subcommand with the data directory `dir`.
pub(crate) fn run(dir: &Path, cmd: CarrierCmd) -> anyhow::Result<()> {
    let key_file = dir.join(KEY_FILE);
    match cmd {
        CarrierCmd::Key => {
            keyfile::create_private_dir(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut_slice())
                .map_err(|e| anyhow!("the operating system's random source failed: {e}"))?;
            let key = NodeKey::from_seed(&seed);
            keyfile::save_new(&key_file, &key).with_context(|| {
                "the existing key is this carrier's identity (on the oracle's allow-list, and \
                 the account its reports are paid from): back it up, or use another --data-dir"
            })?;
            eprintln!("created {}", key_file.display());
            println!("{}", key.id());
        }
        CarrierCmd::Id => println!("{}", load_key(&key_file)?.id()),
        CarrierCmd::Report {
            oracle,
            stations,
            ledger,
            retries,
            max_wait_s,
            timeout_s,
            detail,
        } => {
            let key = load_key(&key_file)?;
            let ledger_file = ledger.unwrap_or_else(|| dir.join(LEDGER_FILE));
            let http = Http {
                addr: crate::oracle_addr(&oracle)?,
                url: oracle,
                timeout: Duration::from_secs(timeout_s.max(1)),
            };
            let stations = Stations::parse(&read(&stations)?)
                .with_context(|| format!("in {}", stations.display()))?;
            let mut ledger = load_ledger(&ledger_file)?;
            let epoch = http.epoch()?;
            let now_ms = wisp_shell::clock::system_ms();
            let mut reports = Vec::new();
            for file in &detail {
                let records = detail::parse(&read(file)?)
                    .with_context(|| format!("in {}", file.display()))?;
                let plan = ledger
                    .plan(&records, &stations, &key, epoch, now_ms)
                    .with_context(|| format!("in {}: nothing was posted", file.display()))?;
                eprintln!(
                    "{}: {} reports ({} signed now), {} session starts and {} NAS events \
                     with nothing to report",
                    file.display(),
                    plan.reports.len(),
                    plan.reports.iter().filter(|p| p.fresh).count(),
                    plan.starts,
                    plan.nas_events
                );
                reports.extend(plan.reports.into_iter().map(|p| (file.clone(), p)));
            }
            // Before posting: a report posted is one whose sequence number is spent.
            save_ledger(&ledger_file, &ledger)?;
            let mut failed = 0usize;
            for chunk in reports.chunks(BATCH) {
                failed += http.post_all(chunk, retries, Duration::from_secs(max_wait_s))?;
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} reports were not accepted (above); the accepted ones are \
                     stored",
                    reports.len()
                );
            }
        }
    }
    Ok(())
}

fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    match keyfile::load(path) {
        Ok(k) => Ok(k),
        Err(keyfile::KeyFileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            bail!(
                "no carrier key at {}; create one with `wisp-client carrier key` (or give the \
                 --data-dir that holds it)",
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > FILE_MAX {
        bail!("{} is over {FILE_MAX} bytes: split it", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn load_ledger(path: &Path) -> anyhow::Result<Ledger> {
    if !path.exists() {
        return Ok(Ledger::default());
    }
    serde_json::from_str(&read(path)?).with_context(|| {
        format!(
            "the ledger {} is not one this tool wrote; it holds the sequence numbers used: \
             restore it rather than delete it",
            path.display()
        )
    })
}

/// Writes the ledger to a temporary file (0600) and renames it over the old one, so a crash
/// leaves one or the other whole.
fn save_ledger(path: &Path, ledger: &Ledger) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write the ledger {}", tmp.display()))?;
    f.write_all(serde_json::to_string(ledger)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot replace the ledger {}", path.display()))
}

/// The oracle's API.
struct Http {
    addr: SocketAddr,
    url: String,
    timeout: Duration,
}

impl Http {
    /// The oracle's current epoch, from `GET /v1/status`.
    fn epoch(&self) -> anyhow::Result<u64> {
        let r = http_get::fetch(self.addr, "/v1/status", &self.limits(64 << 10))
            .with_context(|| format!("cannot read the epoch from the oracle at {}", self.url))?;
        if r.status != 200 {
            bail!(
                "the oracle at {} answered HTTP {}: {}",
                self.url,
                r.status,
                r.body.trim()
            );
        }
        let v: Value = serde_json::from_str(&r.body).with_context(|| {
            format!(
                "the oracle at {} answered /v1/status with no JSON",
                self.url
            )
        })?;
        v["epoch"].as_u64().with_context(|| {
            format!(
                "the oracle at {} has no open epoch now (starting, or standing by): try again",
                self.url
            )
        })
    }

    /// Posts `reports` as one batch, again from the first rate-limited one after its
    /// `Retry-After` (at most `retries` times, each wait at most `max_wait`); prints one line
    /// per report; the number not accepted.
    fn post_all(
        &self,
        reports: &[(PathBuf, Planned)],
        retries: u32,
        max_wait: Duration,
    ) -> anyhow::Result<usize> {
        let mut left = reports;
        let mut failed = 0;
        let mut tries = 0;
        while !left.is_empty() {
            let body = json!({
                "reports": left.iter().map(|(_, p)| hex::encode(&p.envelope)).collect::<Vec<_>>()
            });
            let (status, retry_after, answer) =
                self.post("/v1/usage/carrier/batch", body.to_string().as_bytes())?;
            if status != 200 {
                bail!(
                    "the oracle at {} answered HTTP {status} to a batch of {} reports: {}",
                    self.url,
                    left.len(),
                    answer.trim()
                );
            }
            let v: Value = serde_json::from_str(&answer).with_context(|| {
                format!("the oracle at {} answered the batch with no JSON", self.url)
            })?;
            let results = v["results"]
                .as_array()
                .filter(|r| r.len() == left.len())
                .with_context(|| {
                    format!(
                        "the oracle at {} did not answer each report of the batch",
                        self.url
                    )
                })?;
            let mut limited_at = None;
            for (i, ((file, p), r)) in left.iter().zip(results).enumerate() {
                if r["status"] == 429 {
                    limited_at = Some(i);
                    break;
                }
                if !print_result(file, p, r) {
                    failed += 1;
                }
            }
            let Some(i) = limited_at else {
                break;
            };
            left = &left[i..];
            let wait = Duration::from_secs(retry_after.unwrap_or(1).max(1));
            tries += 1;
            if tries > retries || wait > max_wait {
                bail!(
                    "the oracle still rate-limits this carrier ({} reports not posted, asked to \
                     wait {wait:?}); run again later: the posted ones are stored and are \
                     duplicates then",
                    left.len()
                );
            }
            eprintln!("rate limited: {} reports wait {wait:?}", left.len());
            std::thread::sleep(wait);
        }
        Ok(failed)
    }

    /// POSTs `body` as JSON: the status, `Retry-After` in seconds if given, and the body.
    fn post(&self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Option<u64>, String)> {
        let r = http_get::post(
            self.addr,
            path,
            "application/json",
            body,
            &self.limits(ANSWER_MAX),
        )
        .map_err(|e| match e {
            http_get::Error::Connect { .. } => anyhow::Error::new(e)
                .context(format!("the oracle's API at {} is not reachable", self.url)),
            e => e.into(),
        })?;
        let retry_after = r.header("retry-after").and_then(|v| v.parse().ok());
        Ok((r.status, retry_after, r.body))
    }

    /// The bounds of one exchange: the configured timeout (at most 2 s of it to connect), and
    /// answers of at most `max_response` bytes.
    fn limits(&self, max_response: usize) -> http_get::Limits {
        http_get::Limits {
            connect: self.timeout.min(Duration::from_secs(2)),
            total: self.timeout,
            max_response,
        }
    }
}

/// Prints the oracle's verdict on one report; whether it was accepted.
fn print_result(file: &Path, p: &Planned, r: &Value) -> bool {
    let at = format!(
        "{}:{} session {} seq {}",
        file.display(),
        p.line,
        p.acct_session_id,
        p.seq
    );
    match (r["status"].as_u64(), r["verdict"].as_str()) {
        (Some(200), Some("accepted")) => {
            let dup = if r["duplicate"] == true {
                " (duplicate)"
            } else {
                ""
            };
            println!("{at}: accepted{dup}");
            true
        }
        (Some(200), _) => {
            println!(
                "{at}: rejected: {}",
                r["reason"].as_str().unwrap_or("no reason given")
            );
            false
        }
        (Some(403), _) => {
            println!(
                "{at}: refused: {} — ask the oracle's operator to put this carrier's id \
                 (`wisp-client carrier id`) on [rules] usage_carriers",
                r["error"].as_str().unwrap_or("not on the allow-list")
            );
            false
        }
        (Some(202), _) => {
            println!(
                "{at}: handed to the leading oracle, not committed yet: run again (the same \
                 envelope is posted, a duplicate once stored)"
            );
            false
        }
        (status, _) => {
            println!(
                "{at}: HTTP {}: {}",
                status.unwrap_or(0),
                r["error"].as_str().unwrap_or("no reason given")
            );
            false
        }
    }
}
