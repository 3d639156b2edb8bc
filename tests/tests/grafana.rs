//! The Grafana dashboard (`deploy/grafana/wisp.json`) names only metrics that exist: a real
//! `wisp-oracle` (embedded broker, SQLite) and real `wisp-agent`s (simulated devices) are
//! started as a devnet on loopback, both `/metrics` are scraped, and every metric name in a
//! PromQL expression of the dashboard (panel targets and `label_values` variables) must be
//! exported.
//!
//! A name is exported when an exposition has a sample of it or a `# HELP`/`# TYPE` line for it,
//! or when it is a histogram family's `_bucket`, `_sum` or `_count` series. prometheus-client
//! (0.25) leaves a labelled family out of the exposition until it has a sample, and a young
//! honest devnet never has some (rejections, evictions, bandwidth tests). So the expositions
//! checked are the two live scrapes and, for those families, the daemons' own registries
//! (`wisp_agent::metrics::Metrics`, `wisp_oracle::metrics::Metrics`, encoded as `/metrics`
//! serves them) with one sample put in each labelled family. The test prints the names only
//! the second source showed.
//!
//! The binaries come from the same `cargo test --workspace` build (target/debug).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use wisp_agent::metrics as agent;
use wisp_devnet::devnet::{Devnet, Options};
use wisp_oracle::metrics as oracle;

/// PromQL words that are not metric names when they are not followed by `(`: aggregation
/// operators (`sum by (le) (…)`), set and comparison keywords, modifiers, literals.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords whose parenthesised list is of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The index just past the bracket that closes the one at `open` (`(`, `[` or `{`), skipping
/// quoted strings; the end of the text when it is not closed.
fn skip_group(s: &[char], open: usize) -> usize {
    let (o, c) = (s[open], matching(s[open]));
    let mut depth = 0;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => {
                i = skip_string(s, i);
                continue;
            }
            x if x == o => depth += 1,
            x if x == c => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    s.len()
}

