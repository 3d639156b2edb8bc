//! The dashboard page (`GET /`), rendered here from the data the JSON handlers read, so it
//! is complete without JavaScript. `dashboard.html` holds the page around it: style, and a
//! script that re-fetches the page. Every string from the outside (peer ids, owners, reasons,
//! the broker's error) goes through [`escape`].

use std::collections::BTreeMap;

use wisp_protocol::NodeId;
use wisp_protocol::msg::RewardEntry;

use super::{Board, WitnessLinks, epoch_state};
use crate::state::NodeView;

/// The page around the rendered part, which replaces [`LIVE_MARKER`].
const TEMPLATE: &str = include_str!("dashboard.html");
/// Where the rendered part goes in [`TEMPLATE`].
const LIVE_MARKER: &str = "<!-- wisp:live -->";
/// Rows of the nodes and rewards tables at most: the page stays small however large the
/// network (the JSON API lists everything).
pub const TABLE_ROWS: usize = 500;
/// Nodes drawn on the map at most.
pub const MAP_NODES: usize = 5_000;
/// Nodes labelled on the map at most: beyond, the labels would cover each other (every dot
/// keeps its tooltip).
pub const MAP_LABELS: usize = 150;
/// Metres per degree of latitude (mean Earth radius).
const M_PER_DEG: f64 = 111_195.0;
/// The smallest extent the map shows, metres: a lone node (or several at one spot) gets its
/// neighbourhood rather than an infinite zoom.
const MIN_SPAN_M: f64 = 200.0;
/// The map's size in pixels, and the margin kept free around the nodes for their labels.
const MAP_W: f64 = 720.0;
const MAP_H: f64 = 420.0;
const MAP_MARGIN: f64 = 40.0;
/// Separates thousands in amounts: a narrow no-break space (SI style, no locale ambiguity).
const THOUSANDS: char = '\u{202f}';

/// Escapes `s` for HTML text and for quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A node's label on the map: the last 8 characters of its peer id. Every ed25519 peer id
/// starts with `12D3KooW`, so its first characters would label every node the same.
pub fn short_id(peer_id: &str) -> &str {
    let skip = peer_id.chars().count().saturating_sub(8);
    peer_id
        .char_indices()
        .nth(skip)
        .map_or(peer_id, |(i, _)| &peer_id[i..])
}

/// An amount with its thousands separated.
pub fn amount(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(THOUSANDS);
        }
        out.push(c);
    }
    out
}

/// Bits per second as Mbit/s with one decimal, `—` if not rated.
fn mbps(bps: Option<u64>) -> String {
    bps.map_or_else(
        || "—".into(),
        |b| format!("{}.{}", b / 1_000_000, b % 1_000_000 / 100_000),
    )
}

/// Unix milliseconds as a UTC date and time, `2027-01-15 08:00:00`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let (hh, mm, ss) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Days to civil date (Howard Hinnant's algorithm, proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// An equirectangular projection of a set of points onto a pixel box: north up, the same
/// metres per pixel on both axes, the points' bounding box centred and fitted inside the
/// margin. Always finite: no points, one point or points on one spot get a 200 m extent,
/// and non-finite coordinates are ignored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapFrame {
    /// Latitude at the centre of the box, degrees.
    lat0: f64,
    /// Longitude at the centre of the box, degrees.
    lon0: f64,
    /// Metres per degree of longitude at `lat0`.
    m_per_deg_lon: f64,
    /// Metres per pixel.
    m_per_px: f64,
    /// The box, pixels.
    width: f64,
    height: f64,
}

impl MapFrame {
    /// Fits `points` (latitude, longitude in degrees) into `width` × `height` pixels,
    /// keeping `margin` pixels free on each side.
    pub fn fit(
        points: impl IntoIterator<Item = (f64, f64)>,
        width: f64,
        height: f64,
        margin: f64,
    ) -> MapFrame {
        let mut bbox: Option<[f64; 4]> = None;
        for (lat, lon) in points {
            if !lat.is_finite() || !lon.is_finite() {
                continue;
            }
            let (lat, lon) = (lat.clamp(-90.0, 90.0), lon.clamp(-180.0, 180.0));
            bbox = Some(match bbox {
                None => [lat, lat, lon, lon],
                Some([a, b, c, d]) => [a.min(lat), b.max(lat), c.min(lon), d.max(lon)],
            });
        }
        let [s, n, w, e] = bbox.unwrap_or([0.0; 4]);
        let (lat0, lon0) = ((s + n) / 2.0, (w + e) / 2.0);
        // Near the poles a degree of longitude shrinks to nothing; keep it measurable.
        let m_per_deg_lon = M_PER_DEG * lat0.to_radians().cos().max(0.01);
        let inner_w = (width - 2.0 * margin).max(1.0);
        let inner_h = (height - 2.0 * margin).max(1.0);
        let m_per_px = ((e - w) * m_per_deg_lon / inner_w)
            .max((n - s) * M_PER_DEG / inner_h)
            .max(MIN_SPAN_M / inner_w.min(inner_h));
        MapFrame {
            lat0,
            lon0,
            m_per_deg_lon,
            m_per_px,
            width: width.max(1.0),
            height: height.max(1.0),
        }
    }

