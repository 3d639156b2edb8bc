//! MQTT topic names: the builders, and [`parse`], which reads a topic name back into a
//! [`Topic`] so that a subscriber dispatches with an exhaustive `match`.

use alloc::format;
use alloc::string::String;

use crate::id::NodeId;

/// Agents publish proof envelopes here (QoS 1): `wisp/v1/proofs/{peer_id}`.
pub fn proofs(node: &NodeId) -> String {
    format!("wisp/v1/proofs/{node}")
}

/// The oracle subscribes to every node's proofs with this filter.
pub const PROOFS_FILTER: &str = "wisp/v1/proofs/+";

/// Several oracle processes share the proofs with an MQTT 5 shared subscription.
pub const PROOFS_SHARED_FILTER: &str = "$share/oracle/wisp/v1/proofs/+";

/// The oracle publishes signed acks for a node here: `wisp/v1/acks/{peer_id}`.
pub fn acks(node: &NodeId) -> String {
    format!("wisp/v1/acks/{node}")
}

/// The oracle publishes each epoch's signed seed here, retained.
pub const EPOCH: &str = "wisp/v1/epoch";

/// The oracle publishes its signed clock here every few seconds, retained
/// ([`crate::msg::OracleClock`]): agents set their time by it.
pub const CLOCK: &str = "wisp/v1/clock";

/// The oracle publishes part `part` of the current epoch's signed `measurer_set` here,
/// retained: `wisp/v1/measurers/{part}`.
pub fn measurers(part: usize) -> String {
    format!("wisp/v1/measurers/{part}")
}

/// Agents subscribe to every part of the measurer set with this filter.
pub const MEASURERS_FILTER: &str = "wisp/v1/measurers/+";

/// Agents publish their retained JSON status here, with last-will `offline`.
pub fn status(node: &NodeId) -> String {
    format!("wisp/v1/status/{node}")
}

/// The oracle publishes the signed reward manifest pages of an epoch here, retained.
pub fn rewards(epoch: u64) -> String {
    format!("wisp/v1/rewards/{epoch}")
}

/// A topic name (not a filter) of the wisp namespace, parsed: what [`parse`] returns, and what
/// the builder functions above make ([`Topic`]'s `Display` gives the same string back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `wisp/v1/proofs/{peer_id}`: a node's proofs ([`proofs`]).
    Proofs(NodeId),
    /// `wisp/v1/acks/{peer_id}`: the oracle's acks for a node ([`acks`]).
    Acks(NodeId),
    /// `wisp/v1/epoch`: the epoch seed ([`EPOCH`]).
    Epoch,
    /// `wisp/v1/clock`: the oracle's clock ([`CLOCK`]).
    Clock,
    /// `wisp/v1/measurers/{part}`: a part of the measurer set ([`measurers`]).
    Measurers(usize),
    /// `wisp/v1/status/{peer_id}`: a node's retained status ([`status`]).
    Status(NodeId),
    /// `wisp/v1/rewards/{epoch}`: an epoch's reward manifest ([`rewards`]).
    Rewards(u64),
}

/// Parses a topic name: `None` for a topic outside the namespace, a filter, a malformed peer
/// id, or a number not written the way the builders write it (leading zeros, a sign).
pub fn parse(topic: &str) -> Option<Topic> {
    match topic {
        EPOCH => return Some(Topic::Epoch),
        CLOCK => return Some(Topic::Clock),
        _ => {}
    }
    let rest = topic.strip_prefix("wisp/v1/")?;
    let (kind, arg) = rest.split_once('/')?;
    match kind {
        "proofs" => arg.parse().ok().map(Topic::Proofs),
        "acks" => arg.parse().ok().map(Topic::Acks),
        "status" => arg.parse().ok().map(Topic::Status),
        "measurers" => number(arg)
            .and_then(|n| usize::try_from(n).ok())
            .map(Topic::Measurers),
        "rewards" => number(arg).map(Topic::Rewards),
        _ => None,
    }
}

/// A decimal number as `format!("{n}")` writes it: digits only, no leading zero.
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

