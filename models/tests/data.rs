//! Tests of `lapis_models::data`: the shipped datasets, CSV and PNG files, the
//! standardizer, seeded batches and the upload of batches as tensors.
//!
//! Run with `cargo test --release -p lapis-models --test data`. The tensor test needs a
//! compute device (`Device::auto()`: CUDA, or wgpu, e.g. lavapipe) and fails with a
//! message saying so if there is none.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lapis_models::data::{
    digits, digits_split, read_csv, read_png, tabular, write_png, Batches, Dataset, Image,
    SplitMix64, Standardizer, DIGITS_TRAIN,
};
use lapis_ops::{Device, LapisError};
use proptest::prelude::*;

/// The digits CSV, read by path here rather than through the code under test.
fn digits_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/images/digits8x8.csv");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; the digits ship in the repository's data/ folder",
            path.display()
        )
    })
}

/// A fresh scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lapis-data-tests-{}", std::process::id()));
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("create a scratch dir under the temp dir");
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).expect("write a scratch file");
    p
}

/// The `Format` error's (what, msg), or a panic naming what came instead.
fn format_err(r: lapis_ops::Result<Dataset>) -> (String, String) {
    match r {
        Err(LapisError::Format { what, msg }) => (what, msg),
        Err(other) => panic!("expected a Format error, got {other:?}"),
        Ok(ds) => panic!(
            "expected a Format error, got a dataset of {} rows",
            ds.len()
        ),
    }
}

// ---- shipped datasets ---------------------------------------------------------------

#[test]
fn digits_load_with_the_counts_of_the_csv_text() {
    let text = digits_text();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap();
    assert!(header.starts_with("label,p0,"), "{header}");
    let mut counts = [0usize; 10];
    let mut rows: Vec<(u32, Vec<f32>)> = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 65);
        let label: usize = fields[0].trim().parse().unwrap();
        counts[label] += 1;
        rows.push((
            label as u32,
            fields[1..]
                .iter()
                .map(|f| f.trim().parse().unwrap())
                .collect(),
        ));
    }
    assert_eq!(rows.len(), 1797);

    let ds = digits().expect("digits load");
    assert_eq!(ds.name(), "digits");
    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.dim(), 64);
    assert_eq!(ds.shape(), &[64]);
    assert_eq!(ds.classes(), Some(10));
    assert_eq!(ds.features().len(), 1797 * 64);
    let labels = ds.labels().expect("digits have labels");
    assert!(labels.iter().all(|&l| l < 10));
    assert_eq!(
        labels.iter().copied().collect::<BTreeSet<u32>>(),
        (0..10).collect()
    );
    assert_eq!(ds.class_counts().unwrap(), counts.to_vec());
    for (i, (label, pixels)) in rows.iter().enumerate() {
        assert_eq!(labels[i], *label, "label of row {i}");
        assert_eq!(
            ds.sample(i).unwrap(),
            pixels.as_slice(),
            "pixels of row {i}"
        );
    }
    assert!(ds.sample(1797).is_none());
    assert_eq!(ds.feature_names().unwrap()[0], "p0");
    assert_eq!(ds.feature_names().unwrap()[63], "p63");

    let (train, test) = digits_split().unwrap();
    assert_eq!((train.len(), test.len()), (DIGITS_TRAIN, 297));
    assert_eq!((train.name(), test.name()), ("digits/train", "digits/test"));
    assert_eq!(train.labels().unwrap(), &labels[..1500]);
    assert_eq!(test.labels().unwrap(), &labels[1500..]);
    assert_eq!(test.sample(0).unwrap(), ds.sample(1500).unwrap());
    assert_eq!(test.classes(), Some(10));
}