    /// The pixel (x to the east, y to the south) of a point.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        (
            self.width / 2.0 + (lon - self.lon0) * self.m_per_deg_lon / self.m_per_px,
            self.height / 2.0 - (lat - self.lat0) * M_PER_DEG / self.m_per_px,
        )
    }

    /// The point (latitude, longitude) at a pixel.
    pub fn unproject(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.lat0 + (self.height / 2.0 - y) * self.m_per_px / M_PER_DEG,
            self.lon0 + (x - self.width / 2.0) * self.m_per_px / self.m_per_deg_lon,
        )
    }

    /// Metres per pixel.
    pub fn metres_per_px(&self) -> f64 {
        self.m_per_px
    }

    /// The longest round length (1, 2 or 5 × 10ⁿ metres) at most `max_px` long: its
    /// length in metres and in pixels, and its label (`500 m`, `2 km`).
    pub fn scale_bar(&self, max_px: f64) -> (f64, f64, String) {
        let max_m = self.m_per_px * max_px.max(1.0);
        // The power of ten at most `max_m`, by steps so that whole metres stay exact.
        let mut pow = 1.0;
        while pow * 10.0 <= max_m {
            pow *= 10.0;
        }
        while pow > max_m && pow > 1e-3 {
            pow /= 10.0;
        }
        let metres = [5.0, 2.0, 1.0]
            .into_iter()
            .map(|f| f * pow)
            .find(|m| *m <= max_m)
            .unwrap_or(pow);
        let label = if metres >= 1000.0 {
            format!("{} km", metres / 1000.0)
        } else {
            format!("{metres} m")
        };
        (metres, metres / self.m_per_px, label)
    }
}

/// How a node fared, for its colour on the map and in the table (one definition, the API's).
use super::monitor::NodeStatus as State;

/// A pixel coordinate for SVG (finite by construction of [`MapFrame`]; 0 otherwise, so
/// the document never holds `NaN`).
fn px(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "0".into()
    }
}

/// Degrees with a hemisphere letter.
fn degrees(v: f64, pos: char, neg: char) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    format!("{:.4}° {}", v.abs(), if v < 0.0 { neg } else { pos })
}

/// The last closed epoch's rewards by node.
type Paid<'a> = BTreeMap<NodeId, &'a RewardEntry>;

fn reward_of<'a>(paid: &Paid<'a>, n: &NodeView) -> Option<&'a RewardEntry> {
    let id = n.peer_id.parse::<NodeId>().ok()?;
    paid.get(&id).copied()
}

/// The whole page.
pub(super) fn page(b: &Board) -> String {
    let mut live = String::with_capacity(16 * 1024);
    body(&mut live, b);
    match TEMPLATE.split_once(LIVE_MARKER) {
        Some((head, tail)) => [head, &live, tail].concat(),
        None => live,
    }
}

fn body(o: &mut String, b: &Board) {
    let last = b.rewards.iter().next_back();
    let by_node: Paid<'_> = last
        .map(|(_, entries)| entries.iter().map(|e| (e.node, e)).collect())
        .unwrap_or_default();

    o.push_str(&format!(
        "<h1>wisp oracle <span class=\"muted\" title=\"the oracle's peer id\">{}</span></h1>\n",
        escape(&b.snap.oracle)
    ));
    status(o, b);

    o.push_str("<h2>Hotspots</h2>\n");
    map(o, &b.snap.nodes, b.snap.epoch, &by_node, &b.links);
    nodes(o, b, last.map(|(e, _)| *e), &by_node);
    rewards(o, last);
    epochs(o, b);
    rejections(o, b);
}

