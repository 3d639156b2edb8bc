//! Building a run: the world, the oracle and its rules, every identity onboarded at time
//! zero, the faults, the cheaters' groups, the remote sniffers, and the cores started.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rayon::prelude::*;
use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{Band, Onboard};

use super::{NodeRt, Sim, T0_MS, deci, oracle_key};
use crate::cheaters::Archetype;
use crate::engine::{EventLog, Queue};
use crate::faults::Faults;
use crate::oracle::Oracle;
use crate::scenario::Scenario;
use crate::stats::Stats;
use crate::world::World;

impl<'a> Sim<'a> {
    pub(super) fn build(
        sc: &'a Scenario,
        honest_only: bool,
        progress: bool,
        record: bool,
    ) -> Result<Sim<'a>> {
        let world = World::build(sc, honest_only)?;
        let (usage, owners) = if sc.usage.enabled() {
            let (u, o) = super::usage::plan(sc, &world, honest_only);
            (Some(u), o)
        } else {
            (None, BTreeMap::new())
        };
        // The run's carriers join the allow-list the scenario's rules give.
        let mut rules = sc.oracle.rules.clone();
        if let Some(u) = &usage {
            rules.usage_carriers.extend(u.carriers.allow_list());
        }
        let rules = rules.validate().context("oracle.rules: invalid rules")?;
        let oracle_key = oracle_key(sc.seed);
        let mut oracle = Oracle::new(
            oracle_key.clone(),
            rules,
            sc.oracle.verify_fraction,
            sc.oracle.ingest_batch,
        );
        if record {
            oracle.record();
        }
        // Onboarding: every identity signs an Onboard and publishes it at time zero.
        let onboards: Vec<Vec<u8>> = world
            .nodes
            .par_iter()
            .map(|n| {
                let p = &world.profiles[n.profile];
                let msg = Onboard {
                    owner: owners
                        .get(&n.idx)
                        .cloned()
                        .unwrap_or_else(|| format!("owner-{}", n.idx)),
                    cell: n.cell,
                    antenna_gain: deci(n.declared_gain_dbi),
                    antenna_height_dm: 100,
                    bands: vec![Band {
                        low_khz: p.band.0,
                        high_khz: p.band.1,
                        max_eirp: deci(p.band.2),
                    }],
                    measurer: true,
                    issued_ms: T0_MS,
                    attestation: None,
                };
                Envelope::sign(&n.key, &msg).to_bytes()
            })
            .collect();
        for (n, bytes) in world.nodes.iter().zip(&onboards) {
            oracle.name(n.id, n.idx);
            oracle.arrive(&n.id, bytes.clone(), T0_MS);
        }
        let refused: Vec<(u32, wisp_protocol::Reason)> = oracle
            .flush()
            .into_iter()
            .filter_map(|v| v.reason.map(|r| (v.node, r)))
            .collect();
        anyhow::ensure!(
            refused.is_empty(),
            "onboarding refused {} nodes (first: {:?})",
            refused.len(),
            refused.first()
        );
        if let Some(u) = &usage {
            u.grant(sc, &mut oracle, &oracle_key)?;
        }
        let mut stats = Stats::new(world.nodes.len());
        stats.signatures += onboards.len() as u64;
        let xs: Vec<f64> = world.nodes.iter().map(|n| n.phys.x).collect();
        let faults = Faults::new(&sc.faults, sc.seed, &xs);
        let mut groups: BTreeMap<(Archetype, u32), Vec<u32>> = BTreeMap::new();
        for n in &world.nodes {
            if matches!(
                n.role.archetype,
                Archetype::CollusionRing | Archetype::ColludingMeasurer
            ) {
                groups
                    .entry((n.role.archetype, n.role.group))
                    .or_default()
                    .push(n.idx);
            }
        }
        let mut sniffers_of: Vec<Vec<(u32, f32)>> = vec![Vec::new(); world.nodes.len()];
        for (j, list) in world.sniffed.iter().enumerate() {
            for (tx, mean) in list {
                sniffers_of[*tx as usize].push((u32::try_from(j).unwrap_or(u32::MAX), *mean));
            }
        }
        let dur_us = sc.epoch.duration_ms.max(1) * 1000;
        let epochs = sc.epochs();
        let mut sim = Sim {
            sc,
            q: Queue::new(),
            log: EventLog::new(),
            oracle,
            oracle_key,
            rt: Vec::new(),
            faults,
            seed_bytes: None,
            current: None,
            stats,
            groups,
            sniffers_of,
            pending: Vec::new(),
            free: Vec::new(),
            nonce: 0,
            epochs,
            dur_us,
            progress: None,
            usage,
            world,
        };
        sim.rt = (0..sim.world.nodes.len())
            .map(|_| NodeRt::default())
            .collect();
        for i in 0..sim.world.nodes.len() {
            let n = &sim.world.nodes[i];
            let has_core = n.role.helper_of.is_none()
                && !(n.role.archetype == Archetype::FakeHeartbeat && n.role.variant);
            sim.rt[i].has_core = has_core;
            sim.rt[i].powered = true;
            if has_core {
                sim.start_core(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        if progress {
            let pb = indicatif::ProgressBar::new(epochs);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} epoch {pos}/{len} {elapsed_precise} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            sim.progress = Some(pb);
        }
        Ok(sim)
    }
}
