//! Metrics exposition shared by every wisp service's `/metrics`.
//!
//! prometheus-client writes OpenMetrics; `promtool check metrics` and older scrapers read the
//! Prometheus text format 0.0.4, where a counter's family is named with its `_total` suffix and
//! there are no `# UNIT` or `# EOF` lines.

use std::collections::BTreeSet;

/// Converts OpenMetrics text to the Prometheus text format 0.0.4.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_suffix_and_openmetrics_lines_go() {
        let om = "# HELP x Things.\n# TYPE x counter\nx_total 3\n# HELP y_seconds Time.\n# TYPE y_seconds gauge\n# UNIT y_seconds seconds\ny_seconds 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n# HELP y_seconds Time.\n# TYPE y_seconds gauge\ny_seconds 1.5\n"
        );
    }
}