fn status(o: &mut String, b: &Board) {
    let s = &b.snap;
    let epoch = s.epoch.map_or_else(|| "—".into(), |e| e.to_string());
    let open: Vec<String> = s
        .open_epochs
        .iter()
        .map(|(e, n)| format!("{e} ({n} queued)"))
        .collect();
    let broker = match &b.broker_trouble {
        None => "broker connected".to_string(),
        Some(why) => format!(
            "<strong class=\"bad\">broker not connected: {}</strong>",
            escape(why)
        ),
    };
    o.push_str(&format!(
        "<p id=\"status\">epoch {epoch} · open epochs: {} · {} hotspots · {} proofs stored · {broker}</p>\n",
        if open.is_empty() { "none".into() } else { open.join(", ") },
        s.nodes.len(),
        s.proofs_stored,
    ));
}

fn map(
    o: &mut String,
    nodes: &[NodeView],
    now: Option<u64>,
    paid: &Paid<'_>,
    links: &WitnessLinks,
) {
    let drawn: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.lat.is_finite() && n.lon.is_finite())
        .take(MAP_NODES)
        .collect();
    let frame = MapFrame::fit(
        drawn.iter().map(|n| (n.lat, n.lon)),
        MAP_W,
        MAP_H,
        MAP_MARGIN,
    );
    o.push_str(&format!(
        "<svg id=\"map\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"map of {} hotspots, north up\">\n",
        drawn.len(),
        w = MAP_W,
        h = MAP_H,
    ));
    o.push_str(&format!(
        "<rect class=\"frame\" x=\"0.5\" y=\"0.5\" width=\"{}\" height=\"{}\"/>\n",
        MAP_W - 1.0,
        MAP_H - 1.0
    ));
    if drawn.is_empty() {
        o.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no hotspots onboarded yet</text>\n</svg>\n",
            MAP_W / 2.0,
            MAP_H / 2.0
        ));
        o.push_str("<p class=\"muted\">no witness links</p>\n");
        return;
    }
    let at: BTreeMap<NodeId, (f64, f64)> = drawn
        .iter()
        .filter_map(|n| {
            let id = n.peer_id.parse::<NodeId>().ok()?;
            Some((id, frame.project(n.lat, n.lon)))
        })
        .collect();
    // Witness links under the nodes.
    o.push_str("<g class=\"links\">");
    let mut drawn_links = 0usize;
    for (b, w) in &links.links {
        let (Some(pb), Some(pw)) = (at.get(b), at.get(w)) else {
            continue;
        };
        drawn_links += 1;
        o.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
            px(pb.0),
            px(pb.1),
            px(pw.0),
            px(pw.1)
        ));
    }
    o.push_str("</g>\n<g class=\"nodes\">\n");
    let labelled = drawn.len() <= MAP_LABELS;
    for n in &drawn {
        let (x, y) = frame.project(n.lat, n.lon);
        let state = State::of(n, reward_of(paid, n), now);
        o.push_str(&format!(
            "<circle class=\"{}\" cx=\"{}\" cy=\"{}\" r=\"5\"><title>{} — {}</title></circle>",
            state.name(),
            px(x),
            px(y),
            escape(&n.peer_id),
            state.describe()
        ));
        if labelled {
            // Labels of nodes near the right edge go to their left, inside the box.
            let (lx, anchor) = if x > MAP_W - MAP_MARGIN - 50.0 {
                (x - 7.0, " text-anchor=\"end\"")
            } else {
                (x + 7.0, "")
            };
            o.push_str(&format!(
                "<text x=\"{}\" y=\"{}\"{anchor}>{}</text>",
                px(lx),
                px(y + 3.5),
                escape(short_id(&n.peer_id))
            ));
        }
        o.push('\n');
    }
    o.push_str("</g>\n");
    // Corners, north arrow, scale bar, legend.
    let (lat_n, lon_w) = frame.unproject(0.0, 0.0);
    let (lat_s, lon_e) = frame.unproject(MAP_W, MAP_H);
    o.push_str(&format!(
        "<text x=\"6\" y=\"14\">{}, {}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}, {}</text>\n",
        degrees(lat_n, 'N', 'S'),
        degrees(lon_w, 'E', 'W'),
        px(MAP_W - 6.0),
        px(MAP_H - 6.0),
        degrees(lat_s, 'N', 'S'),
        degrees(lon_e, 'E', 'W'),
    ));
    o.push_str(&format!(
        "<g class=\"north\" transform=\"translate({},36)\"><path d=\"M0,-14 L6,4 L0,0 L-6,4 Z\"/><text y=\"16\" text-anchor=\"middle\">N</text></g>\n",
        px(MAP_W - 24.0)
    ));
    let (_, bar_px, label) = frame.scale_bar(MAP_W / 4.0);
    let (x0, y0) = (16.0, MAP_H - 24.0);
    o.push_str(&format!(
        "<g id=\"scale\"><path class=\"scale\" d=\"M{x0},{a} V{y0} H{x1} V{a}\"/><text x=\"{x0}\" y=\"{t}\">{}</text></g>\n",
        escape(&label),
        a = px(y0 - 6.0),
        x1 = px(x0 + bar_px),
        t = px(y0 + 13.0),
    ));
    o.push_str("</svg>\n<p id=\"legend\">");
    for s in [
        State::Paid,
        State::Unpaid,
        State::Untrusted,
        State::Penalized,
    ] {
        o.push_str(&format!(
            "<span class=\"dot {}\"></span> {} &nbsp; ",
            s.name(),
            s.describe()
        ));
    }
    o.push_str("</p>\n");
    let caption = match links.epoch {
        None => "no closed epoch yet: no witness links".to_string(),
        Some(e) => format!(
            "witness links of epoch {e}: {drawn_links}{}",
            if links.truncated { " (capped)" } else { "" }
        ),
    };
    let more = if nodes.len() > drawn.len() {
        format!(" · {} of {} hotspots drawn", drawn.len(), nodes.len())
    } else {
        String::new()
    };
    o.push_str(&format!(
        "<p id=\"links\" class=\"muted\">{caption}{more} · 1 px ≈ {} m</p>\n",
        px(frame.metres_per_px())
    ));
}

