//! The anchored decay scan (`lapis_ops::decay_scan`, `decay_scan_complex`) and split anchors
//! (`laplace_apply_split`) against their definitions, summed directly in f64 (O(N²), small
//! N): random lengths around the chunk (32) and level boundaries, channels, segments with a
//! rate each, forward and reverse, first moments, the tie kind, extra factors `q`, split
//! coordinates, complex rates.
//!
//! Tolerance: 2e-5 of the same sum with absolute values (`Σ |f| |q…| |u|`, and `δ`-weighted
//! for moments). The scan's error is O(32·⌈log₃₂ N⌉·ε) of that scale (≲ 200 ε = 1.2e-5
//! worst case, ≈ 1e-6 measured); the inputs' own f32 rounding is shared with the reference.

use lapis_ops::reference::{self as r, RefTensor};
use lapis_ops::{DecayScan, Tensor};
use lapis_tests::*;
use proptest::prelude::*;

fn rnd(len: usize, seed: u64) -> Vec<f64> {
    (0..len)
        .map(|i| {
            (((i as u64 + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407)))
                >> 11) as f64
                / (1u64 << 53) as f64
        })
        .collect()
}

fn up(dev: &lapis_ops::Device, shape: &[usize], x: &[f64]) -> Tensor {
    Tensor::from_slice(dev, shape, &x.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap()
}

/// Definition: for each k, the sum over the same segment on one side of k (inclusive).
/// Returns `(h, g, scale_h, scale_g)`.
#[allow(clippy::too_many_arguments)]
fn reference(
    z: &[f64],
    u: &[f64],
    c: usize,
    seg_len: usize,
    rates: &[f64],
    q: Option<&[f64]>,
    reverse: bool,
    tie: bool,
) -> [Vec<f64>; 4] {
    let n = z.len();
    let mut out = [
        vec![0.0; n * c],
        vec![0.0; n * c],
        vec![0.0; n * c],
        vec![0.0; n * c],
    ];
    for k in 0..n {
        let sk = k / seg_len;
        let range: Vec<usize> = if reverse {
            (k..n).collect()
        } else {
            (0..=k).collect()
        };
        for i in range {
            if i / seg_len != sk {
                continue;
            }
            let delta = (z[k] - z[i]).abs();
            let mut f = if tie {
                if delta == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                (-rates[sk] * delta).exp()
            };
            if let Some(q) = q {
                // factors of the elements after i up to k (in scan order)
                let (lo, hi) = if reverse { (k, i) } else { (i + 1, k + 1) };
                f *= q[lo..hi].iter().product::<f64>();
            }
            for ch in 0..c {
                let v = u[i * c + ch];
                out[0][k * c + ch] += f * v;
                out[1][k * c + ch] += delta * f * v;
                out[2][k * c + ch] += f.abs() * v.abs();
                out[3][k * c + ch] += delta * f.abs() * v.abs();
            }
        }
    }
    out
}

fn worst(got: &[f64], want: &[f64], scale: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((g, w), s)| (g - w).abs() / s.max(1e-30))
        .fold(0.0, f64::max)
}

proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn decay_scan_matches_definition(
        n_seg in prop_oneof![1usize..=40, prop::sample::select(vec![63usize, 64, 65, 1023, 1025, 1500])],
        segs in 1usize..=3,
        c in 1usize..=3,
        kind in 0u8..3,
        reverse in any::<bool>(),
        with_q in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let dev = device();
        let n = n_seg * segs;
        // sorted within each segment; kind 2 has many exact ties
        let mut z: Vec<f64> = rnd(n, seed).iter().map(|v| if kind == 2 { (v * 8.0).floor() * 0.5 } else { v * 10.0 - 5.0 }).map(|v| v as f32 as f64).collect();
        for s in 0..segs { z[s * n_seg..(s + 1) * n_seg].sort_by(f64::total_cmp); }
        let u: Vec<f64> = rnd(n * c, seed + 1).iter().map(|v| (2.0 * v - 1.0) as f32 as f64).collect();
        let rates: Vec<f64> = rnd(segs, seed + 2).iter().map(|v| (10f64.powf(4.0 * v - 2.0)) as f32 as f64).collect();
        let q: Vec<f64> = rnd(n, seed + 3).iter().map(|v| (0.9 + 0.1 * v) as f32 as f64).collect();
        let tie = kind == 1;
        let moment = !tie && seed % 2 == 0;
        let (zt, ut, rt, qt) = (up(&dev, &[n], &z), up(&dev, &[n, c], &u), up(&dev, &[segs], &rates), up(&dev, &[n], &q));
        let spec = DecayScan { rate: &rt, seg_len: n_seg, reverse, moment, tie, factors: with_q.then_some(&qt), coords_lo: None };
        let (h, g) = lapis_ops::decay_scan(&zt, &ut, &spec).unwrap();
        let [wh, wg, sh, sg] = reference(&z, &u, c, n_seg, &rates, with_q.then_some(q.as_slice()), reverse, tie);
        let eh = worst(&download(&h).data, &wh, &sh);
        prop_assert!(eh <= 2e-5, "h: {}", eh);
        if moment {
            let eg = worst(&download(&g.unwrap()).data, &wg, &sg);
            prop_assert!(eg <= 2e-5, "g: {}", eg);
        }
    }

    /// Complex rate `a + ib`, one segment, with moments: against the definition.
    #[test]
    fn decay_scan_complex_matches_definition(n in prop_oneof![1usize..=40, prop::sample::select(vec![33usize, 1025, 1500])], reverse in any::<bool>(), b in prop::sample::select(vec![0.0f64, 1.0, -7.0]), seed in 0u64..1000) {
        let dev = device();
        let mut z: Vec<f64> = rnd(n, seed).iter().map(|v| (v * 10.0) as f32 as f64).collect();
        z.sort_by(f64::total_cmp);
        let ur: Vec<f64> = rnd(n, seed + 1).iter().map(|v| (2.0 * v - 1.0) as f32 as f64).collect();
        let ui: Vec<f64> = rnd(n, seed + 2).iter().map(|v| (2.0 * v - 1.0) as f32 as f64).collect();
        let a = 0.7f64;
        let ((hr, hi), g) = lapis_ops::decay_scan_complex(&up(&dev, &[n], &z), (&up(&dev, &[n], &ur), &up(&dev, &[n], &ui)), (a as f32, b as f32), reverse, true).unwrap();
        let (gr, gi) = g.unwrap();
        let (hr, hi, gr, gi) = (download(&hr).data, download(&hi).data, download(&gr).data, download(&gi).data);
        for k in 0..n {
            let (mut w, mut s) = ([0.0f64; 4], [0.0f64; 2]);
            let range: Vec<usize> = if reverse { (k..n).collect() } else { (0..=k).collect() };
            for i in range {
                let d = (z[k] - z[i]).abs();
                let m = (-a * d).exp();
                let (fr, fi) = (m * (b * d).cos(), -m * (b * d).sin());
                let (xr, xi) = (fr * ur[i] - fi * ui[i], fr * ui[i] + fi * ur[i]);
                w[0] += xr; w[1] += xi; w[2] += d * xr; w[3] += d * xi;
                s[0] += m * (ur[i].abs() + ui[i].abs());
                s[1] += d * m * (ur[i].abs() + ui[i].abs());
            }
            for (j, (got, want, sc)) in [(hr[k], w[0], s[0]), (hi[k], w[1], s[0]), (gr[k], w[2], s[1]), (gi[k], w[3], s[1])].into_iter().enumerate() {
                prop_assert!((got - want).abs() <= 2e-5 * sc + 1e-30, "k {} part {}: got {} want {} scale {}", k, j, got, want, sc);
            }
        }
    }

    /// Split anchors (`hi + lo`) against the dense f64 operator on the unrounded anchors,
    /// anchors clustered far from 0 (where f32 alone cannot tell them apart).
    #[test]
    fn split_anchors_match_dense(n in 1usize..300, m in 1usize..300, c in 1usize..=3, lam in prop::sample::select(vec![0.01f64, 1.0, 300.0]), seed in 0u64..1000) {
        let dev = device();
        let s: Vec<f64> = rnd(n, seed).iter().map(|v| 5000.0 + 0.01 * v).collect();
        let t: Vec<f64> = rnd(m, seed + 1).iter().map(|v| 5000.0 + 0.01 * v).collect();
        let v = as_f32(&RefTensor::new(&[n, c], rnd(n * c, seed + 2).iter().map(|x| 2.0 * x - 1.0).collect()));
        let (sh, sl) = lapis_ops::split_f64(&dev, &s).unwrap();
        let (th, tl) = lapis_ops::split_f64(&dev, &t).unwrap();
        let y = lapis_ops::laplace_apply_split((&sh, &sl), (&th, &tl), &upload(&dev, &v), lam as f32).unwrap();
        let lam = lam as f32 as f64;
        let (want, _) = r::laplace_apply(&s, &t, &v, (lam, 0.0));
        let absv = RefTensor::new(&v.shape, v.data.iter().map(|x| x.abs()).collect());
        let (scale, _) = r::laplace_apply(&s, &t, &absv, (lam, 0.0));
        let e = worst(&download(&y).data, &want.data, &scale.data);
        prop_assert!(e <= 2e-5, "split anchors: {}", e);
    }
}

/// Runs `f` with the scans forced onto one path.
fn on_path<T>(path: lapis_ops::decay_scan::ScanPath, f: impl FnOnce() -> T) -> T {
    let old = lapis_ops::decay_scan::set_scan_path(path);
    let out = f();
    lapis_ops::decay_scan::set_scan_path(old);
    out
}