impl core::fmt::Display for Topic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Topic::Proofs(node) => f.write_str(&proofs(node)),
            Topic::Acks(node) => f.write_str(&acks(node)),
            Topic::Epoch => f.write_str(EPOCH),
            Topic::Clock => f.write_str(CLOCK),
            Topic::Measurers(part) => f.write_str(&measurers(*part)),
            Topic::Status(node) => f.write_str(&status(node)),
            Topic::Rewards(epoch) => f.write_str(&rewards(*epoch)),
        }
    }
}

/// The node a `wisp/v1/proofs/{peer_id}` topic names, if it is one.
pub fn proofs_node(topic: &str) -> Option<NodeId> {
    match parse(topic)? {
        Topic::Proofs(node) => Some(node),
        _ => None,
    }
}

/// The node a `wisp/v1/proofs/{peer_id}` (or acks/status) topic names, if it is well formed.
pub fn node_of(topic: &str) -> Option<NodeId> {
    match parse(topic)? {
        Topic::Proofs(node) | Topic::Acks(node) | Topic::Status(node) => Some(node),
        Topic::Epoch | Topic::Clock | Topic::Measurers(_) | Topic::Rewards(_) => None,
    }
}

/// Who a broker client is, for [`may_publish`] and [`may_subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The oracle (and nothing else) publishes seeds, clocks, measurer sets, acks and rewards.
    Oracle,
    /// A node logged in with its key ([`crate::login`]).
    Node(NodeId),
    /// Anyone else: a network monitor. It reads the public topics and publishes nothing.
    Anonymous,
}

/// Topics every client may subscribe to: the oracle's signed broadcasts and node statuses.
const PUBLIC: [&str; 5] = [
    EPOCH,
    CLOCK,
    MEASURERS_FILTER,
    "wisp/v1/status/+",
    "wisp/v1/rewards/+",
];

/// Whether `client` may publish on `topic` (a topic name, not a filter): a node on its own
/// proof and status topics, the oracle anywhere, nobody else anywhere.
pub fn may_publish(client: &Client, topic: &str) -> bool {
    match client {
        Client::Oracle => true,
        Client::Anonymous => false,
        Client::Node(id) => {
            let own = |prefix: &str| {
                topic
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.parse::<NodeId>().ok() == Some(*id))
            };
            own("wisp/v1/proofs/") || own("wisp/v1/status/")
        }
    }
}

/// Whether `client` may subscribe to `filter`: everyone to the public topics, a node also to its
/// own acks, the oracle to anything. A filter is allowed only if every topic it can match is
/// (`#`, `$`-topics and shared subscriptions are the oracle's alone).
pub fn may_subscribe(client: &Client, filter: &str) -> bool {
    match client {
        Client::Oracle => true,
        Client::Anonymous => PUBLIC.iter().any(|p| covers(p, filter)),
        Client::Node(id) => PUBLIC.iter().any(|p| covers(p, filter)) || filter == acks(id).as_str(),
    }
}