#[test]
fn tabular_datasets_have_their_documented_shapes() {
    for (name, rows, dim, classes) in [
        ("iris", 150, 4, 3),
        ("wine", 178, 13, 3),
        ("breast_cancer", 569, 30, 2),
    ] {
        let ds = tabular(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.name(), name);
        assert_eq!(
            (ds.len(), ds.dim(), ds.classes()),
            (rows, dim, Some(classes))
        );
        assert!(ds.features().iter().all(|v| v.is_finite()));
        assert!(ds.feature_names().unwrap().iter().all(|n| n != "label"));
    }
    assert_eq!(
        tabular("iris").unwrap().class_counts().unwrap(),
        vec![50, 50, 50]
    );

    let err = tabular("../images/digits8x8").unwrap_err();
    assert!(matches!(err, LapisError::InvalidArgument { .. }), "{err:?}");
    let err = tabular("no_such_table").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, LapisError::Io(io) if io.kind() == std::io::ErrorKind::NotFound));
    assert!(
        msg.contains("no_such_table.csv") && msg.contains("iris"),
        "{msg}"
    );
}

// ---- CSV ----------------------------------------------------------------------------

#[test]
fn csv_reads_features_labels_and_names() {
    let dir = scratch("csv-good");
    let p = write(
        &dir,
        "small.csv",
        "x, y ,label,z\n1,2,0,3\n\n-1.5, 1e-3 ,2.0,4\n0,0,1,-0\n",
    );
    let ds = read_csv(&p, Some("label")).unwrap();
    assert_eq!(ds.name(), "small");
    assert_eq!((ds.len(), ds.dim(), ds.shape()), (3, 3, &[3usize][..]));
    assert_eq!(
        ds.features(),
        &[1.0, 2.0, 3.0, -1.5, 1e-3, 4.0, 0.0, 0.0, -0.0]
    );
    assert_eq!(ds.labels().unwrap(), &[0, 2, 1]);
    assert_eq!(ds.classes(), Some(3));
    assert_eq!(ds.feature_names().unwrap(), &["x", "y", "z"]);

    let all = read_csv(&p, None).unwrap();
    assert_eq!(all.dim(), 4);
    assert_eq!(all.labels(), None);
    assert_eq!(all.sample(1).unwrap(), &[-1.5, 1e-3, 2.0, 4.0]);
}

