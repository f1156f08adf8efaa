//! PNG figures (`lapis_models::plot`): each kind writes a PNG that decodes to the expected
//! size, holds more than one colour, and has its text drawn with the embedded font (the
//! same figure with and without a title/caption differs where the text goes); empty and
//! inconsistent input is a typed error. Outputs are kept under
//! `$TMPDIR/lapis-plot-tests/` for a look.

use std::collections::HashSet;
use std::path::PathBuf;

use image::RgbImage;
use lapis_models::plot::{
    image_grid, image_grid_size, Colormap, Heatmap, ImageCell, LegendPosition, LinePlot, Rgb,
    Series, SeriesStyle, NON_FINITE_COLOR,
};
use lapis_ops::LapisError;

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("lapis-plot-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Decodes a written PNG, checking it is non-empty on disk.
fn load(path: &PathBuf) -> RgbImage {
    let len = std::fs::metadata(path).unwrap().len();
    assert!(len > 0, "{} is empty", path.display());
    image::open(path).unwrap().to_rgb8()
}

fn colours(img: &RgbImage) -> usize {
    img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
}

/// Pixels in the rectangle `[x0, x1) × [y0, y1)` that differ between `a` and `b`.
fn diff_in(a: &RgbImage, b: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| a.get_pixel(x, y) != b.get_pixel(x, y))
        .count()
}

/// Dark (text-like) pixels in the rectangle.
fn dark_in(a: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| a.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count()
}

fn has_colour(img: &RgbImage, c: Rgb) -> bool {
    img.pixels().any(|p| p.0 == [c.0, c.1, c.2])
}

// ----------------------------------------------------------------------------- LinePlot

fn timing_plot(title: &str) -> LinePlot {
    let n: Vec<f64> = (0..12).map(|i| 10f64.powf(2.0 + 0.4 * i as f64)).collect();
    let mut p = LinePlot::new(title, "n (points)", "time (ms)");
    p.log_x = true;
    p.log_y = true;
    p.legend = LegendPosition::UpperLeft;
    p.series = vec![
        Series::line("gpu", n.iter().map(|&n| (n, 0.05 + n * 2e-5)).collect())
            .with_style(SeriesStyle::LinePoints),
        Series::line("cpu", n.iter().map(|&n| (n, n * 1e-3)).collect())
            .with_style(SeriesStyle::Points),
        Series::line("O(n)", vec![(1e2, 1e-1), (1e6, 1e3)])
            .with_style(SeriesStyle::Dashed)
            .with_color(Rgb(0, 0, 0)),
        // Skipped points: non-finite, and ≤ 0 on the log axes.
        Series::line(
            "noisy",
            vec![
                (1e3, 1.0),
                (f64::NAN, 2.0),
                (1e4, f64::INFINITY),
                (-5.0, 1.0),
                (1e5, 0.0),
                (1e6, 30.0),
            ],
        ),
    ];
    p
}

#[test]
fn line_plot_log_log() {
    let p = timing_plot("laplace_apply: time vs n");
    let path = out("line_loglog.png");
    p.save(&path).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), p.size);
    assert!(colours(&img) > 10, "a plot has many colours");
    // Palette colours of the series are there.
    assert!(has_colour(&img, Rgb(31, 119, 180)));
    assert!(has_colour(&img, Rgb(255, 127, 14)));
}

/// The title is drawn: the same plot with an empty title differs in the title band, and
/// the band holds dark (glyph) pixels only when there is a title.
#[test]
fn line_plot_title_is_drawn() {
    let (a, b) = (out("line_title.png"), out("line_notitle.png"));
    timing_plot("A title").save(&a).unwrap();
    timing_plot("").save(&b).unwrap();
    let (a, b) = (load(&a), load(&b));
    assert_eq!(a.dimensions(), b.dimensions());
    let (w, _) = a.dimensions();
    let band = ((w / 3, 2 * w / 3), (0, 40));
    assert!(diff_in(&a, &b, band.0, band.1) > 50);
    assert!(dark_in(&a, band.0, band.1) > 30, "title glyphs");
}

/// The axis titles are drawn: the bottom band (x title) differs without them.
#[test]
fn line_plot_axis_titles_are_drawn() {
    let mut p = LinePlot::new("", "epoch", "loss (nats)");
    p.series = vec![Series::line(
        "train",
        (0..50)
            .map(|i| (i as f64, (-0.1 * i as f64).exp()))
            .collect(),
    )];
    let a = out("line_axes.png");
    p.save(&a).unwrap();
    p.x_label.clear();
    p.y_label.clear();
    let b = out("line_noaxes.png");
    p.save(&b).unwrap();
    let (a, b) = (load(&a), load(&b));
    let (w, h) = a.dimensions();
    assert!(diff_in(&a, &b, (0, w), (h - 30, h)) > 20, "x title");
    assert!(diff_in(&a, &b, (0, 30), (0, h)) > 20, "y title");
}

#[test]
fn line_plot_linear_and_single_point() {
    let mut p = LinePlot::new("one point", "x", "y");
    p.series = vec![Series::line("p", vec![(3.0, 3.0)]).with_style(SeriesStyle::Points)];
    p.size = (400, 300);
    let path = out("line_single.png");
    p.save(&path).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), (400, 300));
    assert!(colours(&img) > 1);
}