fn nodes(o: &mut String, b: &Board, last: Option<u64>, paid: &Paid<'_>) {
    let paid_col = last.map_or_else(|| "paid".into(), |e| format!("paid in epoch {e}"));
    o.push_str(&format!(
        "<table id=\"nodes\"><thead><tr><th>node</th><th>owner</th><th>cell</th><th>last heartbeat (UTC)</th><th class=\"n\">location trust</th><th class=\"n\" title=\"backhaul towards the node as last rated\">down Mbit/s</th><th class=\"n\" title=\"backhaul from the node as last rated\">up Mbit/s</th><th class=\"n\">{paid_col}</th><th title=\"what it was caught at within the strike window, most recent first (epoch)\">caught at</th></tr></thead><tbody>\n"
    ));
    for n in b.snap.nodes.iter().take(TABLE_ROWS) {
        let r = reward_of(paid, n);
        let state = State::of(n, r, b.snap.epoch);
        let marks: Vec<String> = n
            .marks
            .iter()
            .take(3)
            .map(|m| format!("{} ({})", escape(m.reason), m.epoch))
            .collect();
        o.push_str(&format!(
            "<tr><td title=\"{id}\"><span class=\"dot {}\" title=\"{}\"></span> <a href=\"/v1/nodes/{id}\"><code>{}</code></a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
            state.name(),
            state.describe(),
            escape(short_id(&n.peer_id)),
            escape(&n.owner),
            escape(&n.cell),
            n.last_heartbeat_ms.map_or_else(|| "never".into(), utc),
            n.location_trust_bps
                .map_or_else(|| "—".into(), |t| format!("{}.{:02} %", t / 100, t % 100)),
            mbps(n.down_bps),
            mbps(n.up_bps),
            r.map_or_else(|| "—".into(), |r| amount(r.amount)),
            marks.join(", "),
            id = escape(&n.peer_id),
        ));
    }
    o.push_str("</tbody></table>\n");
    if b.snap.nodes.len() > TABLE_ROWS {
        o.push_str(&format!(
            "<p class=\"muted\">first {TABLE_ROWS} of {} hotspots; <a href=\"/v1/nodes\">/v1/nodes</a> lists all</p>\n",
            b.snap.nodes.len()
        ));
    }
}