fn matching(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// The index just past the string literal that starts at `start`.
fn skip_string(s: &[char], start: usize) -> usize {
    let quote = s[start];
    let mut i = start + 1;
    while i < s.len() {
        if s[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if s[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression reads, in order: identifiers that are not functions
/// (followed by `(`), keywords, label names (inside `{…}` or a `by (…)`-style list), durations
/// (inside `[…]`), numbers, strings or Grafana variables (`$agent`, `${agent}`,
/// `$__rate_interval`). Grafana's `label_values(metric, label)` reads its first argument only.
fn metric_names(expr: &str) -> Vec<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' || c == '[' {
            i = skip_group(&s, i);
        } else if c == '$' {
            i += 1;
            if s.get(i) == Some(&'{') {
                i = skip_group(&s, i);
            } else {
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (`1h`, `1.5e3`).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let mut next = i;
            while next < s.len() && s[next].is_whitespace() {
                next += 1;
            }
            let call = s.get(next) == Some(&'(');
            if call && LABEL_LISTS.contains(&word.as_str()) {
                i = skip_group(&s, next);
            } else if call && word == "label_values" {
                let end = skip_group(&s, next);
                let inner: String = s[next + 1..end.saturating_sub(1)].iter().collect();
                // One argument is a label name (of every series); two are a metric and a label.
                if let Some((metric, _label)) = inner.split_once(',') {
                    out.extend(metric_names(metric));
                }
                i = end;
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression of the dashboard, each with where it is: panel targets' `expr`
/// (nested rows included) and query variables' `definition`.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(e) = m.get("expr").and_then(Value::as_str) {
                    out.push((format!("panel {title:?}"), e.to_string()));
                }
                for x in m.values() {
                    walk(x, title, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], "", &mut out);
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let def = var["definition"].as_str().unwrap();
            out.push((format!("variable {}", var["name"]), def.to_string()));
        }
    }
    out
}

/// The metric names a Prometheus text exposition shows: sample names and the families of its
/// `# HELP` and `# TYPE` lines, with a histogram's or summary's series added.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# TYPE ")
            .or_else(|| line.strip_prefix("# HELP "))
        {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            names.insert(name.to_string());
            if line.starts_with("# TYPE ") && matches!(words.next(), Some("histogram" | "summary"))
            {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The dashboard's metric names missing from `exposed`, each with the places that name it.
fn missing(dashboard: &Value, exposed: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in dashboard_exprs(dashboard) {
        for name in metric_names(&expr) {
            if !exposed.contains(&name) {
                out.entry(name).or_default().push(place.clone());
            }
        }
    }
    out
}

/// The agent's and the oracle's expositions, as `/metrics` serves them, with one sample in each
/// labelled family (the label values are placeholders: only the names are checked).
fn populated_registries() -> String {
    let a = agent::Metrics::new("0.0.0");
    for f in [&a.proofs_signed, &a.outbox_evicted] {
        f.get_or_create(&agent::KindLabel { kind: "k" }).inc();
    }
    for f in [&a.proofs_rejected, &a.proofs_deferred] {
        f.get_or_create(&agent::ReasonLabel { reason: "r" }).inc();
    }
    for f in [
        &a.oracle_messages_refused,
        &a.radio_frames_ignored,
        &a.bw_requests,
        &a.bw_tests,
        &a.bw_invites,
    ] {
        f.get_or_create(&agent::WhyLabel { why: "w" }).inc();
    }
    for f in [&a.gossip_received, &a.gossip_published] {
        let label = agent::GossipLabel {
            topic: "t",
            outcome: "o",
        };
        f.get_or_create(&label).inc();
    }
    a.backhaul_rate
        .get_or_create(&agent::DirectionLabel { direction: "d" })
        .set(1.0);
    a.backhaul_rtt
        .get_or_create(&agent::RttLabel { rtt: "r" })
        .set(1.0);
    let o = oracle::Metrics::new();
    o.proofs
        .get_or_create(&oracle::VerdictLabel { verdict: "v" })
        .inc();
    for f in [&o.unverified, &o.broker_refused] {
        f.get_or_create(&oracle::ReasonLabel { reason: "r" }).inc();
    }
    format!("{}{}", a.encode_prometheus(), o.encode())
}

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/wisp.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn metric_names_are_the_identifiers_promql_reads_as_series() {
    fn check(expr: &str, expected: &[&str]) {
        assert_eq!(metric_names(expr), expected, "in {expr:?}");
    }
    check("wisp_p2p_peers", &["wisp_p2p_peers"]);
    check(
        r#"sum by (kind) (rate(wisp_proofs_signed_total{instance=~"$agent"}[$__rate_interval]))"#,
        &["wisp_proofs_signed_total"],
    );
    check(
        "histogram_quantile(0.99, sum by (le) (rate(wisp_oracle_batch_seconds_bucket[5m])))",
        &["wisp_oracle_batch_seconds_bucket"],
    );
    check(
        "sum(rate(a_sum[1h])) / sum(rate(a_count[1h])) > bool 0.5e3",
        &["a_sum", "a_count"],
    );
    check(
        r#"sum(rate(x_total{reason!~"a}b|c"}[5m])) without (instance) and on (job) group_left (version) y"#,
        &["x_total", "y"],
    );
    check(
        "time() - wisp_backhaul_last_test_timestamp_seconds * 8",
        &["wisp_backhaul_last_test_timestamp_seconds"],
    );
    check("max(abs(x offset 1h)) unless ${var} or $var", &["x"]);
    check(r#"label_replace(up, "dst", "$1", "src", "(.*)")"#, &["up"]);
    check(
        "label_values(wisp_build_info, instance)",
        &["wisp_build_info"],
    );
    check("label_values(instance)", &[]);
}

#[test]
fn a_name_the_scrapes_lack_is_reported_with_its_panel() {
    let scrape = "# HELP wisp_p2p_peers Connected libp2p peers.\n# TYPE wisp_p2p_peers gauge\n\
                  wisp_p2p_peers 3\n# HELP wisp_oracle_batch_seconds Time.\n\
                  # TYPE wisp_oracle_batch_seconds histogram\n\
                  # HELP wisp_proofs_rejected_total Rejected.\n# TYPE wisp_proofs_rejected_total counter\n";
    let dashboard = serde_json::json!({
        "panels": [{"title": "Row", "panels": [{"title": "Peers", "targets": [
            {"expr": "wisp_p2p_peers + wisp_p2p_peer"},
            {"expr": "rate(wisp_oracle_batch_seconds_count[5m]) + sum by (reason) (wisp_proofs_rejected_total)"},
        ]}]}],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "agent", "type": "query", "definition": "label_values(wisp_bogus_info, instance)"},
        ]},
    });
    let missing = missing(&dashboard, &exposed_names(scrape));
    assert_eq!(
        missing,
        BTreeMap::from([
            (
                "wisp_bogus_info".to_string(),
                vec!["variable \"agent\"".to_string()]
            ),
            (
                "wisp_p2p_peer".to_string(),
                vec!["panel \"Peers\"".to_string()]
            ),
        ])
    );
}

#[test]
fn every_metric_the_dashboard_names_is_exported_by_a_running_agent_or_oracle() {
    let dashboard = dashboard();
    // Every panel queries the dashboard's Prometheus variable, so the file imports anywhere.
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id {} twice",
            p["id"]
        );
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
        }
    }
    let exprs = dashboard_exprs(&dashboard);
    assert!(
        exprs.len() > 20,
        "the dashboard has {} expressions",
        exprs.len()
    );

    let bins = wisp_tests::bin_dir(&["wisp-agent", "wisp-oracle"]);
    let data = tempfile::tempdir().unwrap();
    // Two agents (a devnet's least), both onboarded and running when `start` returns.
    let net = Devnet::start(
        Options::new(2, 20, data.path().join("net"), bins),
        &mut |_| {},
    )
    .unwrap();
    let agent_addr: SocketAddr = std::fs::read_to_string(net.agents[0].data_dir.join("http.addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let scrape = |addr: SocketAddr| {
        // The daemons answer at once; a few tries cover a slow start on a loaded machine.
        let mut last = None;
        for _ in 0..50 {
            match wisp_shell::http_get::get(addr, "/metrics") {
                Ok(text) => return text,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("scraping {addr}/metrics: {last:?}");
    };
    // Until the agent is connected and has signed a proof, so that the live scrape shows the
    // daemon filling a labelled family (`wisp_proofs_signed_total{kind}`).
    let deadline = Instant::now() + Duration::from_secs(60);
    let agent_text = loop {
        let text = scrape(agent_addr);
        if text.contains("\nwisp_mqtt_connected 1\n")
            && text.contains("\nwisp_proofs_signed_total{")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "agent-0 did not connect and sign a proof within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let oracle_text = scrape(net.oracle_http);
    assert!(
        oracle_text.contains("# TYPE wisp_oracle_epoch gauge"),
        "{oracle_text}"
    );
    assert!(
        agent_text.contains("# TYPE wisp_build_info gauge"),
        "{agent_text}"
    );

    let mut live = exposed_names(&oracle_text);
    live.extend(exposed_names(&agent_text));
    let registered = exposed_names(&populated_registries());
    let named: BTreeSet<String> = dashboard_exprs(&dashboard)
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    let only_registered: Vec<&String> = named
        .iter()
        .filter(|n| !live.contains(*n) && registered.contains(*n))
        .collect();
    println!("named by the dashboard, no sample in the live scrapes yet: {only_registered:?}");
    let exposed: BTreeSet<String> = live.union(&registered).cloned().collect();
    let missing = missing(&dashboard, &exposed);
    assert!(
        missing.is_empty(),
        "deploy/grafana/wisp.json names metrics that neither the agent nor the oracle exports: \
         {missing:#?}\n--- oracle /metrics\n{oracle_text}\n--- agent /metrics\n{agent_text}"
    );
    drop(net);
}