#[test]
fn line_plot_errors() {
    let path = out("never.png");
    let e = LinePlot::new("t", "x", "y").save(&path).unwrap_err();
    assert!(
        matches!(e, LapisError::InvalidArgument { name: "series", .. }),
        "{e:?}"
    );
    let mut p = LinePlot::new("t", "x", "y");
    p.series = vec![
        Series::line("a", vec![]),
        Series::line("b", vec![(f64::NAN, 1.0)]),
    ];
    let e = p.save(&path).unwrap_err();
    assert!(matches!(e, LapisError::InvalidArgument { .. }), "{e:?}");
    // Only non-positive values on a log axis: nothing to draw.
    p.series = vec![Series::line("c", vec![(1.0, -1.0), (2.0, 0.0)])];
    p.log_y = true;
    let e = p.save(&path).unwrap_err();
    assert!(e.to_string().contains("log axis"), "{e}");
    // Too small, and a range too wide for f64.
    p.log_y = false;
    p.size = (10, 10);
    assert!(matches!(
        p.save(&path).unwrap_err(),
        LapisError::InvalidArgument { name: "size", .. }
    ));
    p.size = (400, 300);
    p.series = vec![Series::line("d", vec![(0.0, -1e308), (1.0, 1e308)])];
    assert!(p.save(&path).is_err());
    // A directory that does not exist: an I/O error.
    p.series = vec![Series::line("e", vec![(0.0, 1.0), (1.0, 2.0)])];
    let e = p
        .save(out("no-such-dir").join("x").join("p.png"))
        .unwrap_err();
    assert!(matches!(e, LapisError::Io(_)), "{e:?}");
    assert!(!path.exists());
}

// --------------------------------------------------------------------------- GridImage

