//! Stratified train/test splits: each class is shuffled with its own seeded stream and cut
//! at the same fraction, so both sides keep the class proportions (up to rounding).
//!
//! For `n_train` rows in all, class `c` with `n_c` rows gives `round(n_train · n_c / n)`
//! rows to the train side; the rounding remainder (at most one row per class) is settled
//! on the classes with the largest fractional parts, so the train side has exactly
//! `n_train` rows. Both index lists come back sorted.

use lapis_ops::{LapisError, Result};

use super::SplitMix64;

/// Splits rows with `labels` (classes `0..classes`) into `n_train` train rows and the rest,
/// stratified by class, seeded by `seed`. Errors when `n_train > labels.len()` or a label is
/// `≥ classes`.
pub fn stratified_split(
    labels: &[u32],
    classes: usize,
    n_train: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = labels.len();
    if n_train > n {
        return Err(LapisError::invalid(
            "stratified_split",
            "n_train",
            n_train,
            format!("must be at most the number of rows, {n}"),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(LapisError::invalid(
            "stratified_split",
            "labels",
            bad,
            format!("must be below classes = {classes}"),
        ));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    // Per-class quota: floor of the exact share, then the remainder to the largest fractions.
    let exact: Vec<f64> = by_class
        .iter()
        .map(|rows| n_train as f64 * rows.len() as f64 / n.max(1) as f64)
        .collect();
    let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n_train - quota.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &c in &order {
        if left == 0 {
            break;
        }
        if quota[c] < by_class[c].len() {
            quota[c] += 1;
            left -= 1;
        }
    }
    let (mut train, mut test) = (Vec::with_capacity(n_train), Vec::with_capacity(n - n_train));
    for (c, rows) in by_class.iter_mut().enumerate() {
        SplitMix64::stream(seed, c as u64).shuffle(rows);
        train.extend_from_slice(&rows[..quota[c]]);
        test.extend_from_slice(&rows[quota[c]..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}
