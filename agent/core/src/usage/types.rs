//! The usage state's vocabulary: clients, byte counts and the decisions about them.

use wisp_protocol::{Reason, SubscriberId};

/// A client as this state knows it: the subscriber's key, which is its client's libp2p
/// identity (the driver maps the router's per-address counters to it).
pub type ClientRef = SubscriberId;

/// Byte counts in both directions, seen from the subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes delivered to the subscriber.
    pub down: u64,
    /// Bytes the subscriber sent.
    pub up: u64,
}

impl Counts {
    pub(super) fn saturating_sub(self, o: Counts) -> Counts {
        Counts {
            down: self.down.saturating_sub(o.down),
            up: self.up.saturating_sub(o.up),
        }
    }

    pub(super) fn total(self) -> u64 {
        self.down.saturating_add(self.up)
    }
}

/// Why a client is to be blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockWhy {
    /// Its uncovered usage exceeded `grace_bytes`.
    Uncovered {
        /// The uncovered bytes, both directions.
        bytes: u64,
    },
    /// Its uncovered usage stayed above `slack_bytes` for `grace_ms`: it stopped signing, or
    /// signs less than it uses.
    Unsigned {
        /// The uncovered bytes, both directions.
        bytes: u64,
        /// Since when (the last time its usage was covered).
        since_ms: u64,
    },
    /// One of its receipts was refused, with this reason; its session ended.
    Refused(Reason),
}

impl BlockWhy {
    /// A short fixed name, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            BlockWhy::Uncovered { .. } => "uncovered",
            BlockWhy::Unsigned { .. } => "unsigned",
            BlockWhy::Refused(_) => "refused",
        }
    }
}

/// What to tell the enforcement hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve the client again (it was blocked, or it is forgotten while blocked).
    Serve(ClientRef),
    /// Stop serving the client.
    Block(ClientRef, BlockWhy),
}
