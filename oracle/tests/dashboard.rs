//! The dashboard (`GET /`): rendered on the server from the same store and snapshot as the JSON
//! API, so the HTML as served holds the status, nodes, rewards, epochs and the map; every string
//! from the outside is escaped. The router runs on an ephemeral port and is asked over plain
//! HTTP/1.1, as a browser with JavaScript off would.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;
mod seeded;

use common::{EPOCH, START};
use seeded::{
    EMISSION, HOSTILE, OPEN_EPOCH, UNPAID_EMISSION, UNPAID_EPOCH, block_on, get, network, serve,
    shared,
};
use wisp_oracle::http::dashboard::{MapFrame, amount, escape, short_id, utc};
use wisp_oracle::state::Snapshot;
use wisp_oracle::store::Store;
use wisp_protocol::Reason;

/// Every coordinate in the map is a finite number.
fn numbers_are_finite(html: &str) {
    assert!(!html.contains("NaN"));
    let start = html.find("<svg").unwrap();
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let mut seen = 0;
    for name in [
        "x", "y", "cx", "cy", "x1", "y1", "x2", "y2", "width", "height", "d",
    ] {
        for (at, _) in svg.match_indices(&format!(" {name}=\"")) {
            let value = &svg[at + name.len() + 3..];
            let value = &value[..value.find('"').unwrap()];
            seen += 1;
            if name == "d" {
                for n in value.split(|c: char| c.is_ascii_alphabetic() || c == ',' || c == ' ') {
                    assert!(
                        n.is_empty() || n.parse::<f64>().unwrap().is_finite(),
                        "{value}"
                    );
                }
            } else {
                assert!(value.parse::<f64>().unwrap().is_finite(), "{name}={value}");
            }
        }
    }
    assert!(seen > 0);
}

/// The `<tr id="…">` row of the page.
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<tr id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no row {id}"));
    let len = html[start..].find("</tr>").unwrap();
    &html[start..start + len]
}

/// The class of the map's dot whose tooltip names `peer_id`.
fn dot_class<'a>(html: &'a str, peer_id: &str) -> &'a str {
    let title = html
        .find(&format!("<title>{peer_id} — "))
        .unwrap_or_else(|| panic!("no dot for {peer_id}"));
    let circle = html[..title].rfind("<circle class=\"").unwrap() + "<circle class=\"".len();
    let len = html[circle..].find('"').unwrap();
    &html[circle..circle + len]
}

#[test]
fn the_page_as_served_holds_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let (fx, shared) = network(dir.path());
    let server = serve(shared);
    let (code, html) = get(&server, "/");
    assert_eq!(code, 200, "{html}");
    let ids: Vec<String> = fx.ids.iter().map(ToString::to_string).collect();

    // Status.
    assert!(html.contains("oracle-under-test"), "{html}");
    assert!(html.contains("4 hotspots"));
    assert!(html.contains("broker connected"));

    // The map: every node a labelled dot coloured by its state, the two witness links, a scale
    // bar in round metres, north up, and nothing that is not a number.
    assert!(html.contains("<svg id=\"map\""));
    for id in &ids {
        assert!(html.contains(&format!(">{}</text>", short_id(id))), "{id}");
    }
    assert_eq!(dot_class(&html, &ids[0]), "paid");
    assert_eq!(dot_class(&html, &ids[1]), "untrusted");
    assert_eq!(dot_class(&html, &ids[2]), "unpaid");
    assert_eq!(dot_class(&html, &ids[3]), "penalized");
    assert_eq!(html.matches("<line ").count(), 2);
    assert!(html.contains(&format!("witness links of epoch {EPOCH}: 2")));
    // 750 m of nodes across 640 px: 1.17 m/px, a bar of at most 180 px is 200 m.
    assert!(html.contains(">200 m</text>"), "{html}");
    assert!(html.contains(">N</text>"));
    numbers_are_finite(&html);

    // Nodes: measured backhaul in Mbit/s, the last epoch's pay.
    assert!(html.contains(">52.3<") && html.contains(">10.4<") && html.contains(">8.0<"));
    assert!(html.contains(&utc(START)));
    assert!(html.contains(&format!("{} ({EPOCH})", Reason::WrongEpoch.name())));

    // Rewards of the last closed epoch, per node and per category (usage in its own column),
    // with the totals.
    assert!(html.contains(&format!("Rewards of epoch {EPOCH}")));
    for figure in [
        750_000_000,
        400_000_000,
        250_000_000,
        100_000_000,
        550_000_000,
        280_000_000,
        20_000_000,
        EMISSION,
    ] {
        assert!(html.contains(&format!(">{}<", amount(figure))), "{figure}");
    }

    // Epochs: the one that paid nobody shows no emission, and says why; the paid one does.
    let unpaid = row(&html, &format!("epoch-{UNPAID_EPOCH}"));
    assert!(
        unpaid.contains(">—<") && unpaid.contains("nothing paid"),
        "{unpaid}"
    );
    assert!(!unpaid.contains(&format!(">{}<", amount(UNPAID_EMISSION))));
    let paid = row(&html, &format!("epoch-{EPOCH}"));
    assert!(paid.contains(&format!(">{}<", amount(EMISSION))), "{paid}");
    assert!(paid.contains(">2<"), "two nodes paid: {paid}");
    let open = row(&html, &format!("epoch-{OPEN_EPOCH}"));
    assert!(open.contains(">open<") && !open.contains("<a "), "{open}");

    // The hostile owner is text, never markup.
    assert!(!html.contains(HOSTILE));
    assert!(!html.contains("<script>alert"));
    assert!(html.contains(&escape(HOSTILE)));
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));

    // The JSON API reads the same data and is unchanged.
    let (code, links) = get(&server, "/v1/witness-links");
    assert_eq!(code, 200);
    assert_eq!(links.matches("\"beaconer\"").count(), 2, "{links}");
    let (_, epochs) = get(&server, "/v1/epochs");
    assert!(
        epochs.contains(&format!("\"emission\":{UNPAID_EMISSION}")),
        "{epochs}"
    );
}

