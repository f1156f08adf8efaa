//! Comparison helpers used by every property test to judge a device result `got`
//! against a reference `want`.
//!
//! * [`assert_close`]: element `i` passes when both are NaN, or both are equal (this
//!   covers the same infinity), or both are finite with
//!   `|got_i − want_i| ≤ atol + rtol · |want_i|` (numpy's `isclose`). An infinity
//!   against anything else fails: its tolerance `rtol · ∞` would otherwise accept it.
//! * [`max_rel_err`]: `max_i |got_i − want_i| / max(|want_i|, floor)`; equal values
//!   (including both NaN or the same infinity) count as error 0, any other pair
//!   involving NaN or ∞ as error ∞.

/// True when `got` and `want` are the same value for comparison purposes: both NaN, or
/// equal (which covers equal infinities and `+0 == −0`).
fn same(got: f64, want: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want
}

/// Relative-error comparison helper used by every property test.
///
/// Returns `Err(message)` naming the first failing flat index, `got`, `want`, and the
/// absolute and relative error if for some `i`:
/// `!(|got_i − want_i| <= atol + rtol · |want_i|)`, treating NaN == NaN and equal
/// infinities as equal. An infinity on either side that is not matched exactly fails
/// (otherwise `rtol · |∞|` would accept any value against `±∞`). The message also counts
/// the failing elements. Slices of different lengths are an `Err` too.
pub fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "length mismatch: got {} elements, want {}",
            got.len(),
            want.len()
        ));
    }
    let passes = |g: f64, w: f64| {
        if same(g, w) {
            true
        } else if g.is_infinite() || w.is_infinite() {
            false
        } else {
            // A NaN on one side makes this comparison false, so the element fails.
            (g - w).abs() <= atol + rtol * w.abs()
        }
    };
    let failing = || {
        got.iter()
            .zip(want)
            .enumerate()
            .filter(|&(_, (&g, &w))| !passes(g, w))
            .map(|(i, _)| i)
    };
    let Some(first) = failing().next() else {
        return Ok(());
    };
    let n_fail = failing().count();
    let (g, w) = (got[first], want[first]);
    let abs = (g - w).abs();
    Err(format!(
        "mismatch at flat index {first}: got {g:?}, want {w:?}, abs err {abs:e}, \
         rel err {:e} (rtol {rtol:e}, atol {atol:e}; {n_fail} of {} elements fail)",
        abs / w.abs(),
        got.len()
    ))
}

/// Max over `i` of `|got_i − want_i| / max(|want_i|, floor)`.
///
/// Equal values (both NaN, the same infinity, or numerically equal) contribute 0; any
/// other pair involving NaN or ∞ contributes ∞. Slices of different lengths give ∞;
/// empty slices give 0.
pub fn max_rel_err(got: &[f64], want: &[f64], floor: f64) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            if same(g, w) {
                0.0
            } else if !g.is_finite() || !w.is_finite() {
                f64::INFINITY
            } else {
                (g - w).abs() / w.abs().max(floor)
            }
        })
        .fold(0.0, f64::max)
}
