//! Backhaul: each node's capacity and round-trip time, and bandwidth tests that produce
//! receipts signed like real ones (measurer signs, prover co-signs).
//!
//! Who measures whom is the rendezvous assignment of `docs/PROTOCOL.md` §6.3, computed with
//! the oracle's own [`wisp_oracle_core::MeasurerPool`] (which calls
//! `wisp_protocol::schedule::assign_measurers`): the simulator decides nothing about it.

use wisp_protocol::envelope::Envelope;
use wisp_protocol::msg::{BandwidthReceipt, Direction, Measurement, Outcome};
use wisp_protocol::{NodeId, NodeKey};

use crate::rng::{self, Draw, Purpose};
use crate::scenario::BackhaulCfg;

/// Test length, ms (the agent's default bandwidth test).
pub const TEST_MS: u32 = 10_000;

/// A node's internet link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Downlink capacity, bit/s.
    pub down_bps: f64,
    /// Uplink capacity, bit/s.
    pub up_bps: f64,
    /// Access round-trip time, µs.
    pub rtt_us: f64,
}

/// Draws node `node`'s link from its own stream: log-normal capacities and RTT.
pub fn draw_link(cfg: &BackhaulCfg, seed: u64, node: u32) -> Link {
    let mut r = rng::stream(seed, u64::from(node), Purpose::Backhaul);
    let down = cfg.down_median_mbps * 1e6 * (cfg.capacity_sigma * r.normal()).exp();
    let up = down * cfg.up_ratio * (0.3 * r.normal()).exp();
    let rtt = cfg.rtt_median_ms * 1000.0 * (0.5 * r.normal()).exp();
    Link {
        down_bps: down.clamp(1e6, 9e9),
        up_bps: up.clamp(5e5, 9e9),
        rtt_us: rtt.clamp(1_000.0, 500_000.0),
    }
}

/// What a test measures between a prover and a measurer `distance_m` apart: the bottleneck
/// capacity with some noise, RTTs from both access links plus propagation in fibre.
pub fn measure(
    prover: &Link,
    measurer: &Link,
    direction: Direction,
    distance_m: f64,
    noise: f64,
) -> Measurement {
    let cap = match direction {
        Direction::Down => prover.down_bps.min(measurer.up_bps),
        Direction::Up => prover.up_bps.min(measurer.down_bps),
    };
    let median = (cap * (0.9 + 0.05 * noise.clamp(-2.0, 2.0))).max(1.0);
    let rtt_idle =
        prover.rtt_us + measurer.rtt_us + 2.0 * distance_m / wisp_protocol::physics::FIBRE_M_PER_US;
    // Bytes over the whole test, with a slower first second of TCP warm-up.
    let bytes = median / 8.0 * (f64::from(TEST_MS) / 1000.0 - 0.5);
    to_measurement(median, bytes, rtt_idle)
}

/// A measurement with consistent fields.
pub fn to_measurement(median_bps: f64, bytes: f64, rtt_idle_us: f64) -> Measurement {
    // All values are positive and far below the integer limits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let m = Measurement {
        bytes: bytes as u64,
        duration_ms: TEST_MS,
        median_bps: median_bps as u64,
        p10_bps: (median_bps * 0.7) as u64,
        rtt_idle_us: rtt_idle_us as u32,
        rtt_loaded_us: (rtt_idle_us * 1.6) as u32,
    };
    m
}

/// `m` with its throughput figures (and the bytes that carried them) scaled by `factor`.
pub fn scaled(m: &Measurement, factor: f64) -> Measurement {
    to_measurement(
        m.median_bps as f64 * factor,
        m.bytes as f64 * factor,
        f64::from(m.rtt_idle_us),
    )
}

/// A receipt signed by `measurer` and co-signed by `prover` (both keys are needed: in the
/// network the prover co-signs after checking the figures).
pub fn receipt(
    epoch: u64,
    test_id: [u8; 16],
    prover: &NodeKey,
    measurer: &NodeKey,
    direction: Direction,
    m: Measurement,
) -> Vec<u8> {
    let r = BandwidthReceipt {
        test_id: test_id.into(),
        epoch,
        prover: prover.id(),
        measurer: measurer.id(),
        direction,
        outcome: Outcome::Measured(m),
    };
    let mut env = Envelope::sign(measurer, &r);
    env.cosign(prover);
    env.to_bytes()
}

/// A test id for `(epoch, prover, measurer, direction)`.
pub fn test_id(epoch: u64, prover: &NodeId, measurer: &NodeId, direction: Direction) -> [u8; 16] {
    let h = blake3::Hasher::new_derive_key("wisp-sim test id")
        .update(&epoch.to_le_bytes())
        .update(prover.as_bytes())
        .update(measurer.as_bytes())
        .update(&[u8::from(direction == Direction::Up)])
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.as_bytes()[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::envelope;

    #[test]
    fn receipts_open_with_both_signatures() {
        let p = NodeKey::from_seed(&[1; 32]);
        let m = NodeKey::from_seed(&[2; 32]);
        let link = draw_link(&BackhaulCfg::default(), 1, 1);
        let meas = measure(&link, &link, Direction::Down, 1000.0, 0.0);
        let bytes = receipt(3, [0; 16], &p, &m, Direction::Down, meas);
        let opened = envelope::open::<BandwidthReceipt>(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.signer, m.id());
        assert_eq!(opened.cosigners, vec![p.id()]);
        assert!(meas.median_bps * 1000 <= meas.bytes * 8 * 1000);
    }
}