/// Whether the pattern (literal levels and `+`) matches every topic the filter can match.
fn covers(pattern: &str, filter: &str) -> bool {
    if filter.starts_with('$') {
        return false;
    }
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (None, None) => return true,
            (Some("+"), Some(level))
                if level != "#" && (level == "+" || !level.contains(['+', '#'])) => {}
            (Some(pl), Some(fl)) if pl == fl && !fl.contains(['+', '#']) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;
    use crate::id::NodeKey;

    #[test]
    fn topics_round_trip() {
        let id = NodeKey::from_seed(&[4; 32]).id();
        assert_eq!(node_of(&proofs(&id)), Some(id));
        assert_eq!(proofs_node(&proofs(&id)), Some(id));
        assert_eq!(proofs_node(&acks(&id)), None);
        assert_eq!(node_of(&acks(&id)), Some(id));
        assert_eq!(node_of(&status(&id)), Some(id));
        assert_eq!(rewards(12), "wisp/v1/rewards/12");
        assert_eq!(node_of("wisp/v1/proofs/nonsense"), None);
        assert_eq!(node_of("other/topic"), None);
        assert_eq!(node_of(&alloc::format!("{}/extra", proofs(&id))), None);
    }

    #[test]
    fn parse_reads_what_the_builders_write() {
        let id = NodeKey::from_seed(&[4; 32]).id();
        let cases = [
            (proofs(&id), Topic::Proofs(id)),
            (acks(&id), Topic::Acks(id)),
            (EPOCH.into(), Topic::Epoch),
            (CLOCK.into(), Topic::Clock),
            (measurers(0), Topic::Measurers(0)),
            (measurers(17), Topic::Measurers(17)),
            (status(&id), Topic::Status(id)),
            (rewards(0), Topic::Rewards(0)),
            (rewards(u64::MAX), Topic::Rewards(u64::MAX)),
        ];
        for (name, topic) in cases {
            assert_eq!(parse(&name), Some(topic), "{name}");
            assert_eq!(topic.to_string(), name);
        }
    }

    #[test]
    fn parse_refuses_what_no_builder_writes() {
        let id = NodeKey::from_seed(&[4; 32]).id();
        for t in [
            String::new(),
            "wisp/v1".into(),
            "wisp/v1/".into(),
            "wisp/v1/epoch/".into(),
            "wisp/v1/epoch/1".into(),
            "wisp/v2/epoch".into(),
            "wisp/v1/clocks".into(),
            "wisp/v1/proofs/".into(),
            "wisp/v1/proofs/nonsense".into(),
            alloc::format!("{}/extra", proofs(&id)),
            alloc::format!("wisp/v1/unknown/{id}"),
            PROOFS_FILTER.into(),
            PROOFS_SHARED_FILTER.into(),
            MEASURERS_FILTER.into(),
            "wisp/v1/measurers/".into(),
            "wisp/v1/measurers/01".into(),
            "wisp/v1/measurers/+1".into(),
            "wisp/v1/measurers/-1".into(),
            "wisp/v1/measurers/1/2".into(),
            "wisp/v1/measurers/x".into(),
            "wisp/v1/rewards/18446744073709551616".into(),
            "wisp/v1/rewards/+".into(),
        ] {
            assert_eq!(parse(&t), None, "{t}");
        }
    }

    #[test]
    fn a_node_speaks_only_for_itself_and_a_monitor_only_listens() {
        let me = NodeKey::from_seed(&[4; 32]).id();
        let other = NodeKey::from_seed(&[5; 32]).id();
        let node = Client::Node(me);
        assert!(may_publish(&node, &proofs(&me)));
        assert!(may_publish(&node, &status(&me)));
        for t in [
            proofs(&other),
            status(&other),
            acks(&me),
            EPOCH.into(),
            CLOCK.into(),
            measurers(0),
            rewards(3),
            alloc::format!("{}/x", proofs(&me)),
            "wisp/v1/proofs/+".into(),
            "wisp/v1/proofs/#".into(),
        ] {
            assert!(!may_publish(&node, &t), "{t}");
            assert!(!may_publish(&Client::Anonymous, &t), "{t}");
            assert!(may_publish(&Client::Oracle, &t), "{t}");
        }
        for f in [
            EPOCH,
            CLOCK,
            MEASURERS_FILTER,
            "wisp/v1/measurers/2",
            "wisp/v1/status/+",
            "wisp/v1/rewards/17",
            "wisp/v1/rewards/+",
        ] {
            assert!(may_subscribe(&node, f), "{f}");
            assert!(may_subscribe(&Client::Anonymous, f), "{f}");
        }
        assert!(may_subscribe(&node, &acks(&me)));
        assert!(may_subscribe(&node, &status(&other)));
        for f in [
            acks(&other),
            "wisp/v1/acks/+".into(),
            PROOFS_FILTER.into(),
            PROOFS_SHARED_FILTER.into(),
            proofs(&me),
            "#".into(),
            "wisp/#".into(),
            "wisp/v1/+/x".into(),
            "wisp/v1/measurers/#".into(),
            "wisp/v1/rewards/1/2".into(),
            "wisp/v1/rewar+/1".into(),
            "$SYS/#".into(),
            "".into(),
        ] {
            assert!(!may_subscribe(&node, &f), "{f}");
            assert!(!may_subscribe(&Client::Anonymous, &f), "{f}");
            assert!(may_subscribe(&Client::Oracle, &f), "{f}");
        }
        assert!(!may_subscribe(&Client::Anonymous, &acks(&me)));
    }
}
