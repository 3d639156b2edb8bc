//! Integer shares: a pool parted in proportion to units by largest remainder, so the parts
//! sum to the pool exactly. Below both `rewards` (the pools) and `usage` (a short balance
//! parted among its sessions), which use it.

use wisp_protocol::NodeId;

/// Allocates `pool` to `units` (node, units) by largest remainder: each gets
/// `⌊pool · units / total⌋`, and what is left goes one each to the largest remainders, ties to
/// the smaller node id. Returns one amount per input, in input order; they sum to `pool`
/// exactly when any node has units, and are all 0 otherwise.
pub fn allocate(pool: u64, units: &[(NodeId, u64)]) -> Vec<u64> {
    let total: u128 = units.iter().map(|(_, u)| u128::from(*u)).sum();
    if total == 0 {
        return vec![0; units.len()];
    }
    let pool = u128::from(pool);
    let mut amounts = Vec::with_capacity(units.len());
    let mut remainders: Vec<(u128, NodeId, usize)> = Vec::new();
    let mut given = 0u128;
    for (i, (node, u)) in units.iter().enumerate() {
        // pool < 2^64 and u < 2^64, so the product fits in a u128.
        let product = pool * u128::from(*u);
        let share = product / total;
        given += share;
        amounts.push(share);
        let rem = product % total;
        if rem > 0 {
            remainders.push((rem, *node, i));
        }
    }
    // The left-over is Σ rem / total < the number of non-zero remainders.
    let left = pool - given;
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, i) in remainders
        .into_iter()
        .take(usize::try_from(left).unwrap_or(usize::MAX))
    {
        amounts[i] += 1;
    }
    amounts
        .into_iter()
        .map(|a| u64::try_from(a).unwrap_or(u64::MAX))
        .collect()
}