proptest! {
    #![proptest_config(cases(24))]

    /// The one-cube kernel (whole hierarchy of a segment in one launch) against the
    /// level-by-level launches: the same unit code on the same values in the same order,
    /// so the outputs are bitwise equal wherever both chunk alike (one segment, or segments
    /// of a multiple of 32) and both match the definition otherwise — every flag (reverse, moment, tie, factors,
    /// split coordinates, complex rates), 1 to 3 levels (segments of 1 to 40, around 1024
    /// and up to 20 000 elements), several segments and channels. The level path itself is
    /// checked against the definition above.
    #[test]
    fn one_cube_scan_is_bitwise_the_level_scan(
        n_seg in prop_oneof![1usize..=40, prop::sample::select(vec![64usize, 1023, 1025, 4096, 20_000])],
        segs in 1usize..=3,
        c in 1usize..=3,
        kind in 0u8..4,
        reverse in any::<bool>(),
        with_q in any::<bool>(),
        with_lo in any::<bool>(),
        seed in 0u64..1000,
    ) {
        use lapis_ops::decay_scan::ScanPath;
        let dev = device();
        let n = n_seg * segs;
        let f32s = |x: Vec<f64>| x.into_iter().map(|v| v as f32 as f64).collect::<Vec<_>>();
        // Sorted f64 anchors split into f32 (hi, lo) pairs: hi alone for plain coordinates.
        let mut zz: Vec<f64> = rnd(n, seed).iter().map(|v| if kind == 2 { (v * 8.0).floor() * 0.5 } else { v * 10.0 - 5.0 }).collect();
        for s in 0..segs { zz[s * n_seg..(s + 1) * n_seg].sort_by(f64::total_cmp); }
        let z = f32s(zz.clone());
        let lov: Vec<f64> = zz.iter().zip(&z).map(|(a, b)| (a - b) as f32 as f64).collect();
        let uv = f32s(rnd(n * c, seed + 1).iter().map(|v| 2.0 * v - 1.0).collect());
        let rv = f32s(rnd(segs, seed + 2).iter().map(|v| 10f64.powf(3.0 * v - 2.0)).collect());
        let qv = f32s(rnd(n, seed + 3).iter().map(|v| 0.9 + 0.1 * v).collect());
        let (u, rates, q, lo) = (up(&dev, &[n, c], &uv), up(&dev, &[segs], &rv), up(&dev, &[n], &qv), up(&dev, &[n], &lov));
        let zt = up(&dev, &[n], &z);
        let bits = |t: &Tensor| t.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        if kind == 3 {
            // Complex rate a + ib, one segment (the public complex scan), with moments.
            let zt = up(&dev, &[n_seg], &z[..n_seg]);
            let ur = up(&dev, &[n_seg, c], &rnd(n_seg * c, seed + 5).iter().map(|v| 2.0 * v - 1.0).collect::<Vec<_>>());
            let ui = up(&dev, &[n_seg, c], &rnd(n_seg * c, seed + 6).iter().map(|v| 2.0 * v - 1.0).collect::<Vec<_>>());
            let run = |path| on_path(path, || lapis_ops::decay_scan_complex(&zt, (&ur, &ui), (0.3f32, -2.0f32), reverse, true).unwrap());
            let ((ar, ai), ga) = run(ScanPath::OneCube);
            let ((br, bi), gb) = run(ScanPath::Levels);
            let ((gar, gai), (gbr, gbi)) = (ga.unwrap(), gb.unwrap());
            for (x, y) in [(&ar, &br), (&ai, &bi), (&gar, &gbr), (&gai, &gbi)] {
                prop_assert_eq!(bits(x), bits(y));
            }
        } else {
            let tie = kind == 1;
            let moment = !tie && seed % 2 == 0;
            let spec = DecayScan { rate: &rates, seg_len: n_seg, reverse, moment, tie, factors: with_q.then_some(&q), coords_lo: with_lo.then_some(&lo) };
            let (ha, ga) = on_path(ScanPath::OneCube, || lapis_ops::decay_scan(&zt, &u, &spec).unwrap());
            let (hb, gb) = on_path(ScanPath::Levels, || lapis_ops::decay_scan(&zt, &u, &spec).unwrap());
            if segs == 1 {
                prop_assert_eq!(bits(&ha), bits(&hb));
                if moment {
                    prop_assert_eq!(bits(ga.as_ref().unwrap()), bits(gb.as_ref().unwrap()));
                }
            }
            // Segments that do not start on a chunk boundary are chunked differently by
            // the two paths (per segment vs over the whole sequence): both then stay within
            // the scan's tolerance of the definition (module docs), on split coordinates too.
            if n_seg <= 4096 {
                let zz: Vec<f64> = z.iter().zip(&lov).map(|(a, b)| if with_lo { a + b } else { *a }).collect();
                let [wh, wg, sh, sg] = reference(&zz, &uv, c, n_seg, &rv, with_q.then_some(qv.as_slice()), reverse, tie);
                for (h, g) in [(&ha, &ga), (&hb, &gb)] {
                    let eh = worst(&download(h).data, &wh, &sh);
                    prop_assert!(eh <= 2e-5, "h: {}", eh);
                    if moment {
                        let eg = worst(&download(g.as_ref().unwrap()).data, &wg, &sg);
                        prop_assert!(eg <= 2e-5, "g: {}", eg);
                    }
                }
            }
        }
    }
}