fn rewards(o: &mut String, last: Option<(&u64, &Vec<RewardEntry>)>) {
    let Some((epoch, entries)) = last else {
        o.push_str("<h2>Rewards</h2>\n<p class=\"muted\">no closed epoch yet</p>\n");
        return;
    };
    o.push_str(&format!(
        "<h2>Rewards of epoch {epoch}</h2>\n<p class=\"muted\"><a href=\"/v1/epochs/{epoch}/rewards\">/v1/epochs/{epoch}/rewards</a>: entries, Merkle root, signed manifest</p>\n"
    ));
    if entries.is_empty() {
        o.push_str("<p>nothing paid: no node earned coverage, backhaul, uptime or usage</p>\n");
        return;
    }
    let mut sorted: Vec<&RewardEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.node.cmp(&b.node)));
    o.push_str("<table id=\"rewards\"><thead><tr><th>node</th><th>owner</th><th class=\"n\">coverage</th><th class=\"n\">backhaul</th><th class=\"n\">uptime</th><th class=\"n\">usage</th><th class=\"n\">total</th></tr></thead><tbody>\n");
    for e in sorted.iter().take(TABLE_ROWS) {
        let id = e.node.to_string();
        o.push_str(&format!(
            "<tr><td title=\"{}\"><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            escape(&id),
            escape(short_id(&id)),
            escape(&e.owner),
            amount(e.coverage),
            amount(e.backhaul),
            amount(e.uptime),
            amount(e.usage),
            amount(e.amount),
        ));
    }
    let [c, bh, u, g, t] = totals(entries);
    o.push_str(&format!(
        "</tbody><tfoot><tr><td>{} nodes</td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></tfoot></table>\n",
        entries.len(),
        amount(c),
        amount(bh),
        amount(u),
        amount(g),
        amount(t),
    ));
    if entries.len() > TABLE_ROWS {
        o.push_str(&format!(
            "<p class=\"muted\">the {TABLE_ROWS} best paid of {} nodes</p>\n",
            entries.len()
        ));
    }
}

/// Coverage, backhaul, uptime, usage and total of some entries (saturating: a display only).
fn totals(entries: &[RewardEntry]) -> [u64; 5] {
    entries.iter().fold([0u64; 5], |[c, b, u, g, t], e| {
        [
            c.saturating_add(e.coverage),
            b.saturating_add(e.backhaul),
            u.saturating_add(e.uptime),
            g.saturating_add(e.usage),
            t.saturating_add(e.amount),
        ]
    })
}

fn epochs(o: &mut String, b: &Board) {
    o.push_str("<h2>Epochs</h2>\n<table id=\"epochs\"><thead><tr><th>epoch</th><th>state</th><th>closed (UTC)</th><th class=\"n\">emission</th><th class=\"n\">coverage</th><th class=\"n\">backhaul</th><th class=\"n\">uptime</th><th class=\"n\">usage</th><th class=\"n\">nodes paid</th></tr></thead><tbody>\n");
    for e in b.epochs.iter().rev() {
        let closed = e.closed_ms.map_or_else(|| "—".into(), utc);
        let row = match b.rewards.get(&e.epoch) {
            None => format!(
                "<td class=\"n muted\" title=\"open: the emission of {} is allocated when the epoch closes\">—</td><td></td><td></td><td></td><td></td><td></td>",
                amount(e.emission)
            ),
            // Amounts sum to the emission exactly unless nobody earned anything; then
            // nothing is paid and the emission is not allocated at all.
            Some(entries) if entries.iter().all(|r| r.amount == 0) => format!(
                "<td class=\"n muted\" title=\"nothing paid: no node earned coverage, backhaul, uptime or usage in this epoch, so its emission of {} was not allocated\">—</td><td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">0</td>",
                amount(e.emission)
            ),
            Some(entries) => {
                let [c, bh, u, g, _] = totals(entries);
                format!(
                    "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                    amount(e.emission),
                    amount(c),
                    amount(bh),
                    amount(u),
                    amount(g),
                    entries.iter().filter(|r| r.amount > 0).count(),
                )
            }
        };
        o.push_str(&format!(
            "<tr id=\"epoch-{n}\"><td>{link}</td><td>{}</td><td>{closed}</td>{row}</tr>\n",
            epoch_state(e),
            n = e.epoch,
            link = if e.closed_ms.is_some() {
                format!("<a href=\"/v1/epochs/{0}/rewards\">{0}</a>", e.epoch)
            } else {
                e.epoch.to_string()
            },
        ));
    }
    o.push_str("</tbody></table>\n");
}

fn rejections(o: &mut String, b: &Board) {
    o.push_str("<h2>Rejections by reason</h2>\n<table id=\"rejections\"><thead><tr><th class=\"n\">code</th><th>reason</th><th class=\"n\">count</th></tr></thead><tbody>\n");
    if b.rejections.is_empty() {
        o.push_str("<tr><td></td><td class=\"muted\">none</td><td></td></tr>\n");
    }
    for (r, n) in &b.rejections {
        o.push_str(&format!(
            "<tr><td class=\"n\">{}</td><td title=\"{}\">{}</td><td class=\"n\">{n}</td></tr>\n",
            r.code(),
            escape(r.describe()),
            escape(r.name()),
        ));
    }
    o.push_str("</tbody></table>\n");
}
