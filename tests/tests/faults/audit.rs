//! The audit of a run: the oracle's and the agents' databases read after everything stopped,
//! held to the module's targets (nothing lost, nothing double-counted, no honest proof refused,
//! the same rewards).

use super::*;

/// The closed epochs, from the oracle's API.
pub(super) fn closed_epochs(net: &Devnet) -> Result<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_str(&http_get(net.oracle_http, "/v1/epochs")?)?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["state"] == "closed")
        .filter_map(|e| e["epoch"].as_u64())
        .collect())
}

/// What the databases show after a run.
#[derive(Debug, Default)]
pub(super) struct Audit {
    /// The report, for people.
    pub(super) text: String,
    /// Rejections of proofs of the warm-up epochs, by reason.
    pub(super) warmup_rejections: BTreeMap<String, u64>,
    /// Rejected proofs of the epochs from the first fault on.
    pub(super) rejected: Vec<String>,
    /// Bandwidth tests that failed in an epoch in which their prover or measurer was killed:
    /// the receipt truthfully records a test the kill cut short (`test_failed`, nothing to
    /// pay; or `late_arrival` when the measurer's timeouts ran past the close). Listed, not
    /// counted as honest proofs rejected.
    pub(super) cut_short: Vec<String>,
    /// Proofs refused `late_arrival` because their node was cut off when their epoch closed
    /// (an epoch is paid once). Listed, not counted.
    pub(super) late: Vec<String>,
    /// Accepted proofs that count something already counted.
    pub(super) double: Vec<String>,
    /// Heartbeats signed and neither stored by the oracle nor waiting in the outbox.
    pub(super) lost: Vec<String>,
    /// Nodes not paid in a category in an epoch begun after the faults.
    pub(super) unpaid: Vec<String>,
    /// Closed epochs (from the first fault on) whose payout is not their emission.
    pub(super) emission: Vec<String>,
    /// Nodes the oracle penalized (caught cheating, so unpaid for many epochs).
    pub(super) penalized: Vec<String>,
    /// Closed epochs begun after the last fault.
    pub(super) epochs_after: usize,
}

impl Audit {
    pub(super) fn clean(&self) -> bool {
        self.rejected.is_empty()
            && self.double.is_empty()
            && self.lost.is_empty()
            && self.unpaid.is_empty()
            && self.emission.is_empty()
            && self.penalized.is_empty()
            && self.epochs_after >= EPOCHS_AFTER
    }