#[test]
fn an_empty_oracle_serves_a_whole_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = block_on(Store::open_sqlite(&dir.path().join("oracle.db"))).unwrap();
    let server = serve(shared(store, Snapshot::default()));
    let (code, html) = get(&server, "/");
    assert_eq!(code, 200);
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("no hotspots onboarded yet"));
    assert!(html.contains("no closed epoch yet"));
    numbers_are_finite(&html);
    assert!(
        !html.contains("wisp:live"),
        "the template's marker is replaced"
    );
}

#[test]
fn escape_makes_text_of_markup() {
    let check = |input: &str, want: &str| assert_eq!(escape(input), want, "{input}");
    check("", "");
    check("plain 12D3KooW é", "plain 12D3KooW é");
    check("<b>", "&lt;b&gt;");
    check("a & b", "a &amp; b");
    check("\"'", "&quot;&#39;");
    check("&amp;", "&amp;amp;");
    check(
        HOSTILE,
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;",
    );
}

#[test]
fn figures_read_well() {
    assert_eq!(amount(0), "0");
    assert_eq!(amount(999), "999");
    assert_eq!(amount(1_000), "1\u{202f}000");
    assert_eq!(amount(1_000_000_000), "1\u{202f}000\u{202f}000\u{202f}000");
    assert_eq!(utc(START), "2027-01-15 08:00:00");
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    assert_eq!(
        short_id("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"),
        "yKSUKPH5"
    );
    assert_eq!(short_id("abc"), "abc");
}

/// Metres per degree of latitude, as the projection uses.
const M_PER_DEG: f64 = 111_195.0;

fn finite(frame: &MapFrame, lat: f64, lon: f64) -> (f64, f64) {
    let (x, y) = frame.project(lat, lon);
    assert!(x.is_finite() && y.is_finite(), "{frame:?}");
    (x, y)
}

#[test]
fn the_projection_fits_zero_one_or_many_nodes() {
    let (w, h, margin) = (720.0, 420.0, 40.0);
    let inside = |(x, y): (f64, f64)| {
        (margin - 0.01..=w - margin + 0.01).contains(&x)
            && (margin - 0.01..=h - margin + 0.01).contains(&y)
    };

    // No node: a finite frame and a scale bar all the same.
    let none = MapFrame::fit([], w, h, margin);
    assert!(none.metres_per_px() > 0.0 && none.metres_per_px().is_finite());
    finite(&none, 0.0, 0.0);
    let (m, px, label) = none.scale_bar(180.0);
    assert!(m > 0.0 && px > 0.0 && px <= 180.0, "{m} {px}");
    assert!(label.ends_with(" m") || label.ends_with(" km"), "{label}");

    // One node: at the centre, in a 200 m neighbourhood.
    let one = MapFrame::fit([(48.853, 2.3499)], w, h, margin);
    assert_eq!(finite(&one, 48.853, 2.3499), (w / 2.0, h / 2.0));
    assert!((one.metres_per_px() - 200.0 / 340.0).abs() < 1e-9);
    // Two at the same spot are one.
    assert_eq!(
        MapFrame::fit([(48.853, 2.3499), (48.853, 2.3499)], w, h, margin),
        one
    );

    // Two nodes 1 km apart north–south: north up, inside the margin, at the right distance.
    let (south, north) = ((48.853, 2.35), (48.853 + 1000.0 / M_PER_DEG, 2.35));
    let ns = MapFrame::fit([south, north], w, h, margin);
    let (ps, pn) = (finite(&ns, south.0, south.1), finite(&ns, north.0, north.1));
    assert!(inside(ps) && inside(pn), "{ps:?} {pn:?}");
    assert!(pn.1 < ps.1, "north is up");
    assert!((pn.0 - ps.0).abs() < 1e-9);
    assert!(((ps.1 - pn.1) * ns.metres_per_px() - 1000.0).abs() < 1e-6);
    assert!(
        (ps.1 - pn.1 - (h - 2.0 * margin)).abs() < 1e-6,
        "fills the height"
    );

    // Two nodes 10 km apart west–east at 60° N: a degree of longitude is half as long there.
    let lon_deg = 10_000.0 / (M_PER_DEG * 0.5);
    let (west, east) = ((60.0, 10.0), (60.0, 10.0 + lon_deg));
    let we = MapFrame::fit([west, east], w, h, margin);
    let (pw, pe) = (finite(&we, west.0, west.1), finite(&we, east.0, east.1));
    assert!(inside(pw) && inside(pe), "{pw:?} {pe:?}");
    assert!(pe.0 > pw.0, "east is right");
    assert!(((pe.0 - pw.0) * we.metres_per_px() - 10_000.0).abs() < 1e-3);
    // 10 km across 640 px is 15.6 m/px: 180 px is 2.8 km, the bar 2 km.
    let (m, px, label) = we.scale_bar(180.0);
    assert_eq!((m, label.as_str()), (2000.0, "2 km"));
    assert!((px - 2000.0 / we.metres_per_px()).abs() < 1e-9);
    // And back.
    let (lat, lon) = we.unproject(pe.0, pe.1);
    assert!((lat - east.0).abs() < 1e-9 && (lon - east.1).abs() < 1e-9);

    // Coordinates that are not numbers are left out rather than poisoning the frame.
    assert_eq!(
        MapFrame::fit(
            [(48.853, 2.3499), (f64::NAN, 1.0), (1.0, f64::INFINITY)],
            w,
            h,
            margin
        ),
        one
    );
}

