//! `wisp-oracle verify-manifest`: checks saved reward manifest pages offline, with nothing but
//! the oracle's peer id.
//!
//! Each file holds one page's envelope bytes exactly as the oracle publishes them (retained on
//! `wisp/v1/rewards/{epoch}`) and stores them; `wisp-oracle epoch <n> --out <dir>` saves them.
//! The checks run in the order the protocol requires: size and framing, the kind, the signer
//! against the given oracle key, the signature over the raw bytes, and only then the canonical
//! decode and the page's structure. Across the pages: one epoch, emission, entry count and
//! root; every page present once; entries sorted by node id; amounts summing to the emission;
//! and the Merkle root recomputed from the entries equal to the signed one.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use wisp_protocol::envelope::EnvelopeRef;
use wisp_protocol::msg::{RewardEntry, RewardManifest};
use wisp_protocol::{Kind, NodeId, merkle};

/// One page that passed its own checks.
#[derive(Debug)]
struct Page {
    path: PathBuf,
    msg: RewardManifest,
}

/// Checks the manifest pages in `files` against `oracle` and returns the report to print;
/// the error says which check failed, for which file.
pub(crate) fn verify(files: &[PathBuf], oracle: &str) -> anyhow::Result<String> {
    let oracle: NodeId = oracle
        .parse()
        .map_err(|e| anyhow::anyhow!("--oracle `{oracle}` is not a peer id: {e}"))?;
    if files.is_empty() {
        bail!("no manifest file given");
    }
    let pages = files
        .iter()
        .map(|f| page(f, &oracle))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let entries = assemble(pages)?;
    let m = &entries.first_page;
    let mut out = String::new();
    let _ = writeln!(out, "manifest of epoch {}: OK", m.epoch);
    let _ = writeln!(
        out,
        "  signature    valid on each of the {} page(s), by the oracle {oracle}",
        m.page_count
    );
    let _ = writeln!(
        out,
        "  entries      {} (sorted by node id, each amount the sum of its categories)",
        entries.all.len()
    );
    let _ = writeln!(
        out,
        "  total        {} = emission {}",
        entries.total, m.emission
    );
    let by =
        |f: fn(&RewardEntry) -> u64| entries.all.iter().map(|e| u128::from(f(e))).sum::<u128>();
    let _ = writeln!(
        out,
        "  by category  coverage {}, backhaul {}, uptime {}, usage {}",
        by(|e| e.coverage),
        by(|e| e.backhaul),
        by(|e| e.uptime),
        by(|e| e.usage)
    );
    let _ = writeln!(
        out,
        "  merkle root  {} (recomputed from the entries: equal to the signed root)",
        m.root
    );
    Ok(out)
}

/// Reads, authenticates and decodes one page.
fn page(path: &Path, oracle: &NodeId) -> anyhow::Result<Page> {
    let shown = path.display();
    let max = Kind::RewardManifest.max_envelope_len();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("{shown}: cannot read the manifest file"))?;
    if bytes.len() > max {
        bail!("{shown}: larger than any manifest page ({max} bytes): not a manifest");
    }
    let env = EnvelopeRef::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{shown}: not a signed envelope: {e}"))?;
    if env.kind != Kind::RewardManifest {
        bail!(
            "{shown}: a `{}` envelope, not a reward manifest",
            env.kind.name()
        );
    }
    let signer = env.signer_id();
    if signer != *oracle {
        bail!("{shown}: signer check failed: signed by {signer}, not by the oracle {oracle}");
    }
    env.verify().map_err(|e| {
        anyhow::anyhow!(
            "{shown}: signature check failed: the oracle's signature does not hold over these bytes ({e}); the file was altered or damaged"
        )
    })?;
    let opened = env.decode::<RewardManifest>().map_err(|e| {
        anyhow::anyhow!("{shown}: signed by the oracle, but not a valid manifest page: {e}")
    })?;
    Ok(Page {
        path: path.to_path_buf(),
        msg: opened.msg,
    })
}

/// A whole manifest, its pages joined.
#[derive(Debug)]
struct Joined {
    /// Page 0 (every page carries the same epoch, emission, count and root).
    first_page: RewardManifest,
    /// All entries in order.
    all: Vec<RewardEntry>,
    /// Their amounts' sum.
    total: u128,
}

/// Joins authenticated pages: one manifest, every page once, then the whole-manifest checks.
fn assemble(mut pages: Vec<Page>) -> anyhow::Result<Joined> {
    pages.sort_by_key(|p| p.msg.page);
    let first = &pages[0];
    let head = |m: &RewardManifest| (m.epoch, m.emission, m.entry_count, m.root, m.page_count);
    for p in &pages[1..] {
        if head(&p.msg) != head(&first.msg) {
            bail!(
                "{} and {} are pages of different manifests (epoch, emission, entry count or root differ)",
                first.path.display(),
                p.path.display()
            );
        }
    }
    for w in pages.windows(2) {
        if w[0].msg.page == w[1].msg.page {
            bail!(
                "{} and {} are both page {}",
                w[0].path.display(),
                w[1].path.display(),
                w[0].msg.page
            );
        }
    }
    let m = &first.msg;
    if pages.len() != m.page_count as usize {
        let have: Vec<String> = pages.iter().map(|p| p.msg.page.to_string()).collect();
        bail!(
            "epoch {}'s manifest has {} pages and these files hold page(s) {} of them: the root is over every entry, give every page's file",
            m.epoch,
            m.page_count,
            have.join(", ")
        );
    }
    let all: Vec<RewardEntry> = pages.iter().flat_map(|p| p.msg.entries.clone()).collect();
    if let Some(w) = all.windows(2).find(|w| w[0].node >= w[1].node) {
        bail!(
            "order check failed: entries are not sorted by node id across pages ({} before {})",
            w[0].node,
            w[1].node
        );
    }
    let total: u128 = all.iter().map(|e| u128::from(e.amount)).sum();
    if !all.is_empty() && total != u128::from(m.emission) {
        bail!(
            "total check failed: the entries sum to {total}, the signed emission is {}",
            m.emission
        );
    }
    let leaves: Vec<[u8; 32]> = all.iter().map(RewardEntry::leaf).collect();
    let root = merkle::root(&leaves);
    if root != m.root.0 {
        bail!(
            "merkle root check failed: the entries give {}, the manifest signs {}",
            wisp_protocol::bytes::ByteArray(root),
            m.root
        );
    }
    Ok(Joined {
        first_page: pages.swap_remove(0).msg,
        all,
        total,
    })
}
