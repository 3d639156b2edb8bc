//! The node registry: who has onboarded, where they asserted to be, with what radio, and the
//! little per-node state that outlives an epoch (recent heartbeats, carried location trust).
//!
//! The registry owns the validated [`Rules`], so every caller (the checks in
//! [`crate::rules`], the epoch close and the reward math) applies one consistent set.
//!
//! Call order for the service: [`Registry::apply_onboard`] for each opened `Onboard`;
//! [`Registry::record_heartbeat`] after each heartbeat [`crate::rules::Checker::heartbeat`]
//! accepted; [`Registry::apply_epoch`] with each closed epoch's outcome.

use std::collections::BTreeMap;

use wisp_protocol::geo::{self, Cell};
use wisp_protocol::msg::{Band, Onboard};
use wisp_protocol::units::{DeciDb, UnixMs};
use wisp_protocol::{NodeId, Opened, Reason};

use crate::config::Rules;
use crate::facts::{EpochOutcome, HeartbeatFact};
use crate::links::BandModel;

/// A cell's centre and the radius that contains all of it, cached per node so distance checks
/// cost one haversine and no H3 work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    /// Centre latitude, degrees.
    pub lat: f64,
    /// Centre longitude, degrees.
    pub lon: f64,
    /// Distance from the centre to the farthest point of the cell, metres (with 1 % and 1 m of
    /// slack for the curvature between vertices).
    pub radius_m: f64,
}

impl Position {
    /// The position of an H3 cell: its centre and circumradius (the farthest boundary vertex).
    pub fn of_cell(cell: Cell) -> Position {
        let (lat, lon) = cell.center();
        let radius = cell
            .index()
            .boundary()
            .iter()
            .map(|v| geo::haversine_m(lat, lon, v.lat(), v.lng()))
            .fold(0.0_f64, f64::max);
        Position {
            lat,
            lon,
            radius_m: radius * 1.01 + 1.0,
        }
    }

    /// Distance between the two centres, metres.
    pub fn centre_distance_m(&self, other: &Position) -> f64 {
        geo::haversine_m(self.lat, self.lon, other.lat, other.lon)
    }

    /// The shortest distance two nodes somewhere in these cells can be apart:
    /// `max(0, d_centres − r₁ − r₂)`. Used by every "too strong / too fast for the distance"
    /// rule, so an honest node is never judged farther away than it might be.
    pub fn min_distance_m(&self, other: &Position) -> f64 {
        (self.centre_distance_m(other) - self.radius_m - other.radius_m).max(0.0)
    }

    /// The longest distance two nodes in these cells can be apart: `d_centres + r₁ + r₂`. Used
    /// by the "too close" rule, for the same reason.
    pub fn max_distance_m(&self, other: &Position) -> f64 {
        self.centre_distance_m(other) + self.radius_m + other.radius_m
    }

    /// The shortest distance from any point of this cell to a point in degrees.
    pub fn min_distance_to_m(&self, lat: f64, lon: f64) -> f64 {
        (geo::haversine_m(self.lat, self.lon, lat, lon) - self.radius_m).max(0.0)
    }
}

/// The secure element a node is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The maker named in the attestation.
    pub maker: String,
    /// The chip's serial number.
    pub serial: [u8; 9],
}

/// An accepted heartbeat of a node, for the replay and rate rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatMark {
    /// Its epoch.
    pub epoch: u64,
    /// Its sequence number.
    pub seq: u64,
    /// When the node signed it.
    pub sent_ms: UnixMs,
}

/// The heartbeats of a node the replay and rate rules compare a new one with: every accepted
/// heartbeat of the epochs not yet closed, and the latest of the closed ones. Agents resend a
/// backlog after an outage or a restart, and the broker may deliver it in any order, so a
/// heartbeat is judged against its neighbours in signing time, not against the last to arrive.
///
/// Bounded: the rate rule keeps accepted heartbeats half an interval apart, closing an epoch
/// folds its heartbeats into one, and beyond [`HeartbeatLog::MAX_OPEN`] the oldest are folded
/// too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatLog {
    /// Accepted heartbeats of open epochs, sorted by `(sent_ms, seq)`.
    open: Vec<HeartbeatMark>,
    /// The latest accepted heartbeat no longer in `open` (closed epochs, or folded).
    closed: Option<HeartbeatMark>,
}

impl HeartbeatLog {
    /// Most heartbeats kept per node (an epoch of an hour at a 5 min interval has 12).
    pub const MAX_OPEN: usize = 1024;

