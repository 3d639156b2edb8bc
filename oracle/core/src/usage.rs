//! Proof of usage: the ledger of subscribers' data credits, the rules a usage receipt must
//! pass at ingest, and what an epoch's close burns and pays for.
//!
//! **At ingest** ([`Ledger::check`]), in order, a co-signed receipt (roles and fields already
//! checked by the protocol, `docs/PROTOCOL.md` §5.10) is refused when the rules below say so.
//! An allow-listed carrier's report (§5.12) is judged by the very same rules
//! ([`Ledger::check_carrier`]) with the carrier in the subscriber's place: both become a
//! [`Claim`], and the one rule set judges claims. It is refused when:
//!
//! 1. its hotspot has not onboarded or is denied (`unknown_node`, `denied`): the hotspot is
//!    the co-signer, whose topic it came on;
//! 2. its epoch is not the open epoch it is judged in (`wrong_epoch`), or `signed_ms` lies
//!    outside that epoch widened by the clock skew, or more than the skew ahead of the
//!    oracle's clock (`timestamp_out_of_window`), as heartbeats are timed;
//! 3. the subscriber shares an owner with the hotspot (`usage_self_dealing`): its key is the
//!    hotspot's owner string read as a PeerId, or it is itself a registered node with the
//!    hotspot's owner;
//! 4. the subscriber holds no data credits (`usage_no_credit`): it was never granted any, or
//!    its balance is spent. Only subscribers the operator funded have an account, which is
//!    what bounds the ledger's accounts;
//! 5. its session is bound to another subscriber or hotspot (`usage_session_conflict`): a
//!    session id belongs to the first (subscriber, hotspot) it was accepted with, so a
//!    receipt replayed to a second hotspot, or a colluding subscriber reusing a session, is
//!    refused;
//! 6. its `seq` is not above the session's last accepted one (`usage_stale_seq`), or a
//!    counter is below the last accepted one's (`usage_counters_decreased`);
//! 7. it opens a new session for a subscriber that already holds
//!    `usage_sessions_per_subscriber` of them, or a carrier that holds
//!    `usage_sessions_per_carrier` (`usage_session_limit`).
//!
//! An accepted receipt becomes its session's latest. **At close** ([`settle`]) the receipt
//! counted per session is its highest-seq one of the epoch, and the epoch's usage of the
//! session is that receipt's totals less those counted in earlier epochs. Per hotspot and
//! direction, bytes beyond what its verified backhaul (this epoch's rating of that direction,
//! or `usage_default_backhaul_bps` without one) carries in the epoch's duration are not paid:
//! each session keeps its pro-rata part and its receipt is flagged `usage_exceeds_backhaul`.
//! The paid bytes cost `usage_dc_per_mib` per MiB (rounded down per session). A subscriber
//! whose balance is short pays all it holds, shared among its sessions pro rata (largest
//! remainder), and those receipts are flagged `usage_credit_short` (a carrier pays from its own
//! account the same way, [`settle`] does not tell them apart); a balance never goes
//! below zero. A hotspot that earns nothing this epoch (penalized, or no longer registered)
//! burns and earns nothing either: its receipts are flagged with the reason.
//!
//! **Bounds.** Accounts: one per subscriber the operator granted credits. Grant ids: one per
//! grant the operator issued (it is their audit trail; the store holds them anyway). Sessions:
//! at most `usage_sessions_per_subscriber` per account, each forgotten
//! `usage_session_retention_epochs` after its last receipt once everything of it is counted.
//! An epoch keeps one receipt per session.

use std::collections::{BTreeMap, BTreeSet};

use wisp_protocol::envelope::Opened;
use wisp_protocol::msg::{CarrierReport, CreditGrant, EpochSeed, UsageReceipt};
use wisp_protocol::units::UnixMs;
use wisp_protocol::{NodeId, ProofId, Reason, SubscriberId};

pub use crate::facts::{HotspotUsage, SessionId, UsageOutcome};

use crate::config::{BPS, Rules};
use crate::registry::Registry;
use crate::rules::Checker;

/// Bytes in one MiB, the unit of the price.
pub const MIB: u64 = 1 << 20;

/// A subscriber's data credits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Credits held now.
    pub balance_dc: u64,
    /// Credits burned at closed epochs, in total.
    pub burned_dc: u64,
}

