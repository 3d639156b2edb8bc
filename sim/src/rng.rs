//! Random streams derived from `(seed, node, purpose)`.
//!
//! Every random draw in a simulation comes from a stream keyed by who draws it and why. Adding a
//! node, or a new kind of draw, leaves every existing stream untouched, so a change to one part
//! of a scenario does not reshuffle the rest and a failing seed stays reproducible.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// What a stream is for. New purposes are appended; existing values never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Purpose {
    /// Node placement.
    Placement = 1,
    /// Node keys.
    Keys = 2,
    /// Per-link shadowing.
    Shadowing = 3,
    /// Per-transmission fading.
    Fading = 4,
    /// Backhaul capacity and RTT.
    Backhaul = 5,
    /// Faults: loss, churn, crashes.
    Faults = 6,
    /// Role: honest or which cheater archetype.
    Role = 7,
    /// Clock offset.
    Clock = 8,
    /// Cheaters' own choices (forged values, relay delays).
    Cheat = 9,
    /// The oracle's epoch seeds.
    Oracle = 10,
    /// Which receivers decode a beacon when more hear it than scan.
    Listen = 11,
    /// GNSS fix noise.
    Gnss = 12,
    /// Message delivery delays and loss.
    Delivery = 13,
}

/// A value drawn from `(seed, purpose, parts)` without a stream: BLAKE3 of them, as a `u64`.
/// For draws that belong to a pair or a moment rather than one node (a link's shadowing, one
/// transmission's fading), so that they do not depend on how many other draws came first.
pub fn hash_u64(seed: u64, purpose: Purpose, parts: &[u64]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("wisp-sim rng hash");
    h.update(&seed.to_le_bytes());
    h.update(&(purpose as u32).to_le_bytes());
    for p in parts {
        h.update(&p.to_le_bytes());
    }
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// A uniform draw in `[0, 1)` from a `u64` (its top 53 bits).
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw from `(seed, purpose, parts)` (Box–Muller over two hashes).
pub fn hash_normal(seed: u64, purpose: Purpose, parts: &[u64]) -> f64 {
    let a = hash_u64(seed, purpose, parts);
    let b = hash_u64(seed ^ 0x9e37_79b9_7f4a_7c15, purpose, parts);
    box_muller(unit(a), unit(b))
}

/// A standard normal from two uniforms in `[0, 1)`.
pub fn box_muller(u1: f64, u2: f64) -> f64 {
    let u1 = u1.max(f64::MIN_POSITIVE);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Draws from one stream: uniform, normal, ranges.
pub trait Draw {
    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64;
    /// Standard normal.
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        box_muller(a, b)
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

impl Draw for ChaCha20Rng {
    fn uniform(&mut self) -> f64 {
        use rand_chacha::rand_core::Rng;
        unit(self.next_u64())
    }
}

/// The stream for `(seed, node, purpose)`: ChaCha20 keyed by
/// `BLAKE3-derive-key("wisp-sim rng stream", seed || node || purpose)` (little-endian).
pub fn stream(seed: u64, node: u64, purpose: Purpose) -> ChaCha20Rng {
    let key = blake3::Hasher::new_derive_key("wisp-sim rng stream")
        .update(&seed.to_le_bytes())
        .update(&node.to_le_bytes())
        .update(&(purpose as u32).to_le_bytes())
        .finalize();
    ChaCha20Rng::from_seed(*key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::Rng;

    fn draws(seed: u64, node: u64, purpose: Purpose) -> [u64; 4] {
        let mut r = stream(seed, node, purpose);
        [r.next_u64(), r.next_u64(), r.next_u64(), r.next_u64()]
    }

    #[test]
    fn same_inputs_same_stream() {
        assert_eq!(draws(1, 2, Purpose::Fading), draws(1, 2, Purpose::Fading));
    }

    #[test]
    fn streams_are_independent() {
        let base = draws(1, 2, Purpose::Fading);
        assert_ne!(base, draws(2, 2, Purpose::Fading));
        assert_ne!(base, draws(1, 3, Purpose::Fading));
        assert_ne!(base, draws(1, 2, Purpose::Shadowing));
    }

    #[test]
    fn drawing_from_one_node_does_not_move_another() {
        // Node 7's stream is the same whether or not node 8 drew first.
        let alone = draws(9, 7, Purpose::Placement);
        let mut other = stream(9, 8, Purpose::Placement);
        for _ in 0..1000 {
            other.next_u64();
        }
        assert_eq!(draws(9, 7, Purpose::Placement), alone);
    }
}