#[test]
fn csv_errors_are_typed_and_name_file_line_and_column() {
    let dir = scratch("csv-bad");

    let p = write(&dir, "nan.csv", "a,b,label\n1,2,0\n3,x,1\n");
    let (what, msg) = format_err(read_csv(&p, Some("label")));
    assert!(what.contains("nan.csv"), "{what}");
    assert!(
        msg.contains("line 3") && msg.contains("column 2") && msg.contains("`b`"),
        "{msg}"
    );
    assert!(msg.contains("`x` is not a number"), "{msg}");

    let p = write(&dir, "inf.csv", "a,b\n1,inf\n");
    let (_, msg) = format_err(read_csv(&p, None));
    assert!(
        msg.contains("line 2") && msg.contains("column 2") && msg.contains("finite"),
        "{msg}"
    );

    let p = write(&dir, "empty_field.csv", "a,b\n1,\n");
    let (_, msg) = format_err(read_csv(&p, None));
    assert!(msg.contains("line 2") && msg.contains("column 2"), "{msg}");

    let p = write(&dir, "ragged.csv", "a,b,label\n1,2,0\n3,1\n");
    let (what, msg) = format_err(read_csv(&p, Some("label")));
    assert!(what.contains("ragged.csv"), "{what}");
    assert!(
        msg.contains("line 3") && msg.contains("2 fields") && msg.contains("3 columns"),
        "{msg}"
    );

    let p = write(&dir, "long.csv", "a,b\n1,2\n3,4,5\n");
    let (_, msg) = format_err(read_csv(&p, None));
    assert!(msg.contains("line 3") && msg.contains("3 fields"), "{msg}");

    let p = write(&dir, "nolabel.csv", "a,b,class\n1,2,0\n");
    let (what, msg) = format_err(read_csv(&p, Some("label")));
    assert!(what.contains("nolabel.csv"), "{what}");
    assert!(
        msg.contains("line 1") && msg.contains("`label`") && msg.contains("class"),
        "{msg}"
    );

    let p = write(&dir, "neg.csv", "a,label\n1,0\n2,-1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(
        msg.contains("line 3") && msg.contains("column 2") && msg.contains("negative"),
        "{msg}"
    );

    let p = write(&dir, "frac.csv", "label,a\n1.5,1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(
        msg.contains("line 2") && msg.contains("column 1") && msg.contains("not an integer"),
        "{msg}"
    );

    let p = write(&dir, "word.csv", "label,a\ncat,1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(msg.contains("line 2") && msg.contains("`cat`"), "{msg}");

    let p = write(&dir, "huge.csv", "label,a\n99999999999,1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(msg.contains("too large"), "{msg}");

    let p = write(&dir, "dup.csv", "label,a,label\n1,1,1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(msg.contains("more than once"), "{msg}");

    let p = write(&dir, "only_label.csv", "label\n1\n");
    let (_, msg) = format_err(read_csv(&p, Some("label")));
    assert!(msg.contains("no feature columns"), "{msg}");

    let p = write(&dir, "empty.csv", "");
    let (_, msg) = format_err(read_csv(&p, None));
    assert!(msg.contains("empty"), "{msg}");

    let p = write(&dir, "header_only.csv", "a,b\n");
    let (_, msg) = format_err(read_csv(&p, None));
    assert!(msg.contains("no data rows"), "{msg}");

    let p = dir.join("bytes.csv");
    std::fs::write(&p, b"a,b\n1,\xff\xfe\n").unwrap();
    let (what, _) = format_err(read_csv(&p, None));
    assert!(what.contains("bytes.csv"), "{what}");

    let missing = dir.join("missing.csv");
    match read_csv(&missing, None) {
        Err(LapisError::Io(io)) => {
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
            assert!(io.to_string().contains("missing.csv"), "{io}");
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

// ---- PNG ----------------------------------------------------------------------------

#[test]
fn png_round_trips_rgb_and_grey() {
    let dir = scratch("png");
    let (w, h) = (7usize, 5usize);
    // RGB: values on the k/255 grid survive exactly; others within half a step.
    let rgb: Vec<f32> = (0..w * h * 3)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect();
    let img = Image::new(w, h, 3, rgb.clone()).unwrap();
    let p = dir.join("rgb.png");
    write_png(&p, &img).unwrap();
    let back = read_png(&p).unwrap();
    assert_eq!((back.width, back.height, back.channels), (w, h, 3));
    assert_eq!(back.data, rgb);

    let grey: Vec<f32> = (0..w * h).map(|i| (i as f32 * 0.0371).fract()).collect();
    let p = dir.join("grey.png");
    write_png(&p, &Image::new(w, h, 1, grey.clone()).unwrap()).unwrap();
    let back = read_png(&p).unwrap();
    assert_eq!((back.width, back.height, back.channels), (w, h, 1));
    for (a, b) in back.data.iter().zip(&grey) {
        assert!((a - b).abs() <= 0.5 / 255.0 + 1e-6, "{a} vs {b}");
        assert_eq!(*a, (b * 255.0).round() / 255.0);
    }

    // Out-of-range and NaN values are clamped.
    let p = dir.join("clamp.png");
    write_png(&p, &Image::new(3, 1, 1, vec![-1.0, 2.0, f32::NAN]).unwrap()).unwrap();
    assert_eq!(read_png(&p).unwrap().data, vec![0.0, 1.0, 0.0]);

    // RGBA: alpha is dropped on reading.
    let rgba: Vec<f32> = (0..w * h * 4).map(|i| (i % 256) as f32 / 255.0).collect();
    let p = dir.join("rgba.png");
    write_png(&p, &Image::new(w, h, 4, rgba.clone()).unwrap()).unwrap();
    let back = read_png(&p).unwrap();
    assert_eq!(back.channels, 3);
    let want: Vec<f32> = rgba
        .chunks_exact(4)
        .flat_map(|px| px[..3].to_vec())
        .collect();
    assert_eq!(back.data, want);
}

#[test]
fn image_layouts_grid_and_errors() {
    let hwc: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32).collect();
    let img = Image::new(3, 2, 3, hwc.clone()).unwrap();
    let chw = img.to_chw();
    // channel c, row y, column x
    for c in 0..3 {
        for y in 0..2 {
            for x in 0..3 {
                assert_eq!(chw[(c * 2 + y) * 3 + x], hwc[(y * 3 + x) * 3 + c]);
            }
        }
    }
    assert_eq!(Image::from_chw(3, 2, 3, &chw).unwrap(), img);
    assert_eq!(img.pixel(2, 1).unwrap(), &hwc[15..18]);
    assert!(img.pixel(3, 0).is_none());

    let a = Image::new(2, 2, 1, vec![1.0; 4]).unwrap();
    let g = Image::grid(&[a.clone(), a.clone(), a.clone()], 2, 1, 0.5).unwrap();
    assert_eq!((g.width, g.height, g.channels), (2 * 2 + 3, 2 * 2 + 3, 1));
    assert_eq!(g.pixel(0, 0).unwrap(), &[0.5]);
    assert_eq!(g.pixel(1, 1).unwrap(), &[1.0]);
    assert_eq!(g.pixel(4, 4).unwrap(), &[0.5]); // the empty fourth cell
    assert_eq!(g.pixel(1, 4).unwrap(), &[1.0]);

    assert!(matches!(
        Image::new(2, 2, 3, vec![0.0; 5]),
        Err(LapisError::InvalidArgument { .. })
    ));
    assert!(Image::new(0, 2, 1, vec![]).is_err());
    assert!(Image::new(1, 1, 5, vec![0.0; 5]).is_err());
    assert!(Image::grid(&[], 2, 0, 0.0).is_err());
    let rgb = Image::new(2, 2, 3, vec![0.0; 12]).unwrap();
    assert!(Image::grid(&[a.clone(), rgb], 2, 0, 0.0).is_err());

    let dir = scratch("png-bad");
    let bad = Image {
        width: 4,
        height: 4,
        channels: 1,
        data: vec![0.0; 3],
    };
    assert!(matches!(
        write_png(dir.join("bad.png"), &bad),
        Err(LapisError::InvalidArgument { .. })
    ));
    assert!(bad.to_chw().len() == 3);

    let p = write(&dir, "not.png", "this is not a PNG");
    match read_png(&p) {
        Err(LapisError::Format { what, .. }) => assert!(what.contains("not.png"), "{what}"),
        other => panic!("expected a Format error, got {other:?}"),
    }
    match read_png(dir.join("missing.png")) {
        Err(LapisError::Io(io)) => assert!(io.to_string().contains("missing.png"), "{io}"),
        other => panic!("expected an Io error, got {other:?}"),
    }
    match write_png(dir.join("no/such/dir/x.png"), &a) {
        Err(LapisError::Io(io)) => assert!(io.to_string().contains("x.png"), "{io}"),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

// ---- Standardizer -------------------------------------------------------------------

#[test]
fn standardizer_centres_and_scales_and_keeps_constant_columns_finite() {
    let (train, _) = digits_split().unwrap();
    let (n, d) = (train.len(), train.dim());
    let raw = train.features().to_vec();
    let constant: Vec<bool> = (0..d)
        .map(|j| (0..n).all(|i| raw[i * d + j] == raw[j]))
        .collect();
    assert!(
        constant.iter().any(|&c| c),
        "the digits have constant corner pixels"
    );
    assert!(constant.iter().any(|&c| !c));

    let st = Standardizer::fit(&raw, d).unwrap();
    assert_eq!((st.dim(), st.mean().len(), st.std().len()), (d, d, d));
    let mut x = raw.clone();
    st.apply(&mut x).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    for j in 0..d {
        let col: Vec<f64> = (0..n).map(|i| x[i * d + j] as f64).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        if constant[j] {
            assert_eq!(st.std()[j], 1.0);
            assert!(col.iter().all(|&v| v == 0.0), "constant column {j}");
        } else {
            assert!(mean.abs() < 1e-5, "column {j}: mean {mean}");
            assert!(
                (var.sqrt() - 1.0).abs() < 1e-4,
                "column {j}: std {}",
                var.sqrt()
            );
        }
    }
    st.inverse(&mut x).unwrap();
    for (a, b) in x.iter().zip(&raw) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    // Population std: [1, 3] has mean 2, std 1.
    let st = Standardizer::fit(&[1.0, 10.0, 3.0, 10.0], 2).unwrap();
    assert_eq!(st.mean(), &[2.0, 10.0]);
    assert_eq!(st.std(), &[1.0, 1.0]);

    assert!(Standardizer::fit(&raw, 0).is_err());
    assert!(Standardizer::fit(&[1.0, 2.0, 3.0], 2).is_err());
    assert!(Standardizer::fit(&[], 2).is_err());
    assert!(Standardizer::fit(&[1.0, f32::NAN], 1).is_err());
    assert!(st.apply(&mut [1.0, 2.0, 3.0]).is_err());
    assert!(Standardizer::from_parts(vec![0.0], vec![0.0]).is_err());
    assert!(Standardizer::from_parts(vec![0.0, 1.0], vec![1.0]).is_err());
    let st2 = Standardizer::from_parts(st.mean().to_vec(), st.std().to_vec()).unwrap();
    assert_eq!(st2, st);
}

// ---- Batches ------------------------------------------------------------------------

fn is_permutation(batches: &[Vec<usize>], n: usize) -> bool {
    let mut all: Vec<usize> = batches.concat();
    all.sort_unstable();
    all == (0..n).collect::<Vec<_>>()
}

#[test]
fn splitmix64_matches_the_reference_and_is_uniform() {
    // The reference splitmix64.c from seed 1234567.
    let mut r = SplitMix64::new(1234567);
    let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
    assert_eq!(
        got,
        [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821
        ]
    );

    let mut r = SplitMix64::new(7);
    let mut counts = [0usize; 10];
    for _ in 0..100_000 {
        counts[r.below(10) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (9_500..10_500).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(r.below(0), 0);
    assert_eq!(r.below(1), 0);
    let f = r.next_f64();
    assert!((0.0..1.0).contains(&f));

    // All 6 orders of 3 items, about equally often.
    let mut seen = std::collections::HashMap::new();
    for _ in 0..60_000 {
        let mut v = [0, 1, 2];
        r.shuffle(&mut v);
        *seen.entry(v).or_insert(0usize) += 1;
    }
    assert_eq!(seen.len(), 6);
    assert!(
        seen.values().all(|&c| (9_400..10_600).contains(&c)),
        "{seen:?}"
    );
}

#[test]
fn batches_are_seeded_permutations_and_resume_exactly() {
    let b = Batches::new(103, 10, 42).unwrap();
    assert_eq!(b.steps_per_epoch(), 11);
    let e0 = b.epoch(0);
    let e1 = b.epoch(1);
    assert_eq!(e0.len(), 11);
    assert!(e0[..10].iter().all(|x| x.len() == 10));
    assert_eq!(e0[10].len(), 3);
    assert!(is_permutation(&e0, 103) && is_permutation(&e1, 103));
    assert_ne!(e0, e1, "different epochs must be shuffled differently");
    assert_ne!(
        e0.concat(),
        (0..103).collect::<Vec<_>>(),
        "epoch 0 is shuffled"
    );
    assert_eq!(
        Batches::new(103, 10, 42).unwrap().epoch(1),
        e1,
        "same seed, same batches"
    );
    assert_ne!(
        Batches::new(103, 10, 43).unwrap().epoch(0),
        e0,
        "another seed"
    );
    assert_eq!(b.epoch(5), b.epoch(5));

    for step in 0..40u64 {
        let (epoch, rows) = b.at_step(step);
        assert_eq!(epoch, step / 11);
        assert_eq!(rows, b.epoch(epoch)[(step % 11) as usize]);
    }
    // A run resumed at step 17 sees what an uninterrupted run sees from step 17.
    let resumed: Vec<_> = b.from_step(17).take(30).collect();
    let full: Vec<_> = b.from_step(0).skip(17).take(30).collect();
    assert_eq!(resumed, full);
    for s in &resumed {
        assert_eq!((s.epoch, s.rows.clone()), b.at_step(s.step));
    }

    let d = Batches::new(103, 10, 42).unwrap().drop_last(true).unwrap();
    assert!(d.drops_last());
    assert_eq!(d.steps_per_epoch(), 10);
    let e = d.epoch(0);
    assert!(e.iter().all(|x| x.len() == 10));
    assert_eq!(e.concat(), b.permutation(0)[..100].to_vec());
    assert_eq!(d.at_step(10).0, 1);

    assert!(Batches::new(0, 10, 0).is_err());
    assert!(Batches::new(10, 0, 0).is_err());
    assert!(Batches::new(5, 10, 0).unwrap().drop_last(true).is_err());
    assert_eq!(Batches::new(5, 10, 0).unwrap().epoch(0).len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn batches_properties(n in 1usize..300, batch in 1usize..80, seed in any::<u64>(),
                          drop in any::<bool>(), epoch in 0u64..1000) {
        let b = Batches::new(n, batch, seed).unwrap();
        let b = if drop && batch <= n { b.drop_last(true).unwrap() } else { b };
        let batches = b.epoch(epoch);
        let spe = b.steps_per_epoch();
        prop_assert!(spe >= 1);
        prop_assert_eq!(batches.len(), spe);
        let perm = b.permutation(epoch);
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        prop_assert_eq!(batches.concat(), perm[..batches.concat().len()].to_vec());
        for (k, rows) in batches.iter().enumerate() {
            if b.drops_last() || k + 1 < spe {
                prop_assert_eq!(rows.len(), batch);
            } else {
                prop_assert_eq!(rows.len(), n - k * batch);
            }
            let step = epoch * spe as u64 + k as u64;
            prop_assert_eq!(b.at_step(step), (epoch, rows.clone()));
        }
        if !b.drops_last() {
            prop_assert!(is_permutation(&batches, n));
        }
        prop_assert_eq!(Batches::new(n, batch, seed).unwrap().permutation(epoch), perm);
    }
}

// ---- Dataset ------------------------------------------------------------------------

#[test]
fn dataset_subsets_splits_and_checks() {
    let ds = Dataset::new("toy", &[2], vec![0., 1., 2., 3., 4., 5.])
        .unwrap()
        .with_labels(vec![1, 0, 1], 2)
        .unwrap()
        .with_targets(vec![10., 11., 12.], 1)
        .unwrap();
    assert_eq!((ds.len(), ds.dim(), ds.is_empty()), (3, 2, false));
    let s = ds.subset(&[2, 0, 2]).unwrap();
    assert_eq!(s.features(), &[4., 5., 0., 1., 4., 5.]);
    assert_eq!(s.labels().unwrap(), &[1, 1, 1]);
    assert_eq!(s.targets().unwrap(), &[12., 10., 12.]);
    assert_eq!(s.classes(), Some(2));
    let (a, b) = ds.split_at(1).unwrap();
    assert_eq!((a.len(), b.len()), (1, 2));
    assert_eq!(b.features(), &[2., 3., 4., 5.]);
    let (all, none) = ds.split_at(3).unwrap();
    assert_eq!(all, ds);
    assert!(none.is_empty());
    assert!(ds.split_at(4).is_err());
    assert!(ds.subset(&[3]).is_err());
    assert_eq!(ds.subset(&[]).unwrap().len(), 0);

    assert!(Dataset::new("bad", &[2], vec![0.0; 3]).is_err());
    assert!(Dataset::new("bad", &[0], vec![]).is_err());
    assert!(Dataset::new("bad", &[], vec![]).is_err());
    let base = Dataset::new("x", &[1], vec![0.0, 1.0]).unwrap();
    assert!(base.clone().with_labels(vec![0, 2], 2).is_err());
    assert!(base.clone().with_labels(vec![0], 2).is_err());
    assert!(base.clone().with_targets(vec![0.0; 3], 1).is_err());
    assert!(base.clone().reshape(&[2]).is_err());
    assert_eq!(
        Dataset::new("img", &[4], vec![0.0; 8])
            .unwrap()
            .reshape(&[1, 2, 2])
            .unwrap()
            .shape(),
        &[1, 2, 2]
    );
}

// ---- tensors ------------------------------------------------------------------------

#[test]
fn tensors_download_equal_to_the_host_values() {
    let dev = Device::auto().unwrap_or_else(|e| {
        panic!(
            "no compute device for the tensor tests: {e}. Install a Vulkan driver \
             (e.g. `apt-get install mesa-vulkan-drivers` for lavapipe) or CUDA"
        )
    });
    let ds = digits().unwrap();
    let rows = [5usize, 0, 1796, 5, 1234];

    let x = ds.features_tensor(&dev, &rows).unwrap();
    assert_eq!(x.shape(), &[5, 64]);
    let want: Vec<f32> = rows
        .iter()
        .flat_map(|&r| ds.sample(r).unwrap().to_vec())
        .collect();
    assert_eq!(x.to_vec::<f32>().unwrap(), want);

    let img = ds.clone().reshape(&[1, 8, 8]).unwrap();
    let x4 = img.features_tensor(&dev, &rows).unwrap();
    assert_eq!(x4.shape(), &[5, 1, 8, 8]);
    assert_eq!(x4.to_vec::<f32>().unwrap(), want);

    let labels = ds.labels().unwrap();
    let y = ds.labels_tensor(&dev, &rows).unwrap();
    assert_eq!(y.shape(), &[5]);
    let want_y: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
    assert_eq!(y.to_vec::<u32>().unwrap(), want_y);

    let oh = ds.one_hot(&dev, &rows).unwrap();
    assert_eq!(oh.shape(), &[5, 10]);
    let got = oh.to_vec::<f32>().unwrap();
    for (b, &r) in rows.iter().enumerate() {
        for c in 0..10 {
            let want = if c == labels[r] as usize { 1.0 } else { 0.0 };
            assert_eq!(got[b * 10 + c], want, "one_hot[{b}, {c}]");
        }
    }

    let reg = Dataset::new("reg", &[1], vec![1.0, 2.0, 3.0])
        .unwrap()
        .with_targets(vec![0.5, -0.5, 1.5, -1.5, 2.5, -2.5], 2)
        .unwrap();
    let t = reg.targets_tensor(&dev, &[2, 0]).unwrap();
    assert_eq!(t.shape(), &[2, 2]);
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![2.5, -2.5, 0.5, -0.5]);

    for err in [
        ds.features_tensor(&dev, &[]).unwrap_err(),
        ds.features_tensor(&dev, &[1797]).unwrap_err(),
        ds.one_hot(&dev, &[0, 9999]).unwrap_err(),
        reg.labels_tensor(&dev, &[0]).unwrap_err(),
        reg.one_hot(&dev, &[0]).unwrap_err(),
        ds.targets_tensor(&dev, &[0]).unwrap_err(),
    ] {
        assert!(matches!(err, LapisError::InvalidArgument { .. }), "{err:?}");
    }
}

/// The stratified split keeps each class's share within one row, covers every row exactly
/// once, has exactly `n_train` train rows, is a function of the seed, and refuses bad input.
#[test]
fn stratified_split_keeps_class_proportions() {
    use lapis_models::data::{digits, stratified_split};
    let d = digits().unwrap();
    let labels = d.labels().unwrap();
    let (tr, te) = stratified_split(labels, 10, 1200, 0).unwrap();
    assert_eq!((tr.len(), te.len()), (1200, 597));
    let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
    for c in 0..10u32 {
        let n_c = labels.iter().filter(|&&l| l == c).count() as f64;
        let t_c = tr.iter().filter(|&&i| labels[i] == c).count() as f64;
        let share = 1200.0 * n_c / labels.len() as f64;
        assert!(
            (t_c - share).abs() < 1.0 + 1e-9,
            "class {c}: {t_c} vs {share}"
        );
    }
    assert_eq!(stratified_split(labels, 10, 1200, 0).unwrap().0, tr);
    assert_ne!(stratified_split(labels, 10, 1200, 1).unwrap().0, tr);
    assert!(stratified_split(labels, 10, 5000, 0).is_err());
    assert!(stratified_split(&[0, 3], 2, 1, 0).is_err());
}
