//! Reference stable argsort with lapis's NaN policy.

use std::cmp::Ordering;

/// lapis's key order: numbers ascending with −0 before +0 (IEEE total order), every NaN
/// after +∞ and equal to the other NaNs (so they keep input order).
pub fn key_order(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.total_cmp(&b),
    }
}

/// Stable ascending argsort: `perm` with `keys[perm[0]] ≤ keys[perm[1]] ≤ …`, ties in
/// input order (std's `sort_by` is stable).
pub fn argsort(keys: &[f64]) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..keys.len() as u32).collect();
    perm.sort_by(|&i, &j| key_order(keys[i as usize], keys[j as usize]));
    perm
}