    /// The latest accepted heartbeat by signing time, if any.
    pub fn latest(&self) -> Option<&HeartbeatMark> {
        [self.open.last(), self.closed.as_ref()]
            .into_iter()
            .flatten()
            .max_by_key(|m| (m.sent_ms, m.seq))
    }

    /// Whether `seq` was accepted before: a heartbeat of an open epoch with that number, or a
    /// number not above the latest of the closed epochs (whose numbers are forgotten; an agent
    /// signs a closed epoch's heartbeats before any later epoch's).
    pub fn is_replay(&self, seq: u64) -> bool {
        self.closed.is_some_and(|c| seq <= c.seq) || self.open.iter().any(|m| m.seq == seq)
    }

    /// The accepted heartbeats nearest to `sent_ms`: the latest signed at or before it and the
    /// earliest signed after it.
    pub fn neighbours(&self, sent_ms: UnixMs) -> (Option<&HeartbeatMark>, Option<&HeartbeatMark>) {
        let i = self.open.partition_point(|m| m.sent_ms <= sent_ms);
        let closed = self.closed.as_ref();
        let before = [
            i.checked_sub(1).and_then(|j| self.open.get(j)),
            closed.filter(|c| c.sent_ms <= sent_ms),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|m| m.sent_ms);
        let after = [self.open.get(i), closed.filter(|c| c.sent_ms > sent_ms)]
            .into_iter()
            .flatten()
            .min_by_key(|m| m.sent_ms);
        (before, after)
    }

    fn record(&mut self, mark: HeartbeatMark) {
        let i = self
            .open
            .partition_point(|m| (m.sent_ms, m.seq) <= (mark.sent_ms, mark.seq));
        self.open.insert(i, mark);
        while self.open.len() > Self::MAX_OPEN {
            let oldest = self.open.remove(0);
            self.fold(oldest);
        }
    }

    /// Forgets the heartbeats of `epoch` and earlier but the latest.
    fn close(&mut self, epoch: u64) {
        let (gone, kept): (Vec<HeartbeatMark>, Vec<HeartbeatMark>) =
            self.open.drain(..).partition(|m| m.epoch <= epoch);
        self.open = kept;
        for m in gone {
            self.fold(m);
        }
    }

    fn fold(&mut self, m: HeartbeatMark) {
        if self
            .closed
            .is_none_or(|c| (m.seq, m.sent_ms) > (c.seq, c.sent_ms))
        {
            self.closed = Some(m);
        }
    }
}

/// A node's backhaul capacity as last rated (the lower median of its measurers), per
/// direction; what it can carry when it measures others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Download, bits per second.
    pub down_bps: Option<u64>,
    /// Upload, bits per second.
    pub up_bps: Option<u64>,
}

/// One onboarded node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// The node's key.
    pub id: NodeId,
    /// Where its rewards are paid.
    pub owner: String,
    /// Its asserted cell.
    pub cell: Cell,
    /// The cell's centre and radius.
    pub position: Position,
    /// Onboarded antenna gain; the RSSI bound never uses a larger one.
    pub antenna_gain: DeciDb,
    /// Antenna height, decimetres.
    pub antenna_height_dm: u16,
    /// Declared radio bands.
    pub bands: Vec<Band>,
    /// Whether it runs the measurer role (eligible for measurer sets from the next epoch).
    pub measurer: bool,
    /// `issued_ms` of the last onboard applied; older ones are replays.
    pub issued_ms: UnixMs,
    /// When the oracle first accepted the node.
    pub onboarded_ms: UnixMs,
    /// When the oracle accepted the current cell (first onboard or last re-assertion).
    pub asserted_ms: UnixMs,
    /// The secure element, when the node was attested.
    pub device: Option<Device>,
    /// The accepted heartbeats the replay and rate rules compare with.
    pub heartbeats: HeartbeatLog,
    /// Location trust carried from the last closed epoch that had GNSS evidence for the current
    /// cell; `None` until then (the node's location is unverified).
    pub location_trust_bps: Option<u16>,
    /// The last epoch of the node's current penalty, if it was caught cheating: it earns
    /// nothing and measures nobody until that epoch has closed.
    pub penalized_through: Option<u64>,
    /// Its backhaul as last rated.
    pub capacity: Capacity,
    /// What it was caught at within the last `strike_window_epochs` (see
    /// [`crate::facts::Mark`]), most recent first.
    pub marks: Vec<crate::facts::Mark>,
    /// Its last level offset with each of its latest partners heard both ways (see
    /// [`crate::links`]), tenths of dB, most recent first, at most
    /// [`crate::links::LEVEL_OFFSETS_KEPT`].
    pub level_offsets: Vec<(NodeId, i32)>,
    /// Its latest pair offsets (see [`crate::links::Judgement::pair_offsets`]), tenths of dB,
    /// most recent first, at most [`crate::links::PAIR_OFFSETS_KEPT`].
    pub pair_offsets: Vec<(NodeId, i32)>,
    /// Its latest readings (beaconer, epoch, RSSI), most recent first (see
    /// `RulesConfig::constant_rssi_witnesses`).
    pub recent_levels: Vec<crate::facts::Level>,
}