    /// One line with the counts.
    pub(super) fn counts(&self, name: &str, seed: u64) -> String {
        let by_reason = |list: &[String]| {
            let mut n: BTreeMap<&str, u64> = BTreeMap::new();
            for x in list {
                *n.entry(x.rsplit(": ").next().unwrap_or("")).or_default() += 1;
            }
            n.iter()
                .map(|(r, c)| format!("{r} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let warm: Vec<String> = self
            .warmup_rejections
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        format!(
            "{name} (seed {seed}): lost {}, double-counted {}, honest proofs rejected {} ({}); \
             honest nodes penalized {}; unpaid node-categories in the {} epochs after the faults {}; \
             epochs not paying their emission {}; bandwidth tests cut short by a kill or a cut {}; \
             proofs of epochs closed while their node was cut off {}; refused during the warm-up: {}",
            self.lost.len(),
            self.double.len(),
            self.rejected.len(),
            by_reason(&self.rejected),
            self.penalized.len(),
            self.epochs_after,
            self.unpaid.len(),
            self.emission.len(),
            self.cut_short.len(),
            self.late.len(),
            if warm.is_empty() {
                "none".into()
            } else {
                warm.join(", ")
            }
        )
    }
}

/// One stored proof.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) node: [u8; 32],
    pub(super) kind: Option<Kind>,
    pub(super) epoch: Option<u64>,
    pub(super) received_ms: u64,
    /// The ingest verdict's reason code, or the close's, if rejected.
    pub(super) rejected: Option<u16>,
    pub(super) envelope: Vec<u8>,
}

/// A peer id's key bytes, as the oracle stores them.
pub(super) fn node_id(peer_id: &str) -> Result<[u8; 32]> {
    Ok(peer_id
        .parse::<NodeId>()
        .with_context(|| format!("peer id {peer_id}"))?
        .0)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Whether stored proof `p`, refused with `code`, is the receipt of a bandwidth test cut short
/// by a kill or a cut: a test in an epoch during which its prover or its measurer was down
/// (killed and not yet started again) or cut off, refused `test_failed`, or a failure receipt
/// (no figure) refused `late_arrival` (its measurer waited out the test's timeouts, which may
/// end after the epoch's close). Either way it pays nothing, and it says the truth.
pub(super) fn cut_short_by_a_kill(
    run: &Run,
    p: &Stored,
    code: u16,
    index: &BTreeMap<[u8; 32], usize>,
) -> bool {
    let Ok(r) = wisp_protocol::envelope::open::<BandwidthReceipt>(&p.envelope) else {
        return false;
    };
    let failed = matches!(r.msg.outcome, Outcome::Failed(_));
    if !(code == Reason::TestFailed.code() || code == Reason::LateArrival.code() && failed) {
        return false;
    }
    let from = run.genesis_ms + r.msg.epoch * EPOCH_MS;
    let to = from + EPOCH_MS;
    [r.msg.prover, r.msg.measurer].iter().any(|n| {
        index
            .get(n.as_bytes())
            .is_some_and(|i| run.unreachable(*i, from, to))
    })
}

/// Whether stored proof `p` is of an epoch whose close was due while its node was down or cut
/// off (between the epoch's end and the end of its settle window).
pub(super) fn cut_off_at_close(run: &Run, p: &Stored, index: &BTreeMap<[u8; 32], usize>) -> bool {
    let (Some(epoch), Some(i)) = (p.epoch, index.get(&p.node)) else {
        return false;
    };
    let end = run.genesis_ms + (epoch + 1) * EPOCH_MS;
    run.unreachable(*i, end, end + SETTLE_MS)
}

/// Reads the (stopped) devnet's databases and checks them.
pub(super) fn audit(run: &Run) -> Result<Audit> {
    let net = &run.net;
    let mut a = Audit::default();
    let names: BTreeMap<[u8; 32], String> = net
        .agents
        .iter()
        .map(|x| Ok((node_id(&x.peer_id)?, x.name.clone())))
        .collect::<Result<_>>()?;
    let name = |n: &[u8; 32]| names.get(n).cloned().unwrap_or_else(|| "?".into());
    let fault_epoch = run.epoch_at(run.faults_from);
    let first_after = run.epoch_at(run.faults_to) + 1;
    let since = |t: u64| (t as f64 - run.faults_from as f64) / 1000.0;
    let index: BTreeMap<[u8; 32], usize> = net
        .agents
        .iter()
        .enumerate()
        .map(|(i, x)| Ok((node_id(&x.peer_id)?, i)))
        .collect::<Result<_>>()?;

    let db = Connection::open(net.oracle_db())?;
    let mut st = db.prepare(
        "SELECT p.node, p.kind, p.epoch, p.received_ms, p.verdict, c.reason, p.envelope
         FROM proofs p LEFT JOIN close_rejections c ON c.id = p.id ORDER BY p.seq",
    )?;
    let proofs: Vec<Stored> = st
        .query_map([], |r| {
            let node: Vec<u8> = r.get(0)?;
            let verdict: i64 = r.get(4)?;
            let close: Option<i64> = r.get(5)?;
            Ok(Stored {
                node: node.try_into().unwrap_or([0; 32]),
                kind: u8::try_from(r.get::<_, i64>(1)?)
                    .ok()
                    .and_then(Kind::from_u8),
                epoch: r.get::<_, Option<i64>>(2)?.map(to_u64),
                received_ms: to_u64(r.get(3)?),
                rejected: if verdict != 0 {
                    Some(u16::try_from(verdict).unwrap_or(u16::MAX))
                } else {
                    close.map(|c| u16::try_from(c).unwrap_or(u16::MAX))
                },
                envelope: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    drop(st);

    // No honest proof rejected.
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in &proofs {
        let kind = p.kind.map_or("?", Kind::name);
        *by_kind
            .entry((name(&p.node), kind.to_string()))
            .or_default() += 1;
        let Some(code) = p.rejected else {
            continue;
        };
        let reason = Reason::from_code(code).name();
        let after = p.received_ms >= run.faults_from || p.epoch.is_some_and(|e| e >= fault_epoch);
        if after && cut_short_by_a_kill(run, p, code, &index) {
            a.cut_short.push(format!(
                "{} {kind} of epoch {:?}: {reason} (its prover or measurer was killed or cut off in that epoch)",
                name(&p.node),
                p.epoch
            ));
        } else if after && code == Reason::LateArrival.code() && cut_off_at_close(run, p, &index) {
            a.late.push(format!(
                "{} {kind} of epoch {:?}, received {:+.1} s after the first fault: {reason} (cut off when its epoch closed)",
                name(&p.node),
                p.epoch,
                since(p.received_ms)
            ));
        } else if after {
            a.rejected.push(format!(
                "{} {kind} of epoch {:?}, received {:+.1} s after the first fault: {reason}",
                name(&p.node),
                p.epoch,
                since(p.received_ms)
            ));
        } else {
            *a.warmup_rejections.entry(reason.to_string()).or_default() += 1;
        }
    }

    // Nothing double-counted.
    let mut heartbeats: BTreeMap<([u8; 32], u64), u32> = BTreeMap::new();
    let mut beacons: BTreeMap<([u8; 32], u64), u32> = BTreeMap::new();
    let mut witnesses: BTreeMap<([u8; 32], Vec<u8>), u32> = BTreeMap::new();
    let mut receipts: BTreeMap<(u64, [u8; 32], [u8; 32], String), u32> = BTreeMap::new();
    let mut stored_seqs: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
    // Per epoch, prover and direction: each measurer's figure, Mbit/s, or why it failed.
    let mut measured: BTreeMap<(u64, String, String), Vec<String>> = BTreeMap::new();
    for p in &proofs {
        let Ok(env) = EnvelopeRef::parse(&p.envelope) else {
            continue;
        };
        match p.kind {
            Some(Kind::Heartbeat) => {
                if let Ok(h) = env.decode::<Heartbeat>() {
                    stored_seqs.entry(p.node).or_default().push(h.msg.seq);
                    if p.rejected.is_none() {
                        *heartbeats.entry((p.node, h.msg.seq)).or_default() += 1;
                    }
                }
            }
            Some(Kind::Beacon) if p.rejected.is_none() => {
                if let Ok(b) = env.decode::<Beacon>() {
                    *beacons.entry((p.node, b.msg.epoch)).or_default() += 1;
                }
            }
            Some(Kind::Witness) if p.rejected.is_none() => {
                if let Ok(w) = env.decode::<Witness>() {
                    *witnesses.entry((p.node, w.msg.beacon)).or_default() += 1;
                }
            }
            Some(Kind::BandwidthReceipt) => {
                let Ok(r) = env.decode::<BandwidthReceipt>() else {
                    continue;
                };
                let figure = match r.msg.outcome {
                    Outcome::Measured(m) => format!("{:.0}", m.median_bps as f64 / 1e6),
                    Outcome::Failed(f) => format!("{f:?}"),
                };
                let verdict = p.rejected.map_or(String::new(), |c| {
                    format!(" ({})", Reason::from_code(c).name())
                });
                measured
                    .entry((
                        r.msg.epoch,
                        name(&r.msg.prover.0),
                        format!("{:?}", r.msg.direction),
                    ))
                    .or_default()
                    .push(format!("{} {figure}{verdict}", name(&r.msg.measurer.0)));
                if p.rejected.is_none() {
                    let key = (
                        r.msg.epoch,
                        r.msg.prover.0,
                        r.msg.measurer.0,
                        format!("{:?}", r.msg.direction),
                    );
                    *receipts.entry(key).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    for ((n, seq), c) in &heartbeats {
        if *c > 1 {
            a.double
                .push(format!("{}: heartbeat {seq} accepted {c} times", name(n)));
        }
    }
    for ((n, e), c) in &beacons {
        if *c > 1 {
            a.double
                .push(format!("{}: {c} beacons accepted in epoch {e}", name(n)));
        }
    }
    for ((n, _), c) in &witnesses {
        if *c > 1 {
            a.double
                .push(format!("{}: one beacon witnessed {c} times", name(n)));
        }
    }
    for ((e, p, m, d), c) in &receipts {
        if *c > 1 {
            a.double.push(format!(
                "epoch {e}: {c} receipts of {} measured by {} ({d})",
                name(p),
                name(m)
            ));
        }
    }

    // Nothing lost: every heartbeat signed is stored, or still waiting in the outbox.
    let mut signed_text = String::new();
    for (i, agent) in net.agents.iter().enumerate() {
        let id = node_id(&agent.peer_id)?;
        let adb = wisp_agent::store::Store::open(&net.agent_db(i)?)?;
        let last = adb.meta("heartbeat_seq")?;
        let mut pending = Vec::new();
        let mut waiting = 0usize;
        for (_, env) in adb.load()? {
            waiting += 1;
            if let Ok(e) = EnvelopeRef::parse(&env)
                && let Ok(h) = e.decode::<Heartbeat>()
            {
                pending.push(h.msg.seq);
            }
        }
        let stored = stored_seqs.get(&id).cloned().unwrap_or_default();
        let missing: Vec<u64> = (1..=last)
            .filter(|s| !stored.contains(s) && !pending.contains(s))
            .collect();
        let _ = writeln!(
            signed_text,
            "  {}: heartbeats 1..={last} signed, {} stored, {} waiting in the outbox at the stop ({waiting} proofs in all), missing {missing:?}",
            agent.name,
            stored.len(),
            pending.len()
        );
        for s in missing {
            a.lost.push(format!("{}: heartbeat {s}", agent.name));
        }
    }

    // The same rewards.
    let mut st = db.prepare("SELECT epoch, closed_ms, emission FROM epochs ORDER BY epoch")?;
    let epochs: Vec<(u64, Option<u64>, u64)> = st
        .query_map([], |r| {
            Ok((
                to_u64(r.get(0)?),
                r.get::<_, Option<i64>>(1)?.map(to_u64),
                to_u64(r.get(2)?),
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    drop(st);
    let mut st = db.prepare(
        "SELECT node, amount, coverage, backhaul, uptime FROM rewards WHERE epoch = ?1 ORDER BY node",
    )?;
    let mut rewards_text = String::new();
    for (epoch, closed, emission) in &epochs {
        let Some(closed) = closed else {
            continue;
        };
        let rows: Vec<([u8; 32], u64, u64, u64, u64)> = st
            .query_map([i64::try_from(*epoch)?], |r| {
                let node: Vec<u8> = r.get(0)?;
                Ok((
                    node.try_into().unwrap_or([0; 32]),
                    to_u64(r.get(1)?),
                    to_u64(r.get(2)?),
                    to_u64(r.get(3)?),
                    to_u64(r.get(4)?),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let paid: u64 = rows.iter().map(|r| r.1).sum();
        let phase = if *epoch < fault_epoch {
            "warm-up"
        } else if *epoch < first_after {
            "faults"
        } else {
            "after"
        };
        let _ = writeln!(
            rewards_text,
            "  epoch {epoch:>3} ({phase:<7}) closed {:+6.1} s, paid {paid} of {emission}: {}",
            since(*closed),
            rows.iter()
                .map(|(n, amount, c, b, u)| format!("{} {amount} (c {c}, b {b}, u {u})", name(n)))
                .collect::<Vec<_>>()
                .join("; ")
        );
        if *epoch >= fault_epoch && paid != *emission {
            a.emission.push(format!(
                "epoch {epoch} paid {paid} of its emission {emission}"
            ));
        }
        if *epoch >= first_after {
            a.epochs_after += 1;
            for agent in &net.agents {
                let row = rows.iter().find(|r| name(&r.0) == agent.name);
                for (cat, v) in [
                    ("coverage", row.map_or(0, |r| r.2)),
                    ("backhaul", row.map_or(0, |r| r.3)),
                    ("uptime", row.map_or(0, |r| r.4)),
                ] {
                    if v == 0 {
                        a.unpaid.push(format!(
                            "{} not paid for {cat} in epoch {epoch}",
                            agent.name
                        ));
                    }
                }
            }
        }
    }
    drop(st);

    // Penalties: every node is honest, so none may be caught.
    let reported = run
        .nodes
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n.get("penalized_through").is_some());
    if !reported {
        a.penalized.push(
            "the oracle's /v1/nodes reports no `penalized_through`: penalties unknown".into(),
        );
    }
    for n in run.nodes.as_array().into_iter().flatten() {
        let Some(through) = n["penalized_through"].as_u64() else {
            continue;
        };
        let who = n["peer_id"]
            .as_str()
            .and_then(|p| node_id(p).ok())
            .map_or_else(|| "?".into(), |id| name(&id));
        let marks: Vec<String> = n["marks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} in epoch {}",
                    m["reason"].as_str().unwrap_or("?"),
                    m["epoch"]
                )
            })
            .collect();
        a.penalized.push(format!(
            "{who} penalized through epoch {through} (marks: {})",
            if marks.is_empty() {
                "none".into()
            } else {
                marks.join(", ")
            }
        ));
    }

    let mut t = String::new();
    let _ = writeln!(
        t,
        "faults from {} ms to {} ms (Unix): epochs {fault_epoch}..{}; epochs after the faults from {first_after}",
        run.faults_from,
        run.faults_to,
        first_after.saturating_sub(1)
    );
    let _ = writeln!(t, "proofs stored, by node and kind:");
    for ((n, k), c) in &by_kind {
        let _ = writeln!(t, "  {n} {k}: {c}");
    }
    let _ = writeln!(t, "heartbeats:\n{signed_text}rewards:\n{rewards_text}");
    let _ = writeln!(t, "bandwidth receipts (Mbit/s by measurer):");
    for ((e, prover, dir), list) in &measured {
        let _ = writeln!(t, "  epoch {e:>3} {prover} {dir:<4}: {}", list.join(", "));
    }
    let _ = writeln!(t, "refused during the warm-up: {:?}", a.warmup_rejections);
    for (title, list) in [
        ("honest proofs rejected", &a.rejected),
        ("double-counted", &a.double),
        ("lost", &a.lost),
        ("unpaid after the faults", &a.unpaid),
        ("payout is not the emission", &a.emission),
        ("honest nodes penalized", &a.penalized),
        (
            "bandwidth tests cut short by a kill or a cut (recorded test_failed, or their failure receipt late_arrival; not counted)",
            &a.cut_short,
        ),
        (
            "proofs of epochs closed while their node was cut off (late_arrival, not counted)",
            &a.late,
        ),
    ] {
        let _ = writeln!(t, "{title}: {}", list.len());
        for x in list {
            let _ = writeln!(t, "  {x}");
        }
    }
    a.text = t;
    Ok(a)
}