/// A grey ramp and an RGB checker, `w × h`.
fn cells(n: usize, w: usize, h: usize, captions: bool) -> Vec<ImageCell> {
    (0..n)
        .map(|i| {
            let c = if i % 2 == 0 {
                ImageCell::grey(
                    w,
                    h,
                    (0..w * h)
                        .map(|p| (p % w) as f32 / (w - 1) as f32)
                        .collect(),
                )
            } else {
                let chw: Vec<f32> = (0..3 * w * h)
                    .map(|q| {
                        let (ch, p) = (q / (w * h), q % (w * h));
                        if (p / w + p % w + ch) & 1 == 0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                ImageCell::rgb_chw(w, h, &chw)
            };
            if captions {
                c.with_caption(format!("sample {i}"))
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn image_grid_writes_grid() {
    let imgs = cells(10, 8, 8, true);
    let path = out("grid.png");
    image_grid(&path, &imgs, 4, 6).unwrap();
    let img = load(&path);
    let (w, h) = image_grid_size(&imgs, 4, 6);
    assert_eq!(img.dimensions(), (w as u32, h as u32));
    // 4 columns of 48 px + 5 gaps; 3 rows of (48 + caption band) + 4 gaps.
    assert_eq!(w, 4 * 48 + 5 * 4);
    assert!(colours(&img) > 5);
    // Pixel (0, 0) of the first image is black (ramp start), its last column white.
    let (ox, oy) = (4, 4);
    assert_eq!(img.get_pixel(ox, oy).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(ox + 47, oy + 47).0, [255, 255, 255]);
    // RGB checker: pixel (0,0) of image 1 has R = 1 (ch 0: (0+0+0)%2==0), G = 0, B = 1.
    assert_eq!(img.get_pixel(ox + 48 + 4, oy).0, [255, 0, 255]);
    // The captions are drawn: dark pixels in the band under the first image.
    assert!(dark_in(&img, (ox, ox + 48), (oy + 48, oy + 48 + 18)) > 10);
    // Without captions there is no band, and nothing dark under the images.
    let plain = out("grid_plain.png");
    let imgs = cells(10, 8, 8, false);
    image_grid(&plain, &imgs, 4, 6).unwrap();
    let img = load(&plain);
    let (w, h) = image_grid_size(&imgs, 4, 6);
    assert_eq!(img.dimensions(), (w as u32, h as u32));
    assert_eq!(h, 3 * 48 + 4 * 4);
}

#[test]
fn image_grid_mixed_sizes_and_long_captions() {
    let mut imgs = cells(3, 5, 7, false);
    imgs.push(ImageCell::grey(3, 3, vec![0.5; 9]).with_caption("a very long caption indeed"));
    let path = out("grid_mixed.png");
    image_grid(&path, &imgs, 10, 3).unwrap();
    let img = load(&path);
    let (w, h) = image_grid_size(&imgs, 10, 3);
    assert_eq!(img.dimensions(), (w as u32, h as u32));
    assert_eq!(w, 4 * 15 + 5 * 4, "cols capped at the number of images");
}

#[test]
fn image_grid_errors() {
    let p = out("never_grid.png");
    let one = cells(1, 4, 4, false);
    let name = |e: LapisError| match e {
        LapisError::InvalidArgument { name, .. } => name,
        other => panic!("{other:?}"),
    };
    assert_eq!(name(image_grid(&p, &[], 2, 1).unwrap_err()), "images");
    assert_eq!(name(image_grid(&p, &one, 0, 1).unwrap_err()), "cols");
    assert_eq!(name(image_grid(&p, &one, 2, 0).unwrap_err()), "scale");
    let bad = [ImageCell::grey(4, 4, vec![0.0; 15])];
    assert_eq!(
        name(image_grid(&p, &bad, 2, 1).unwrap_err()),
        "images[i].data.len()"
    );
    let mut two = ImageCell::grey(2, 2, vec![0.0; 8]);
    two.channels = 2;
    assert_eq!(
        name(image_grid(&p, &[two], 2, 1).unwrap_err()),
        "images[i].channels"
    );
    let big = [ImageCell::grey(1000, 1000, vec![0.0; 1_000_000])];
    assert!(matches!(
        image_grid(&p, &big, 1, 100).unwrap_err(),
        LapisError::SizeOverLimit { .. }
    ));
    // An absurd scale saturates to "too large" instead of wrapping around.
    assert!(matches!(
        image_grid(&p, &one, 1, usize::MAX).unwrap_err(),
        LapisError::SizeOverLimit { .. }
    ));
    assert!(!p.exists());
}

// ----------------------------------------------------------------------------- Heatmap

fn weights(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i / cols) as f32 - (i % cols) as f32) / 10.0)
        .collect()
}

#[test]
fn heatmap_writes_matrix_and_colour_bar() {
    let mut h = Heatmap::new("layer 1 weights", 12, 20, weights(12, 20));
    h.x_label = "input unit".into();
    h.y_label = "output unit".into();
    h.value_label = "weight".into();
    h.colormap = Colormap::Diverging;
    h.values[5] = f32::NAN;
    let path = out("heatmap.png");
    h.save(&path).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), h.size);
    assert!(colours(&img) > 20);
    // The range is symmetric: both ends of the colour map appear (the colour bar),
    // and the NaN cell is magenta.
    let (lo, hi) = h.value_range().unwrap();
    assert!(
        (lo + 1.9).abs() < 1e-6 && (hi - 1.9).abs() < 1e-6,
        "{lo} {hi}"
    );
    assert!(has_colour(&img, Colormap::Diverging.color(0.0)));
    assert!(has_colour(&img, Colormap::Diverging.color(1.0)));
    assert!(has_colour(&img, NON_FINITE_COLOR));
    // The title is drawn.
    h.title.clear();
    let b = out("heatmap_notitle.png");
    h.save(&b).unwrap();
    let bimg = load(&b);
    let (w, _) = img.dimensions();
    assert!(diff_in(&img, &bimg, (w / 4, 3 * w / 4), (0, 30)) > 50);
    assert!(dark_in(&img, (w / 4, 3 * w / 4), (0, 30)) > 30);
}

#[test]
fn heatmap_large_viridis_and_constant() {
    let h = Heatmap::new("", 300, 500, weights(300, 500));
    let path = out("heatmap_large.png");
    h.save(&path).unwrap();
    let img = load(&path);
    assert_eq!(img.dimensions(), h.size);
    assert!(has_colour(&img, Colormap::Viridis.color(0.0)));
    // A constant matrix still draws (the range is widened).
    let c = Heatmap::new("const", 2, 2, vec![3.0; 4]);
    c.save(out("heatmap_const.png")).unwrap();
    let (lo, hi) = c.value_range().unwrap();
    assert!(lo < 3.0 && hi > 3.0);
}

#[test]
fn heatmap_errors() {
    let p = out("never_heatmap.png");
    let name = |e: LapisError| match e {
        LapisError::InvalidArgument { name, .. } => name,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        name(Heatmap::new("", 0, 3, vec![]).save(&p).unwrap_err()),
        "rows × cols"
    );
    assert_eq!(
        name(Heatmap::new("", 2, 3, vec![0.0; 5]).save(&p).unwrap_err()),
        "values.len()"
    );
    assert_eq!(
        name(
            Heatmap::new("", 1, 2, vec![f32::NAN; 2])
                .save(&p)
                .unwrap_err()
        ),
        "values"
    );
    let mut h = Heatmap::new("", 1, 2, vec![0.0, 1.0]);
    h.range = Some((1.0, 1.0));
    assert_eq!(name(h.save(&p).unwrap_err()), "range");
    h.range = None;
    h.size = (100, 100);
    assert_eq!(name(h.save(&p).unwrap_err()), "size");
    assert!(!p.exists());
}

#[test]
fn colormap_endpoints() {
    assert_eq!(Colormap::Grey.color(0.0), Rgb(0, 0, 0));
    assert_eq!(Colormap::Grey.color(1.0), Rgb(255, 255, 255));
    assert_eq!(Colormap::Grey.color(2.0), Rgb(255, 255, 255));
    assert_eq!(Colormap::Viridis.color(0.0), Rgb(68, 1, 84));
    assert_eq!(Colormap::Diverging.color(0.5), Rgb(247, 247, 247));
}
