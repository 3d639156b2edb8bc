//! SVG plots of a report (plotters, SVG backend only): rewards per archetype against honest
//! nodes and against their own fair reward, cheaters' share of each epoch's emission, and
//! recall per archetype.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::report::Report;

fn bars(path: &Path, title: &str, y_label: &str, items: &[(String, f64)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).context("drawing")?;
    let max = items
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.15;
    let n = items.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(110)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max)
        .context("chart")?;
    let labels: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let k = i as usize;
                labels.get(k).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()
        .context("mesh")?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (l, v))| {
            let x = i as f64;
            let colour = if l == "honest" {
                BLUE.mix(0.7)
            } else {
                RED.mix(0.6)
            };
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], colour.filled())
        }))
        .context("bars")?;
    root.present().context("writing SVG")?;
    Ok(())
}

/// Writes `rewards.svg`, `cheater_share.svg`, `recall.svg` and (with a baseline)
/// `vs_fair.svg` into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let rows: Vec<_> = report.archetypes.iter().filter(|r| r.nodes > 0).collect();
    let rewards: Vec<(String, f64)> = rows
        .iter()
        .map(|r| (r.archetype.to_string(), r.vs_honest))
        .collect();
    let p1 = dir.join("rewards.svg");
    bars(
        &p1,
        "Mean reward per identity, relative to honest nodes",
        "× honest mean",
        &rewards,
    )?;
    let recall: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.archetype != "honest")
        .map(|r| (r.archetype.to_string(), r.recall * 100.0))
        .collect();
    let p2 = dir.join("recall.svg");
    bars(
        &p2,
        "Cheaters flagged by the rules (recall)",
        "% of identities",
        &recall,
    )?;
    let p3 = dir.join("cheater_share.svg");
    {
        let root = SVGBackend::new(&p3, (900, 480)).into_drawing_area();
        root.fill(&WHITE).context("drawing")?;
        let pts: Vec<(f64, f64)> = report
            .per_epoch
            .iter()
            .map(|e| {
                let cheat: u128 = e.by_archetype.iter().skip(1).sum();
                let share = if e.emission == 0 {
                    0.0
                } else {
                    cheat as f64 / e.emission as f64 * 100.0
                };
                (e.epoch as f64, share)
            })
            .collect();
        let xmax = pts.last().map_or(1.0, |p| p.0.max(1.0));
        let ymax = pts.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Cheaters' share of each epoch's emission",
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .context("chart")?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("% of emission")
            .draw()
            .context("mesh")?;
        chart
            .draw_series(LineSeries::new(pts, RED.stroke_width(2)))
            .context("line")?;
        root.present().context("writing SVG")?;
    }
    let mut files = vec![p1, p2, p3];
    let vs_fair: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.archetype.to_string(), r.vs_fair?)))
        .collect();
    if !vs_fair.is_empty() {
        let p4 = dir.join("vs_fair.svg");
        bars(
            &p4,
            "Reward per archetype ÷ its fair reward (target for cheaters: ≤ 0.5)",
            "× fair",
            &vs_fair,
        )?;
        files.push(p4);
    }
    Ok(files)
}