/// A subscriber's balance as the API shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    /// Credits held now (grants less burns at closed epochs).
    pub balance_dc: u64,
    /// Credits burned at closed epochs, in total.
    pub burned_dc: u64,
    /// What the accepted receipts of still-open epochs would burn at their price, before the
    /// backhaul cap, at most `balance_dc`: an estimate of the next burns.
    pub pending_dc: u64,
}

/// One session as the ledger remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The subscriber it is bound to.
    pub subscriber: SubscriberId,
    /// The hotspot it is bound to.
    pub hotspot: NodeId,
    /// The last accepted receipt's seq.
    pub last_seq: u64,
    /// The last accepted receipt's totals (down, up).
    pub last: (u64, u64),
    /// The epoch of the last accepted receipt.
    pub last_epoch: u64,
    /// The totals (down, up) counted at closed epochs.
    pub counted: (u64, u64),
}

/// Who accounted a session's usage, and so which session limit applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reporter {
    /// The subscriber signed the receipt and its hotspot co-signed it.
    Subscriber,
    /// An allow-listed carrier signed the report.
    Carrier,
}

/// A session's cumulative account as the ingest rules judge it: a subscriber's co-signed
/// receipt or a carrier's report, whose checks on the wire already passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The envelope's proof id.
    pub id: ProofId,
    /// The session.
    pub session: SessionId,
    /// Whose account pays: the subscriber, or the carrier's key as an account.
    pub payer: SubscriberId,
    /// Who accounted it.
    pub reporter: Reporter,
    /// The hotspot.
    pub hotspot: NodeId,
    /// The epoch it names.
    pub epoch: u64,
    /// Its seq.
    pub seq: u64,
    /// Bytes delivered to the subscriber in the session so far.
    pub bytes_down: u64,
    /// Bytes the subscriber sent in the session so far.
    pub bytes_up: u64,
    /// When it was signed.
    pub signed_ms: UnixMs,
}

impl Claim {
    /// A subscriber's co-signed receipt.
    pub fn of_receipt(r: &Opened<UsageReceipt>) -> Claim {
        let m = &r.msg;
        Claim {
            id: r.id,
            session: m.session.0,
            payer: m.subscriber,
            reporter: Reporter::Subscriber,
            hotspot: m.hotspot,
            epoch: m.epoch,
            seq: m.seq,
            bytes_down: m.bytes_down,
            bytes_up: m.bytes_up,
            signed_ms: m.signed_ms,
        }
    }

    /// A carrier's report: the carrier pays, from the account of its key.
    pub fn of_carrier(r: &Opened<CarrierReport>) -> Claim {
        let m = &r.msg;
        Claim {
            id: r.id,
            session: m.session.0,
            payer: SubscriberId(m.carrier),
            reporter: Reporter::Carrier,
            hotspot: m.hotspot,
            epoch: m.epoch,
            seq: m.seq,
            bytes_down: m.bytes_down,
            bytes_up: m.bytes_up,
            signed_ms: m.signed_ms,
        }
    }
}

/// A usage receipt (or carrier report) that passed the ingest rules: what its epoch keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageFact {
    /// The receipt's proof id.
    pub id: ProofId,
    /// Its session.
    pub session: SessionId,
    /// Whose account pays: the subscriber, or a carrier's.
    pub subscriber: SubscriberId,
    /// The hotspot.
    pub hotspot: NodeId,
    /// The epoch.
    pub epoch: u64,
    /// Its seq.
    pub seq: u64,
    /// Bytes delivered to the subscriber in the session so far.
    pub bytes_down: u64,
    /// Bytes the subscriber sent in the session so far.
    pub bytes_up: u64,
}

