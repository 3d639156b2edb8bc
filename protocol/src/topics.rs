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
}