impl NodeRecord {
    /// The declared band containing `freq_khz`, if any.
    pub fn band_for(&self, freq_khz: u32) -> Option<&Band> {
        self.bands.iter().find(|b| b.contains(freq_khz))
    }

    /// Whether it serves a penalty during `epoch` (it earns nothing and measures nobody).
    pub fn is_penalized_in(&self, epoch: u64) -> bool {
        self.penalized_through.is_some_and(|t| t >= epoch)
    }
}

/// What an accepted onboard changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new node.
    Created,
    /// Owner, antenna or bands changed; same cell.
    Updated,
    /// The node moved: a new cell, location trust reset.
    Reasserted {
        /// The cell it left.
        previous: Cell,
    },
    /// The same onboard again (same `issued_ms`, same content): nothing to do.
    Unchanged,
}

/// All onboarded nodes, by id.
#[derive(Clone, Debug)]
pub struct Registry {
    rules: Rules,
    nodes: BTreeMap<NodeId, NodeRecord>,
    serials: BTreeMap<[u8; 9], NodeId>,
    /// Each band's reach, as of the last closed epoch that measured it.
    bands: BTreeMap<u8, BandModel>,
}

impl Registry {
    /// An empty registry applying `rules`.
    pub fn new(rules: Rules) -> Registry {
        Registry {
            rules,
            nodes: BTreeMap::new(),
            serials: BTreeMap::new(),
            bands: BTreeMap::new(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Replaces the rules (configuration reload). Existing nodes stay; the new deny list and
    /// thresholds apply to proofs checked from now on.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// Applies an opened `Onboard` (signature and structure already checked by
    /// `envelope::open`) at oracle time `now_ms`.
    ///
    /// Rules, in order (cheap before expensive): deny list (`denied`); an `issued_ms` more
    /// than the clock skew in the future (`timestamp_out_of_window`, since it would block every
    /// later onboard); attestation required unless permissionless (`attestation_required`);
    /// an `issued_ms` older than the one applied, or equal with other content, is a replay
    /// (`timestamp_out_of_window`); a new cell within the minimum re-assert interval
    /// (`reassert_too_soon`); the attestation's maker unknown (`unknown_maker`) or its
    /// signatures wrong (`attestation_invalid`); its chip serial bound to another node, or this
    /// node bound to another chip (`device_already_bound`). An attestation that is present is
    /// checked even on a permissionless network.
    pub fn apply_onboard(
        &mut self,
        onboard: &Opened<Onboard>,
        now_ms: UnixMs,
    ) -> Result<Change, Reason> {
        let node = onboard.signer;
        let msg = &onboard.msg;
        let cfg = self.rules.config();
        if self.rules.is_denied(&node) {
            return Err(Reason::Denied);
        }
        if msg.issued_ms > now_ms.saturating_add(cfg.clock_skew_ms) {
            return Err(Reason::TimestampOutOfWindow);
        }
        if msg.attestation.is_none() && !cfg.permissionless {
            return Err(Reason::AttestationRequired);
        }
        let existing = self.nodes.get(&node);
        if let Some(rec) = existing {
            if msg.issued_ms < rec.issued_ms {
                return Err(Reason::OnboardStale);
            }
            if msg.issued_ms == rec.issued_ms {
                return if same_content(rec, msg) {
                    Ok(Change::Unchanged)
                } else {
                    Err(Reason::OnboardStale)
                };
            }
            if msg.cell != rec.cell
                && now_ms < rec.asserted_ms.saturating_add(cfg.reassert_min_interval_ms)
            {
                return Err(Reason::ReassertTooSoon);
            }
        }
        let device = match &msg.attestation {
            None => None,
            Some(att) => {
                let key = self
                    .rules
                    .maker_key(&att.maker)
                    .ok_or(Reason::UnknownMaker)?;
                att.verify(&node, key)?;
                let serial = att.serial.0;
                if self.serials.get(&serial).is_some_and(|n| *n != node) {
                    return Err(Reason::DeviceAlreadyBound);
                }
                if let Some(Device { serial: bound, .. }) = existing.and_then(|r| r.device.as_ref())
                    && *bound != serial
                {
                    return Err(Reason::DeviceAlreadyBound);
                }
                Some(Device {
                    maker: att.maker.clone(),
                    serial,
                })
            }
        };
        if let Some(d) = &device {
            self.serials.insert(d.serial, node);
        }
        let change = match self.nodes.get_mut(&node) {
            None => {
                self.nodes.insert(
                    node,
                    NodeRecord {
                        id: node,
                        owner: msg.owner.clone(),
                        cell: msg.cell,
                        position: Position::of_cell(msg.cell),
                        antenna_gain: msg.antenna_gain,
                        antenna_height_dm: msg.antenna_height_dm,
                        bands: msg.bands.clone(),
                        measurer: msg.measurer,
                        issued_ms: msg.issued_ms,
                        onboarded_ms: now_ms,
                        asserted_ms: now_ms,
                        device,
                        heartbeats: HeartbeatLog::default(),
                        location_trust_bps: None,
                        penalized_through: None,
                        capacity: Capacity::default(),
                        marks: Vec::new(),
                        level_offsets: Vec::new(),
                        pair_offsets: Vec::new(),
                        recent_levels: Vec::new(),
                    },
                );
                Change::Created
            }
            Some(rec) => {
                let change = if rec.cell == msg.cell {
                    Change::Updated
                } else {
                    let previous = rec.cell;
                    rec.cell = msg.cell;
                    rec.position = Position::of_cell(msg.cell);
                    rec.asserted_ms = now_ms;
                    // A new place is unverified until GNSS evidence for it arrives.
                    rec.location_trust_bps = None;
                    Change::Reasserted { previous }
                };
                rec.owner.clone_from(&msg.owner);
                rec.antenna_gain = msg.antenna_gain;
                rec.antenna_height_dm = msg.antenna_height_dm;
                rec.bands.clone_from(&msg.bands);
                rec.measurer = msg.measurer;
                rec.issued_ms = msg.issued_ms;
                if device.is_some() {
                    rec.device = device;
                }
                change
            }
        };
        Ok(change)
    }

    /// Remembers an accepted heartbeat for the replay and rate rules.
    pub fn record_heartbeat(&mut self, fact: &HeartbeatFact) {
        if let Some(rec) = self.nodes.get_mut(&fact.node) {
            rec.heartbeats.record(HeartbeatMark {
                epoch: fact.epoch,
                seq: fact.seq,
                sent_ms: fact.sent_ms,
            });
        }
    }

    /// Carries what outlives a closed epoch: each node's location trust (a node whose epoch
    /// had GNSS evidence for its current cell keeps the multiplier that evidence gave, so an
    /// epoch without fixes does not reset it), its rated backhaul, the penalty of a node caught
    /// cheating (this epoch and `penalty_epochs` more), what it was caught at, and the bands' reach;
    /// the epoch's heartbeats are forgotten but each node's latest.
    pub fn apply_epoch(&mut self, outcome: &EpochOutcome) {
        for (id, facts) in &outcome.nodes {
            let Some(rec) = self.nodes.get_mut(id) else {
                continue;
            };
            if let Some(evidence) = facts.location_evidence
                && evidence.asserted_ms == rec.asserted_ms
            {
                rec.location_trust_bps = Some(evidence.trust_bps);
            }
            if let Some(d) = facts.down {
                rec.capacity.down_bps = Some(d.median_bps);
            }
            if let Some(u) = facts.up {
                rec.capacity.up_bps = Some(u.median_bps);
            }
        }
        let through = outcome
            .epoch
            .saturating_add(u64::from(self.rules.config().penalty_epochs));
        for (id, reason) in &outcome.penalties {
            if *reason != Reason::Penalized
                && let Some(rec) = self.nodes.get_mut(id)
            {
                rec.penalized_through =
                    Some(rec.penalized_through.map_or(through, |t| t.max(through)));
            }
        }
        for (band, model) in &outcome.bands {
            self.bands.insert(*band, *model);
        }
        for rec in self.nodes.values_mut() {
            rec.marks.clear();
            // The epoch's heartbeats are judged; later ones are compared with its latest only.
            rec.heartbeats.close(outcome.epoch);
        }
        for (id, marks) in &outcome.marks {
            if let Some(rec) = self.nodes.get_mut(id) {
                rec.marks.clone_from(marks);
            }
        }
        for (id, offsets) in &outcome.level_offsets {
            if let Some(rec) = self.nodes.get_mut(id) {
                rec.level_offsets.clone_from(offsets);
            }
        }
        for (id, offsets) in &outcome.pair_offsets {
            if let Some(rec) = self.nodes.get_mut(id) {
                rec.pair_offsets.clone_from(offsets);
            }
        }
        for (id, levels) in &outcome.recent_levels {
            if let Some(rec) = self.nodes.get_mut(id) {
                rec.recent_levels.clone_from(levels);
            }
        }
    }

    /// Each band's reach, as of the last closed epoch.
    pub fn bands(&self) -> &BTreeMap<u8, BandModel> {
        &self.bands
    }

    /// Whether `node` serves a penalty during `epoch` (it earns nothing and measures nobody).
    pub fn is_penalized(&self, node: &NodeId, epoch: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|r| r.is_penalized_in(epoch))
    }

    /// The node with this id.
    pub fn get(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    /// The node bound to a chip serial.
    pub fn node_for_serial(&self, serial: &[u8; 9]) -> Option<NodeId> {
        self.serials.get(serial).copied()
    }

    /// All nodes, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node has onboarded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The location trust to apply when an epoch brings no GNSS evidence.
    pub fn carried_trust_bps(&self, rec: &NodeRecord) -> u16 {
        rec.location_trust_bps
            .unwrap_or(self.rules.config().unverified_location_bps)
    }
}

fn same_content(rec: &NodeRecord, msg: &Onboard) -> bool {
    rec.owner == msg.owner
        && rec.cell == msg.cell
        && rec.antenna_gain == msg.antenna_gain
        && rec.antenna_height_dm == msg.antenna_height_dm
        && rec.bands == msg.bands
        && rec.measurer == msg.measurer
        && match (&rec.device, &msg.attestation) {
            (None, None) => true,
            (Some(d), Some(a)) => d.serial == a.serial.0 && d.maker == a.maker,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_res12_cell_radius_covers_its_boundary() {
        let cell = Cell::from_degrees(48.8530, 2.3499, 12).unwrap();
        let p = Position::of_cell(cell);
        // Average res-12 edge is 9.4 m; the circumradius of a hexagon equals its edge.
        assert!(p.radius_m > 8.0 && p.radius_m < 14.0, "{}", p.radius_m);
        for v in cell.index().boundary().iter() {
            assert!(geo::haversine_m(p.lat, p.lon, v.lat(), v.lng()) <= p.radius_m);
        }
        assert_eq!(p.min_distance_m(&p), 0.0);
        assert!((p.max_distance_m(&p) - 2.0 * p.radius_m).abs() < 1e-9);
    }

    #[test]
    fn heartbeat_log_keeps_open_epochs_and_the_latest_of_closed_ones() {
        let mark = |epoch, seq, sent_ms| HeartbeatMark {
            epoch,
            seq,
            sent_ms,
        };
        let mut log = HeartbeatLog::default();
        // Arrived out of order.
        for m in [
            mark(1, 3, 300),
            mark(1, 1, 100),
            mark(2, 5, 500),
            mark(1, 2, 200),
        ] {
            log.record(m);
        }
        assert_eq!(log.latest(), Some(&mark(2, 5, 500)));
        assert!(log.is_replay(2) && !log.is_replay(4));
        assert_eq!(
            log.neighbours(250),
            (Some(&mark(1, 2, 200)), Some(&mark(1, 3, 300)))
        );
        assert_eq!(log.neighbours(50), (None, Some(&mark(1, 1, 100))));
        // Epoch 1 closes: its numbers are folded into its latest, which still counts.
        log.close(1);
        assert_eq!(log.open, vec![mark(2, 5, 500)]);
        assert_eq!(log.closed, Some(mark(1, 3, 300)));
        assert!(log.is_replay(1) && log.is_replay(3) && log.is_replay(5));
        assert!(
            !log.is_replay(4),
            "epoch 2 may still get the number between"
        );
        assert_eq!(
            log.neighbours(400),
            (Some(&mark(1, 3, 300)), Some(&mark(2, 5, 500)))
        );
        // Bounded: beyond the cap the oldest fold too.
        for i in 0..(HeartbeatLog::MAX_OPEN as u64 + 10) {
            log.record(mark(3, 100 + i, 10_000 + i));
        }
        assert_eq!(log.open.len(), HeartbeatLog::MAX_OPEN);
        assert_eq!(log.closed.map(|c| c.seq), Some(109));
    }
}