/// Subscribers' accounts, applied grants and sessions. Changed only by accepted grants and
/// receipts (in arrival order) and by closes, so replaying the stored rows with the closes
/// where they happened rebuilds it exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<SubscriberId, Account>,
    grants: BTreeSet<[u8; 16]>,
    sessions: BTreeMap<SessionId, Session>,
    by_subscriber: BTreeMap<SubscriberId, BTreeSet<SessionId>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A subscriber's account, if it was ever granted credits.
    pub fn account(&self, subscriber: &SubscriberId) -> Option<&Account> {
        self.accounts.get(subscriber)
    }

    /// A session the ledger remembers.
    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// How many sessions the ledger remembers.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies a grant signed by `oracle` (else `signer_mismatch`), once per grant id (else
    /// `usage_grant_reused`). A balance saturates at `u64::MAX`.
    pub fn apply_grant(
        &mut self,
        grant: &Opened<CreditGrant>,
        oracle: &NodeId,
    ) -> Result<(), Reason> {
        if grant.signer != *oracle {
            return Err(Reason::SignerMismatch);
        }
        if !self.grants.insert(grant.msg.grant.0) {
            return Err(Reason::UsageGrantReused);
        }
        let acc = self.accounts.entry(grant.msg.subscriber).or_default();
        acc.balance_dc = acc.balance_dc.saturating_add(grant.msg.amount_dc);
        Ok(())
    }

    /// The ingest rules (see the module documentation) for a receipt judged in the open epoch
    /// `seed` describes, at oracle time `now_ms`. Changes nothing: [`Ledger::accept`] records
    /// the receipt once its epoch stored it.
    pub fn check(
        &self,
        registry: &Registry,
        seed: &EpochSeed,
        receipt: &Opened<UsageReceipt>,
        now_ms: UnixMs,
    ) -> Result<UsageFact, Reason> {
        self.check_claim(registry, seed, &Claim::of_receipt(receipt), now_ms)
    }

    /// The same rules for an allow-listed carrier's report (the allow-list is checked where
    /// the report is opened, [`CarrierReport::open_from`]): the carrier pays from its own
    /// account and holds at most `usage_sessions_per_carrier` sessions.
    pub fn check_carrier(
        &self,
        registry: &Registry,
        seed: &EpochSeed,
        report: &Opened<CarrierReport>,
        now_ms: UnixMs,
    ) -> Result<UsageFact, Reason> {
        self.check_claim(registry, seed, &Claim::of_carrier(report), now_ms)
    }

    /// The ingest rules (see the module documentation) for a receipt's or a report's claim.
    pub fn check_claim(
        &self,
        registry: &Registry,
        seed: &EpochSeed,
        r: &Claim,
        now_ms: UnixMs,
    ) -> Result<UsageFact, Reason> {
        let hotspot = Checker::known(registry, &r.hotspot)?;
        if r.epoch != seed.epoch {
            return Err(Reason::WrongEpoch);
        }
        let skew = registry.rules().config().clock_skew_ms;
        if r.signed_ms < seed.start_ms.saturating_sub(skew)
            || r.signed_ms >= seed.end_ms().saturating_add(skew)
            || r.signed_ms > now_ms.saturating_add(skew)
        {
            return Err(Reason::TimestampOutOfWindow);
        }
        let owner_key = hotspot.owner.parse::<NodeId>().ok();
        let same_owner = registry
            .get(r.payer.key())
            .is_some_and(|n| n.owner == hotspot.owner);
        if owner_key.as_ref() == Some(r.payer.key()) || same_owner {
            return Err(Reason::UsageSelfDealing);
        }
        if self
            .accounts
            .get(&r.payer)
            .is_none_or(|a| a.balance_dc == 0)
        {
            return Err(Reason::UsageNoCredit);
        }
        match self.sessions.get(&r.session) {
            Some(s) => {
                if s.subscriber != r.payer || s.hotspot != r.hotspot {
                    return Err(Reason::UsageSessionConflict);
                }
                if r.seq <= s.last_seq {
                    return Err(Reason::UsageStaleSeq);
                }
                if r.bytes_down < s.last.0 || r.bytes_up < s.last.1 {
                    return Err(Reason::UsageCountersDecreased);
                }
            }
            None => {
                let held = self.by_subscriber.get(&r.payer).map_or(0, BTreeSet::len);
                let cfg = registry.rules().config();
                let max = match r.reporter {
                    Reporter::Subscriber => usize::from(cfg.usage_sessions_per_subscriber),
                    Reporter::Carrier => {
                        usize::try_from(cfg.usage_sessions_per_carrier).unwrap_or(usize::MAX)
                    }
                };
                if held >= max {
                    return Err(Reason::UsageSessionLimit);
                }
            }
        }
        Ok(UsageFact {
            id: r.id,
            session: r.session,
            subscriber: r.payer,
            hotspot: r.hotspot,
            epoch: r.epoch,
            seq: r.seq,
            bytes_down: r.bytes_down,
            bytes_up: r.bytes_up,
        })
    }

    /// Records an accepted receipt as its session's latest (binding a new session).
    pub fn accept(&mut self, fact: &UsageFact) {
        let s = self.sessions.entry(fact.session).or_insert(Session {
            subscriber: fact.subscriber,
            hotspot: fact.hotspot,
            last_seq: 0,
            last: (0, 0),
            last_epoch: fact.epoch,
            counted: (0, 0),
        });
        s.last_seq = fact.seq;
        s.last = (fact.bytes_down, fact.bytes_up);
        s.last_epoch = fact.epoch;
        self.by_subscriber
            .entry(fact.subscriber)
            .or_default()
            .insert(fact.session);
    }

    /// Applies a stored close: burns, counted totals, and forgets the sessions idle for
    /// `usage_session_retention_epochs` whose receipts are all counted.
    pub fn apply_close(&mut self, epoch: u64, usage: &UsageOutcome, rules: &Rules) {
        for (sub, burned) in &usage.burns {
            let acc = self.accounts.entry(*sub).or_default();
            // A burn is at most the balance it was computed from; saturating keeps it ≥ 0.
            acc.balance_dc = acc.balance_dc.saturating_sub(*burned);
            acc.burned_dc = acc.burned_dc.saturating_add(*burned);
        }
        for (id, down, up) in &usage.counted {
            if let Some(s) = self.sessions.get_mut(id) {
                s.counted = (s.counted.0.max(*down), s.counted.1.max(*up));
            }
        }
        let keep = u64::from(rules.config().usage_session_retention_epochs);
        let idle: Vec<(SessionId, SubscriberId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.last_epoch.saturating_add(keep) <= epoch && s.counted == s.last)
            .map(|(id, s)| (*id, s.subscriber))
            .collect();
        for (id, sub) in idle {
            self.sessions.remove(&id);
            if let Some(set) = self.by_subscriber.get_mut(&sub) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_subscriber.remove(&sub);
                }
            }
        }
    }

    /// A subscriber's balance for the API; `None` for a subscriber never granted credits.
    pub fn balance(&self, subscriber: &SubscriberId, rules: &Rules) -> Option<Balance> {
        let acc = self.accounts.get(subscriber)?;
        let price = rules.config().usage_dc_per_mib;
        let pending: u128 = self
            .by_subscriber
            .get(subscriber)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .map(|s| {
                let bytes = u128::from(s.last.0.saturating_sub(s.counted.0))
                    + u128::from(s.last.1.saturating_sub(s.counted.1));
                bytes * u128::from(price) / u128::from(MIB)
            })
            .sum();
        Some(Balance {
            balance_dc: acc.balance_dc,
            burned_dc: acc.burned_dc,
            pending_dc: u64::try_from(pending.min(u128::from(acc.balance_dc))).unwrap_or(0),
        })
    }
}

