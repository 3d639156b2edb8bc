//! MQTT topic names.

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

/// The node a `wisp/v1/proofs/{peer_id}` topic names, if it is one.
pub fn proofs_node(topic: &str) -> Option<NodeId> {
    topic.strip_prefix("wisp/v1/proofs/")?.parse().ok()
}

/// The node a `wisp/v1/proofs/{peer_id}` (or acks/status) topic names, if it is well formed.
pub fn node_of(topic: &str) -> Option<NodeId> {
    let rest = topic
        .strip_prefix("wisp/v1/proofs/")
        .or_else(|| topic.strip_prefix("wisp/v1/acks/"))
        .or_else(|| topic.strip_prefix("wisp/v1/status/"))?;
    rest.parse().ok()
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