/// Runs `cmd`, killing it after `limit`: a browser that hangs must fail the test, not stall it.
fn run_for(mut cmd: std::process::Command, limit: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Read both pipes on threads so a chatty browser cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).map(|_| v)
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// Headless Chromium with a fresh profile and nothing of its own on the network, then `args`.
fn chromium(bin: &str, profile: &std::path::Path, args: &[String]) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    let out = run_for(cmd, std::time::Duration::from_secs(90));
    assert!(
        out.status.success(),
        "chromium {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The URLs Chromium's network log (`--log-net-log`) shows requested on behalf of pages of
/// `site` (scheme and host).
fn page_requests(netlog: &std::path::Path, site: &str) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).unwrap();
    let log: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not a complete network log: {e}", netlog.display()));
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    assert!(
        start_job.is_u64(),
        "no URL_REQUEST_START_JOB in the log's constants"
    );
    let key = format!("{site} {site}");
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| &e["type"] == start_job)
        .filter(|e| e["params"]["network_isolation_key"] == key.as_str())
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .collect();
    urls.sort_unstable();
    urls.dedup();
    urls
}

/// The dashboard in a real browser: scripts run, the seeded nodes are in the DOM, nothing is
/// loaded from elsewhere (Chromium's network log), and a screenshot is kept to look at.
#[test]
#[ignore = "needs Chromium: WISP_TEST_CHROMIUM=/usr/bin/chromium (.ci/run sets it)"]
fn chromium_renders_the_dashboard() {
    let bin = std::env::var("WISP_TEST_CHROMIUM").unwrap_or_else(|_| {
        panic!(
            "set WISP_TEST_CHROMIUM to a Chromium binary (e.g. /usr/bin/chromium) to run this test"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let (fx, shared) = network(dir.path());
    let server = serve(shared);
    let origin = format!("http://{}", server.addr);
    let url = format!("{origin}/");

    // The DOM after the page's scripts ran: the refresh note only a script writes.
    let netlog = dir.path().join("netlog.json");
    let out = chromium(
        &bin,
        &dir.path().join("profile-dom"),
        &[
            format!("--log-net-log={}", netlog.display()),
            "--dump-dom".into(),
            url.clone(),
        ],
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    assert!(dom.contains("oracle-under-test"), "{dom}");
    assert!(
        dom.contains("Updates every 10 s"),
        "the page's script did not run: {dom}"
    );
    for id in &fx.ids {
        let id = id.to_string();
        assert!(dom.contains(&id), "node {id} is not in the rendered page");
        assert!(
            dom.contains(&format!(">{}</text>", short_id(&id))),
            "{id} on the map"
        );
    }
    assert!(dom.contains(&format!("Rewards of epoch {EPOCH}")));
    // The hostile owner is a text node (the DOM serializer escapes only `&`, `<` and `>` there).
    assert!(dom.contains("&lt;script&gt;alert(\"x\")&lt;/script&gt;&amp;'"));
    assert!(!dom.contains("<script>alert"));

    // Every request made for the page (its network isolation key is the page's site; Chromium's
    // own traffic, such as its update checks, has another) went to the oracle.
    let requests = page_requests(&netlog, &format!("http://{}", server.addr.ip()));
    assert!(
        requests.contains(&url),
        "the page itself is in the log: {requests:?}"
    );
    let elsewhere: Vec<_> = requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{origin}/")))
        .collect();
    assert!(elsewhere.is_empty(), "the dashboard loaded {elsewhere:?}");

    // A screenshot to look at, kept with the test's output.
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wisp-dashboard.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &bin,
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".into(),
            "--hide-scrollbars".into(),
            url,
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{png:?}"
    );
    println!("dashboard screenshot: {}", png.display());
}