/// The bytes a link of `bps` carries in `duration_ms`.
fn capacity_bytes(bps: u64, duration_ms: u64) -> u128 {
    u128::from(bps) * u128::from(duration_ms) / 8_000
}

/// Scales `amounts` down pro rata (rounding down) so that they sum to at most `cap`; whether
/// they had to be.
fn cap_pro_rata(amounts: &mut [u128], cap: u128) -> bool {
    let total: u128 = amounts.iter().sum();
    if total <= cap {
        return false;
    }
    for a in amounts.iter_mut() {
        *a = *a * cap / total;
    }
    true
}

/// The usage part of an epoch's close (see the module documentation): `counted` is each
/// session's highest-seq receipt of the epoch, `rated_bps` a hotspot's verified backhaul this
/// epoch (the medians of its rated directions, down and up, from the epoch's facts), `earns`
/// whether a hotspot earns this epoch (`Err` with the reason otherwise). Returns the outcome
/// and the receipts' flags.
pub fn settle(
    counted: &[UsageFact],
    ledger: &Ledger,
    rated_bps: impl Fn(&NodeId) -> (Option<u64>, Option<u64>),
    earns: impl Fn(&NodeId) -> Result<(), Reason>,
    rules: &Rules,
    duration_ms: u64,
) -> (UsageOutcome, Vec<(ProofId, Reason)>) {
    let cfg = rules.config();
    let mut out = UsageOutcome::default();
    let mut flags: Vec<(ProofId, Reason)> = Vec::new();
    // Per hotspot: (receipt index, down, up) of the epoch's usage.
    let mut by_hotspot: BTreeMap<NodeId, Vec<(usize, u128, u128)>> = BTreeMap::new();
    for (i, f) in counted.iter().enumerate() {
        let before = ledger.session(&f.session).map_or((0, 0), |s| s.counted);
        out.counted.push((f.session, f.bytes_down, f.bytes_up));
        let down = u128::from(f.bytes_down.saturating_sub(before.0));
        let up = u128::from(f.bytes_up.saturating_sub(before.1));
        if let Err(reason) = earns(&f.hotspot) {
            if down + up > 0 {
                flags.push((f.id, reason));
            }
            continue;
        }
        by_hotspot.entry(f.hotspot).or_default().push((i, down, up));
    }
    // Per subscriber: (receipt index, hotspot, DC due).
    let mut dues: BTreeMap<SubscriberId, Vec<(usize, NodeId, u64)>> = BTreeMap::new();
    let mib = u128::from(MIB);
    for (hotspot, list) in by_hotspot {
        let (down_bps, up_bps) = rated_bps(&hotspot);
        let rated = |bps: Option<u64>| bps.unwrap_or(cfg.usage_default_backhaul_bps);
        let cap_down = capacity_bytes(rated(down_bps), duration_ms);
        let cap_up = capacity_bytes(rated(up_bps), duration_ms);
        let mut downs: Vec<u128> = list.iter().map(|x| x.1).collect();
        let mut ups: Vec<u128> = list.iter().map(|x| x.2).collect();
        let used: u128 = downs.iter().chain(&ups).sum();
        let over = cap_pro_rata(&mut downs, cap_down) | cap_pro_rata(&mut ups, cap_up);
        let paid: u128 = downs.iter().chain(&ups).sum();
        let entry = out.hotspots.entry(hotspot).or_default();
        entry.bytes = u64::try_from(used).unwrap_or(u64::MAX);
        entry.paid_bytes = u64::try_from(paid).unwrap_or(u64::MAX);
        for ((i, down, up), (pd, pu)) in list.iter().zip(downs.iter().zip(&ups)) {
            let f = &counted[*i];
            if over && (pd < down || pu < up) {
                flags.push((f.id, Reason::UsageExceedsBackhaul));
            }
            let due = (pd + pu) * u128::from(cfg.usage_dc_per_mib) / mib;
            dues.entry(f.subscriber).or_default().push((
                *i,
                hotspot,
                u64::try_from(due).unwrap_or(u64::MAX),
            ));
        }
    }
    for (sub, list) in dues {
        let balance = ledger.account(&sub).map_or(0, |a| a.balance_dc);
        let total: u128 = list.iter().map(|x| u128::from(x.2)).sum();
        let burns: Vec<u64> = if total <= u128::from(balance) {
            list.iter().map(|x| x.2).collect()
        } else {
            let keyed: Vec<(NodeId, u64)> = list.iter().map(|x| (x.1, x.2)).collect();
            crate::share::allocate(balance, &keyed)
        };
        let mut burned = 0u64;
        for ((i, hotspot, due), b) in list.iter().zip(burns) {
            if b < *due {
                flags.push((counted[*i].id, Reason::UsageCreditShort));
            }
            burned = burned.saturating_add(b);
            let h = out.hotspots.entry(*hotspot).or_default();
            h.burned_dc = h.burned_dc.saturating_add(b);
        }
        if burned > 0 {
            out.burns.insert(sub, burned);
        }
    }
    flags.sort_unstable();
    (out, flags)
}

/// What the usage pool may pay at most for `burned_dc` credits burned: their value times
/// `usage_payout_cap_bps` (see [`crate::rewards`]).
pub fn payout_cap(rules: &Rules, burned_dc: u128) -> u128 {
    let cfg = rules.config();
    burned_dc * u128::from(cfg.usage_reward_per_dc) * u128::from(cfg.usage_payout_cap_bps)
        / u128::from(BPS)
}
