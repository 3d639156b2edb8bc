//! The dashboard (`GET /`): rendered on the server from the same store and snapshot as the JSON
//! API, so the HTML as served holds the status, nodes, rewards, epochs and the map; every string
//! from the outside is escaped. The router runs on an ephemeral port and is asked over plain
//! HTTP/1.1, as a browser with JavaScript off would.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use common::{EPOCH, Fixture, START};
use wisp_oracle::RulesConfig;
use wisp_oracle::engine::Row;
use wisp_oracle::http::dashboard::{MapFrame, amount, escape, short_id, utc};
use wisp_oracle::metrics::Metrics;
use wisp_oracle::state::{MarkView, NodeView, Shared, Snapshot};
use wisp_oracle::store::Store;
use wisp_protocol::msg::{EpochParams, RewardEntry, Verdict};
use wisp_protocol::{Kind, ProofId, Reason};
use wisp_shell::broker_health::BrokerHealth;

/// An owner string written to attack the page.
const HOSTILE: &str = "<script>alert(\"x\")</script>&'";
/// The emission of the epoch that paid nobody: it must not appear in its row.
const UNPAID_EMISSION: u64 = 777_000_000;
const UNPAID_EPOCH: u64 = EPOCH - 2;
const OPEN_EPOCH: u64 = EPOCH + 1;
const EMISSION: u64 = 1_000_000_000;

/// The router on an ephemeral port, on a runtime of its own.
struct Server {
    _rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn serve(shared: Arc<Shared>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, wisp_oracle::http::router(shared)).await });
    Server { _rt: rt, addr }
}

/// Runs `f` on a runtime of its own (the store's calls are async; these tests are not).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `GET path`: the status code and the body.
fn get(server: &Server, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

fn shared(store: Store, snap: Snapshot) -> Arc<Shared> {
    Arc::new(Shared {
        snapshot: RwLock::new(snap),
        reader: store,
        metrics: Metrics::new(),
        connected: AtomicBool::new(true),
        broker: Mutex::new(BrokerHealth::new("mqtt://127.0.0.1:1883", 60_000)),
        retained: Mutex::new(std::collections::HashMap::new()),
    })
}

/// Four nodes 250 m apart on a west–east line. Node 0 is paid in the last closed epoch, node 1
/// too but its location is not trusted, node 2 (with a hostile owner) is not paid, node 3 serves
/// a penalty. Nodes 1 and 2 witnessed node 0's beacon. Epoch 5 closed paying nobody, 7 closed
/// paying everything, 8 is open.
fn network(dir: &std::path::Path) -> (Fixture, Arc<Shared>) {
    let fx = Fixture::grid(4, 4, RulesConfig::permissionless(), EpochParams::default());
    let store = block_on(async {
        let mut store = Store::open_sqlite(&dir.join("oracle.db")).await.unwrap();

        let beacon = fx.beacon_msg(0);
        let beacon_bytes = fx.sign(0, &beacon);
        let rows: Vec<Row> = (1..3)
            .map(|j| {
                let envelope = fx.sign(j, &fx.witness_msg(j, &beacon_bytes, &beacon, 0));
                Row {
                    seq: j as u64,
                    id: ProofId::of(&envelope),
                    node: fx.ids[j],
                    kind: Kind::Witness,
                    epoch: Some(EPOCH),
                    received_ms: START + 1_000,
                    verdict: Verdict::Accepted,
                    envelope,
                }
            })
            .collect();
        store.insert_rows(&rows).await.unwrap();

        store
            .insert_epoch(UNPAID_EPOCH, b"seed-5", UNPAID_EMISSION, 0)
            .await
            .unwrap();
        assert!(
            store
                .commit_close(UNPAID_EPOCH, START - 1, 0, &[], &[], &[vec![0]])
                .await
                .unwrap()
        );
        store
            .insert_epoch(EPOCH, b"seed-7", EMISSION, 0)
            .await
            .unwrap();
        let entry =
            |i: usize, owner: &str, coverage: u64, backhaul: u64, uptime: u64| RewardEntry {
                node: fx.ids[i],
                owner: owner.into(),
                amount: coverage + backhaul + uptime,
                coverage,
                backhaul,
                uptime,
            };
        let entries = vec![
            entry(0, "owner-zero", 400_000_000, 250_000_000, 100_000_000),
            entry(1, "owner-one", 150_000_000, 50_000_000, 50_000_000),
        ];
        assert!(
            store
                .commit_close(EPOCH, START + 3_600_000, 3, &entries, &[], &[vec![0]])
                .await
                .unwrap()
        );
        store
            .insert_epoch(OPEN_EPOCH, b"seed-8", EMISSION, 3)
            .await
            .unwrap();
        store
    });

    let view = |i: usize, owner: &str, trust: Option<u16>, down: Option<u64>| {
        let (lat, lon) = fx.cell(i).center();
        NodeView {
            peer_id: fx.ids[i].to_string(),
            owner: owner.into(),
            cell: fx.cell(i).to_string(),
            lat,
            lon,
            last_heartbeat_ms: Some(START),
            location_trust_bps: trust,
            down_bps: down,
            up_bps: down.map(|d| d / 5),
            penalized_through: None,
            marks: Vec::new(),
        }
    };
    let snap = Snapshot {
        oracle: "oracle-under-test".into(),
        epoch: Some(OPEN_EPOCH),
        open_epochs: vec![(OPEN_EPOCH, 4)],
        nodes: vec![
            view(0, "owner-zero", Some(10_000), Some(52_300_000)),
            view(1, "owner-one", Some(0), None),
            view(2, HOSTILE, None, Some(8_000_000)),
            NodeView {
                penalized_through: Some(OPEN_EPOCH),
                marks: vec![MarkView {
                    epoch: EPOCH,
                    reason: Reason::WrongEpoch.name(),
                }],
                ..view(3, "owner-three", Some(10_000), None)
            },
        ],
        proofs_stored: 2,
    };
    (fx, shared(store, snap))
}

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

    // Rewards of the last closed epoch, per node and per category, with the totals.
    assert!(html.contains(&format!("Rewards of epoch {EPOCH}")));
    for figure in [
        750_000_000,
        400_000_000,
        250_000_000,
        100_000_000,
        550_000_000,
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
