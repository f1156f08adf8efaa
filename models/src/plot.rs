//! PNG figures: line plots (linear or log axes), grids of small images, heatmaps.
//!
//! Everything is drawn with plotters' bitmap backend into an RGB buffer and encoded as PNG
//! with the `image` crate, so the PNG encoder and the error mapping are ours:
//!
//! * [`LinePlot`] — series of `(x, y)` points as lines, markers, lines with markers or
//!   dashed lines; axis titles with the caller's units (`"n (points)"`, `"time (ms)"`),
//!   a legend, linear or logarithmic axes ([`LinePlot::save`]).
//! * [`image_grid`] — a grid of small grey or RGB images (values in `[0, 1]`), each with
//!   an optional caption (sample grids).
//! * [`Heatmap`] — a matrix as coloured cells with row/column axes and a colour bar
//!   (weight matrices).
//!
//! # Fonts
//!
//! Text must render on a machine with no fonts installed, so the crate ships DejaVu Sans
//! (`assets/fonts/DejaVuSans.ttf`, licence in `assets/fonts/LICENSE-DejaVu.txt`), embeds
//! it with `include_bytes!` and registers it once with plotters' `ab_glyph` support under
//! [`FONT_FAMILY`], the family every text style here uses. It is also registered as
//! `"sans-serif"` (plotters' default family) so no text can fall back to a font lookup.
//!
//! Known limitation (upstream, plotters 0.3.7): its `ab_glyph` renderer places each glyph
//! without its left side bearing, so letter spacing is uneven by up to a pixel at small
//! sizes (e.g. "inpu t"). Text stays legible; the fix belongs in plotters.
//!
//! # Errors
//!
//! Nothing here panics on bad input: empty or inconsistent input is
//! [`LapisError::InvalidArgument`], too large a figure [`LapisError::SizeOverLimit`], a
//! failed write [`LapisError::Io`], and a plotters drawing error (or, as a last line of
//! defence, a panic inside plotters, which is caught) [`LapisError::Format`] naming the
//! file.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use lapis_graph::lapis_ops::{LapisError, Result};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// The font family every text element uses (the embedded DejaVu Sans).
pub const FONT_FAMILY: &str = "lapis-dejavu-sans";

/// The embedded font (DejaVu Sans; Bitstream Vera licence, see `assets/fonts/`).
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Largest width or height of a figure, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest number of pixels of a figure.
pub const MAX_PIXELS: u64 = 64 << 20;

/// Registers the embedded font with plotters (once per process; later calls return the
/// first outcome). Called by every function that draws; public for callers that draw
/// with plotters themselves using [`FONT_FAMILY`].
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for name in [FONT_FAMILY, "sans-serif"] {
                register_font(name, FontStyle::Normal, FONT_BYTES)
                    .map_err(|_| "the embedded DejaVu Sans font could not be parsed".to_string())?;
            }
            Ok(())
        })
        .clone()
        .map_err(|msg| LapisError::Format {
            what: "embedded font assets/fonts/DejaVuSans.ttf".into(),
            msg,
        })
}

// ----------------------------------------------------------------------------- colours

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn plotters(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// The default series colours (matplotlib's `tab10`), cycled by series index.
pub const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
];

// ------------------------------------------------------------------------------ common

/// A figure size: both sides in `[min, MAX_SIDE]`.
fn check_size(op: &'static str, size: (u32, u32), min: u32) -> Result<()> {
    if size.0 < min || size.1 < min {
        return Err(LapisError::invalid(
            op,
            "size",
            size,
            format!("both sides must be at least {min} pixels"),
        ));
    }
    check_canvas(op, size.0 as u64, size.1 as u64)
}

/// A canvas of `w × h` pixels fits the limits.
fn check_canvas(op: &'static str, w: u64, h: u64) -> Result<()> {
    if w > MAX_SIDE as u64 || h > MAX_SIDE as u64 {
        return Err(LapisError::SizeOverLimit {
            op,
            name: "figure side (pixels)",
            size: w.max(h),
            limit: MAX_SIDE as u64,
        });
    }
    if w * h > MAX_PIXELS {
        return Err(LapisError::SizeOverLimit {
            op,
            name: "figure pixels",
            size: w * h,
            limit: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Maps a plotters error to [`LapisError::Format`] naming the file.
fn draw_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> LapisError + '_ {
    move |e| LapisError::Format {
        what: format!("drawing {}", path.display()),
        msg: e.to_string(),
    }
}

/// Draws with `f` on a white `w × h` RGB canvas (`buf` pre-filled by the caller when
/// non-empty) and writes the PNG. A panic inside plotters becomes an error.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    mut buf: Vec<u8>,
    f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    ensure_font()?;
    if buf.is_empty() {
        buf = vec![255u8; w as usize * h as usize * 3];
    }
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        f(&root)?;
        root.present().map_err(|e| e.to_string())
    }));
    match drawn {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => return Err(draw_err(path)(&msg)),
        Err(_) => return Err(draw_err(path)(&"plotters panicked while drawing")),
    }
    save_png(path, w, h, &buf)
}

/// Encodes an RGB8 buffer as PNG.
fn save_png(path: &Path, w: u32, h: u32, buf: &[u8]) -> Result<()> {
    image::save_buffer_with_format(
        path,
        buf,
        w,
        h,
        image::ColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| match e {
        image::ImageError::IoError(io) => LapisError::Io(io),
        other => LapisError::Format {
            what: format!("PNG {}", path.display()),
            msg: other.to_string(),
        },
    })
}

/// Compact tick labels: `0`, `0.25`, `1500`, `1e-5`, `2.5e6`.
pub fn format_tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let s = trim(&format!("{v:.4}"));
        if s == "-0" {
            "0".into()
        } else {
            s
        }
    } else {
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m)),
            None => s,
        }
    }
}

/// A tick label on an axis spanning `range`: [`format_tick`], with a linear axis' ticks
/// within 1e-9 of its span of zero written `0` (not `-2.78e-17`), and non-integer ticks
/// left unlabelled when `integer`.
fn axis_tick(v: f64, range: &Range<f64>, log: bool, integer: bool) -> String {
    if integer && (v - v.round()).abs() > 1e-9 * (1.0 + v.abs()) {
        return String::new();
    }
    if !log && v.abs() <= 1e-9 * (range.end - range.start).abs() {
        return "0".into();
    }
    format_tick(v)
}

fn text(size: u32) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

// ---------------------------------------------------------------------------- LinePlot

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeriesStyle {
    /// A solid polyline through the points, in order.
    #[default]
    Line,
    /// A filled circle at each point.
    Points,
    /// A solid polyline with a circle at each point.
    LinePoints,
    /// A dashed polyline.
    Dashed,
}

/// One named series of a [`LinePlot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry (an empty name has no legend entry).
    pub name: String,
    /// The points, drawn in order; non-finite points (and, on a log axis, points with a
    /// coordinate ≤ 0) are skipped.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub style: SeriesStyle,
    /// Its colour; `None`: [`PALETTE`]`[index % 10]`.
    pub color: Option<Rgb>,
}

impl Series {
    /// A solid-line series with the palette colour.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            style: SeriesStyle::Line,
            color: None,
        }
    }

    /// The same series drawn as `style`.
    pub fn with_style(mut self, style: SeriesStyle) -> Series {
        self.style = style;
        self
    }

    /// The same series in `color`.
    pub fn with_color(mut self, color: Rgb) -> Series {
        self.color = Some(color);
        self
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegendPosition {
    /// Top right corner of the plotting area.
    #[default]
    UpperRight,
    /// Top left corner.
    UpperLeft,
    /// Bottom right corner.
    LowerRight,
    /// Bottom left corner.
    LowerLeft,
    /// No legend.
    None,
}

/// A line plot of one or more series.
///
/// ```no_run
/// use lapis_models::plot::{LinePlot, Series, SeriesStyle};
/// let mut p = LinePlot::new("laplace_apply", "n (points)", "time (ms)");
/// p.log_x = true;
/// p.log_y = true;
/// p.series.push(Series::line("gpu", vec![(1e3, 0.2), (1e4, 0.9), (1e5, 7.5)]));
/// p.series.push(
///     Series::line("O(n)", vec![(1e3, 0.1), (1e5, 10.0)]).with_style(SeriesStyle::Dashed),
/// );
/// p.save("/tmp/timing.png")?;
/// # Ok::<(), lapis_models::lapis_ops::LapisError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// The title above the plot (empty: none).
    pub title: String,
    /// The x axis title, with units (`"n (points)"`).
    pub x_label: String,
    /// The y axis title, with units (`"time (ms)"`).
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The series, drawn in order (later ones on top).
    pub series: Vec<Series>,
    /// Legend placement.
    pub legend: LegendPosition,
    /// Width and height in pixels (each in `[200, MAX_SIDE]`); default 800 × 560.
    pub size: (u32, u32),
    /// Label only the integer x ticks (task or epoch numbers, head indices).
    pub integer_x: bool,
    /// Label only the integer y ticks.
    pub integer_y: bool,
}

impl Default for LinePlot {
    fn default() -> Self {
        LinePlot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            log_x: false,
            log_y: false,
            series: Vec::new(),
            legend: LegendPosition::UpperRight,
            size: (800, 560),
            integer_x: false,
            integer_y: false,
        }
    }
}

/// Padded plotting range of `lo..=hi` (finite, positive when `log`).
fn axis_range(lo: f64, hi: f64, log: bool) -> Range<f64> {
    if log {
        if lo == hi {
            return lo / 2.0..hi * 2.0;
        }
        let pad = (hi / lo).powf(0.03);
        lo / pad..hi * pad
    } else {
        if lo == hi {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            return lo - pad..hi + pad;
        }
        let pad = (hi - lo) * 0.03;
        lo - pad..hi + pad
    }
}

impl LinePlot {
    /// An empty plot with a title and the two axis titles; default size and legend.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> LinePlot {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..LinePlot::default()
        }
    }

    /// Writes the plot as a PNG to `path` (any extension).
    ///
    /// Errors: no series, or no drawable point in any series (every point non-finite, or
    /// ≤ 0 on a log axis) is [`LapisError::InvalidArgument`]; a size out of range, a data
    /// range too wide for f64 arithmetic, a failed write or a drawing failure as in the
    /// module docs.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        const OP: &str = "LinePlot::save";
        let path = path.as_ref();
        check_size(OP, self.size, 200)?;
        let keep = |&(x, y): &(f64, f64)| {
            x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0) && (!self.log_y || y > 0.0)
        };
        let drawn: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| s.points.iter().copied().filter(keep).collect())
            .collect();
        let all = drawn.iter().flatten();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut n = 0usize;
        for &(x, y) in all {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            n += 1;
        }
        if n == 0 {
            let log = if self.log_x || self.log_y {
                " (on a log axis only coordinates > 0 can be drawn)"
            } else {
                ""
            };
            return Err(LapisError::invalid(
                OP,
                "series",
                format!("{} series", self.series.len()),
                format!("the plot is empty: no series has a finite point{log}"),
            ));
        }
        let xr = axis_range(x0, x1, self.log_x);
        let yr = axis_range(y0, y1, self.log_y);
        for (name, r, log) in [("x range", &xr, self.log_x), ("y range", &yr, self.log_y)] {
            let span = r.end - r.start;
            let positive = !log || r.start > 0.0;
            if !(span.is_finite() && span > 0.0 && positive) {
                return Err(LapisError::invalid(
                    OP,
                    "series",
                    name,
                    format!("the data range {r:?} is too wide to draw"),
                ));
            }
        }
        let size = self.size;
        render(path, size, Vec::new(), |root| {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let lin = |r: Range<f64>| RangedCoordf64::from(r);
            let log = |r: Range<f64>| plotters::coord::combinators::LogCoord::from(r.log_scale());
            match (self.log_x, self.log_y) {
                (false, false) => self.draw(root, &drawn, lin(xr), lin(yr)),
                (true, false) => self.draw(root, &drawn, log(xr), lin(yr)),
                (false, true) => self.draw(root, &drawn, lin(xr), log(yr)),
                (true, true) => self.draw(root, &drawn, log(xr), log(yr)),
            }
            .map_err(|e| e.to_string())
        })
    }

    fn draw<DB, X, Y>(
        &self,
        root: &DrawingArea<DB, Shift>,
        drawn: &[Vec<(f64, f64)>],
        x: X,
        y: Y,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut builder = ChartBuilder::on(root);
        builder
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80);
        if !self.title.is_empty() {
            builder.caption(&self.title, text(24));
        }
        let (xs, ys) = (x.range(), y.range());
        let mut chart = builder.build_cartesian_2d(x, y)?;
        let x_fmt = |v: &f64| axis_tick(*v, &xs, self.log_x, self.integer_x);
        let y_fmt = |v: &f64| axis_tick(*v, &ys, self.log_y, self.integer_y);
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style(text(14))
            .axis_desc_style(text(16))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .light_line_style(RGBColor(0, 0, 0).mix(0.04))
            .draw()?;
        let mut named = 0;
        for (i, (s, pts)) in self.series.iter().zip(drawn).enumerate() {
            let color = s.color.unwrap_or(PALETTE[i % PALETTE.len()]).plotters();
            let line = ShapeStyle {
                color: color.to_rgba(),
                filled: false,
                stroke_width: 2,
            };
            let dot = color.filled();
            let pts = pts.clone();
            let anno = match s.style {
                SeriesStyle::Line => chart.draw_series(LineSeries::new(pts, line))?,
                SeriesStyle::Dashed => {
                    chart.draw_series(DashedLineSeries::new(pts, 10, 6, line))?
                }
                SeriesStyle::Points => {
                    chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, dot)))?
                }
                SeriesStyle::LinePoints => {
                    chart.draw_series(LineSeries::new(pts.clone(), line))?;
                    chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, dot)))?
                }
            };
            if s.name.is_empty() {
                continue;
            }
            named += 1;
            anno.label(s.name.as_str());
            match s.style {
                SeriesStyle::Line => {
                    anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], line));
                }
                SeriesStyle::Dashed => {
                    anno.legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (9, 0)], line)
                            + PathElement::new(vec![(15, 0), (24, 0)], line)
                    });
                }
                SeriesStyle::Points => {
                    anno.legend(move |(x, y)| Circle::new((x + 12, y), 3, dot));
                }
                SeriesStyle::LinePoints => {
                    anno.legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (24, 0)], line)
                            + Circle::new((12, 0), 3, dot)
                    });
                }
            }
        }
        let pos = match self.legend {
            LegendPosition::UpperRight => SeriesLabelPosition::UpperRight,
            LegendPosition::UpperLeft => SeriesLabelPosition::UpperLeft,
            LegendPosition::LowerRight => SeriesLabelPosition::LowerRight,
            LegendPosition::LowerLeft => SeriesLabelPosition::LowerLeft,
            LegendPosition::None => return Ok(()),
        };
        if named > 0 {
            chart
                .configure_series_labels()
                .position(pos)
                .margin(12)
                .legend_area_size(32)
                .background_style(WHITE.mix(0.9))
                .border_style(RGBColor(0, 0, 0).mix(0.5))
                .label_font(text(14))
                .draw()?;
        }
        Ok(())
    }
}

// --------------------------------------------------------------------------- GridImage

/// One image of an [`image_grid`]: `height × width` pixels, grey (1 channel) or RGB (3,
/// interleaved `HWC`), values in `[0, 1]` (clamped; NaN is drawn black).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageCell {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Row-major `height × width × channels` values.
    pub data: Vec<f32>,
    /// Drawn under the image (truncated with `…` to the cell width).
    pub caption: Option<String>,
}

impl ImageCell {
    /// A grey image from row-major `height × width` values.
    pub fn grey(width: usize, height: usize, data: Vec<f32>) -> ImageCell {
        ImageCell {
            width,
            height,
            channels: 1,
            data,
            caption: None,
        }
    }

    /// An RGB image from row-major interleaved `height × width × 3` values (`HWC`).
    pub fn rgb(width: usize, height: usize, data: Vec<f32>) -> ImageCell {
        ImageCell {
            width,
            height,
            channels: 3,
            data,
            caption: None,
        }
    }

    /// An RGB image from planar `3 × height × width` values (`CHW`, the tensor layout),
    /// reordered to `HWC`. A length other than `3·height·width` is kept as is and
    /// reported by [`image_grid`].
    pub fn rgb_chw(width: usize, height: usize, data: &[f32]) -> ImageCell {
        let n = width * height;
        let hwc = if data.len() == 3 * n {
            (0..n)
                .flat_map(|p| (0..3).map(move |c| data[c * n + p]))
                .collect()
        } else {
            data.to_vec()
        };
        ImageCell::rgb(width, height, hwc)
    }

    /// The same image with a caption.
    pub fn with_caption(mut self, caption: impl Into<String>) -> ImageCell {
        self.caption = Some(caption.into());
        self
    }

    fn check(&self, i: usize) -> Result<()> {
        const OP: &str = "image_grid";
        if self.channels != 1 && self.channels != 3 {
            return Err(LapisError::invalid(
                OP,
                "images[i].channels",
                (i, self.channels),
                "must be 1 (grey) or 3 (RGB)",
            ));
        }
        if self.width == 0 || self.height == 0 {
            return Err(LapisError::invalid(
                OP,
                "images[i] size",
                (i, self.width, self.height),
                "width and height must be ≥ 1",
            ));
        }
        let want = self.width * self.height * self.channels;
        if self.data.len() != want {
            return Err(LapisError::invalid(
                OP,
                "images[i].data.len()",
                (i, self.data.len()),
                format!(
                    "a {}×{}×{} image needs {want} values",
                    self.height, self.width, self.channels
                ),
            ));
        }
        Ok(())
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let q = |v: f32| {
            if v.is_nan() {
                0
            } else {
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            }
        };
        let p = (y * self.width + x) * self.channels;
        if self.channels == 1 {
            let g = q(self.data[p]);
            [g, g, g]
        } else {
            [q(self.data[p]), q(self.data[p + 1]), q(self.data[p + 2])]
        }
    }
}

/// Gap between cells and around the grid, pixels.
pub const GRID_PAD: usize = 4;
/// Caption font size, pixels.
const CAPTION_PX: u32 = 12;

/// The pixel size `(width, height)` of the PNG [`image_grid`] writes for these images:
/// cells of the largest image's size times `scale`, `cols` per row, [`GRID_PAD`]-pixel
/// gaps, and a caption band under every row when any image has a caption.
pub fn image_grid_size(images: &[ImageCell], cols: usize, scale: usize) -> (usize, usize) {
    // Saturating arithmetic: an absurd `scale` gives a huge size, which `image_grid`
    // rejects as over the limit, never a wrapped-around small one.
    let (cw, ch) = grid_cell(images, scale);
    let cols = cols.min(images.len()).max(1);
    let rows = images.len().div_ceil(cols);
    let cap = caption_band(images);
    let span = |n: usize, cell: usize| {
        n.saturating_mul(cell)
            .saturating_add((n + 1).saturating_mul(GRID_PAD))
    };
    (span(cols, cw), span(rows, ch.saturating_add(cap)))
}

fn grid_cell(images: &[ImageCell], scale: usize) -> (usize, usize) {
    let w = images.iter().map(|c| c.width).max().unwrap_or(0);
    let h = images.iter().map(|c| c.height).max().unwrap_or(0);
    (w.saturating_mul(scale), h.saturating_mul(scale))
}

fn caption_band(images: &[ImageCell]) -> usize {
    if images.iter().any(|c| c.caption.is_some()) {
        CAPTION_PX as usize + 6
    } else {
        0
    }
}

/// Writes `images` as a grid PNG: `cols` images per row (fewer if there are fewer
/// images), each pixel drawn as a `scale × scale` block, images of different sizes
/// centred in cells of the largest size, captions under the images, white background.
/// The PNG's size is [`image_grid_size`].
///
/// Errors: no images, `cols == 0`, `scale == 0`, an image whose channels are not 1 or 3,
/// whose size is 0, or whose data length is not `height·width·channels`
/// ([`LapisError::InvalidArgument`]); a grid over [`MAX_SIDE`] or [`MAX_PIXELS`]
/// ([`LapisError::SizeOverLimit`]); I/O and drawing errors as in the module docs.
pub fn image_grid(
    path: impl AsRef<Path>,
    images: &[ImageCell],
    cols: usize,
    scale: usize,
) -> Result<()> {
    const OP: &str = "image_grid";
    let path = path.as_ref();
    if images.is_empty() {
        return Err(LapisError::invalid(OP, "images", 0, "no images to draw"));
    }
    if cols == 0 {
        return Err(LapisError::invalid(OP, "cols", cols, "must be ≥ 1"));
    }
    if scale == 0 {
        return Err(LapisError::invalid(OP, "scale", scale, "must be ≥ 1"));
    }
    for (i, c) in images.iter().enumerate() {
        c.check(i)?;
    }
    let (cw, ch) = grid_cell(images, scale);
    let cols = cols.min(images.len());
    let (w, h) = image_grid_size(images, cols, scale);
    check_canvas(OP, w as u64, h as u64)?;
    let cap = caption_band(images);
    let mut buf = vec![255u8; w * h * 3];
    let origin = |i: usize| {
        let (r, c) = (i / cols, i % cols);
        (
            GRID_PAD + c * (cw + GRID_PAD),
            GRID_PAD + r * (ch + cap + GRID_PAD),
        )
    };
    for (i, img) in images.iter().enumerate() {
        let (ox, oy) = origin(i);
        let (iw, ih) = (img.width * scale, img.height * scale);
        let (ox, oy) = (ox + (cw - iw) / 2, oy + (ch - ih) / 2);
        for y in 0..ih {
            let row = (oy + y) * w;
            for x in 0..iw {
                let px = img.pixel(x / scale, y / scale);
                let at = (row + ox + x) * 3;
                buf[at..at + 3].copy_from_slice(&px);
            }
        }
    }
    let size = (w as u32, h as u32);
    if cap == 0 {
        return save_png(path, size.0, size.1, &buf);
    }
    render(path, size, buf, |root| {
        let style = text(CAPTION_PX);
        for (i, img) in images.iter().enumerate() {
            let Some(caption) = &img.caption else {
                continue;
            };
            let (ox, oy) = origin(i);
            let fit = fit_text(root, caption, &style, cw as u32)?;
            let tw = root
                .estimate_text_size(&fit, &style)
                .map_err(|e| e.to_string())?
                .0 as usize;
            let x = ox + cw.saturating_sub(tw) / 2;
            let y = oy + ch + 3;
            root.draw_text(&fit, &style, (x as i32, y as i32))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// `s`, shortened with `…` until it is at most `max_w` pixels wide.
fn fit_text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &str,
    style: &TextStyle,
    max_w: u32,
) -> std::result::Result<String, String> {
    let width = |t: &str| {
        root.estimate_text_size(t, style)
            .map(|d| d.0)
            .map_err(|e| e.to_string())
    };
    if width(s)? <= max_w {
        return Ok(s.to_string());
    }
    let mut chars: Vec<char> = s.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let t: String = chars.iter().chain(std::iter::once(&'…')).collect();
        if width(&t)? <= max_w {
            return Ok(t);
        }
    }
    Ok(String::new())
}

// ----------------------------------------------------------------------------- Heatmap

/// Colour maps for [`Heatmap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Perceptually uniform dark purple → yellow (matplotlib's viridis, piecewise linear).
    #[default]
    Viridis,
    /// Blue → white → red, for signed data; the default range is symmetric about 0.
    Diverging,
    /// Black → white.
    Grey,
}

impl Colormap {
    /// The colour of `t ∈ [0, 1]` (clamped).
    pub fn color(self, t: f64) -> Rgb {
        const VIRIDIS: [(u8, u8, u8); 9] = [
            (68, 1, 84),
            (71, 44, 122),
            (59, 81, 139),
            (44, 113, 142),
            (33, 144, 141),
            (39, 173, 129),
            (92, 200, 99),
            (170, 220, 50),
            (253, 231, 37),
        ];
        const DIVERGING: [(u8, u8, u8); 5] = [
            (5, 48, 97),
            (67, 147, 195),
            (247, 247, 247),
            (214, 96, 77),
            (103, 0, 31),
        ];
        const GREY: [(u8, u8, u8); 2] = [(0, 0, 0), (255, 255, 255)];
        let table: &[(u8, u8, u8)] = match self {
            Colormap::Viridis => &VIRIDIS,
            Colormap::Diverging => &DIVERGING,
            Colormap::Grey => &GREY,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let s = t * (table.len() - 1) as f64;
        let i = (s.floor() as usize).min(table.len() - 2);
        let f = s - i as f64;
        let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
        let (a, b) = (table[i], table[i + 1]);
        Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}

/// The colour of non-finite heatmap cells (magenta: never a colour-map colour).
pub const NON_FINITE_COLOR: Rgb = Rgb(255, 0, 255);

/// A matrix drawn as coloured cells (row 0 at the top, column 0 at the left) with a
/// colour bar, e.g. a weight matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// The title (empty: none).
    pub title: String,
    /// The x (column) axis title, e.g. `"input unit"`.
    pub x_label: String,
    /// The y (row) axis title, e.g. `"output unit"`.
    pub y_label: String,
    /// The colour-bar title, e.g. `"weight"`.
    pub value_label: String,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major `rows × cols` values; non-finite cells are drawn in
    /// [`NON_FINITE_COLOR`] and left out of the default range.
    pub values: Vec<f32>,
    /// The colour map.
    pub colormap: Colormap,
    /// The value range mapped onto the colour map (values outside are clamped); `None`:
    /// the finite min..max, or `±max|v|` for [`Colormap::Diverging`].
    pub range: Option<(f64, f64)>,
    /// Width and height in pixels (each in `[240, MAX_SIDE]`); default 760 × 640.
    pub size: (u32, u32),
}

impl Heatmap {
    /// A heatmap of a row-major `rows × cols` matrix with default labels ("column",
    /// "row", "value"), colour map, range and size.
    pub fn new(title: impl Into<String>, rows: usize, cols: usize, values: Vec<f32>) -> Heatmap {
        Heatmap {
            title: title.into(),
            x_label: "column".into(),
            y_label: "row".into(),
            value_label: "value".into(),
            rows,
            cols,
            values,
            colormap: Colormap::Viridis,
            range: None,
            size: (760, 640),
        }
    }

    /// The value range the colour map spans (see [`Heatmap::range`]).
    pub fn value_range(&self) -> Result<(f64, f64)> {
        const OP: &str = "Heatmap::save";
        if let Some((lo, hi)) = self.range {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(LapisError::invalid(
                    OP,
                    "range",
                    (lo, hi),
                    "must be finite with lo < hi",
                ));
            }
            return Ok((lo, hi));
        }
        let finite = self.values.iter().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(lo, hi), &v| {
            (lo.min(v as f64), hi.max(v as f64))
        });
        if lo > hi {
            return Err(LapisError::invalid(
                OP,
                "values",
                format!("{} values", self.values.len()),
                "no finite value to draw",
            ));
        }
        let (lo, hi) = if self.colormap == Colormap::Diverging {
            let m = lo.abs().max(hi.abs());
            (-m, m)
        } else {
            (lo, hi)
        };
        if lo == hi {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            return Ok((lo - pad, hi + pad));
        }
        Ok((lo, hi))
    }

    /// Writes the heatmap as a PNG to `path`.
    ///
    /// Errors: `rows` or `cols` 0, `values.len() != rows·cols`, no finite value (with no
    /// explicit range), a bad explicit range or size ([`LapisError::InvalidArgument`]);
    /// I/O and drawing errors as in the module docs.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        const OP: &str = "Heatmap::save";
        let path = path.as_ref();
        if self.rows == 0 || self.cols == 0 {
            return Err(LapisError::invalid(
                OP,
                "rows × cols",
                (self.rows, self.cols),
                "the matrix is empty",
            ));
        }
        if self.rows.checked_mul(self.cols) != Some(self.values.len()) {
            return Err(LapisError::invalid(
                OP,
                "values.len()",
                self.values.len(),
                format!(
                    "a {}×{} matrix needs rows·cols values",
                    self.rows, self.cols
                ),
            ));
        }
        check_size(OP, self.size, 240)?;
        let (lo, hi) = self.value_range()?;
        render(path, self.size, Vec::new(), |root| {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            self.draw(root, lo, hi).map_err(|e| e.to_string())
        })
    }

    fn color_of(&self, v: f32, lo: f64, hi: f64) -> RGBColor {
        if !v.is_finite() {
            return NON_FINITE_COLOR.plotters();
        }
        self.colormap.color((v as f64 - lo) / (hi - lo)).plotters()
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        lo: f64,
        hi: f64,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let root = if self.title.is_empty() {
            root.clone()
        } else {
            root.titled(&self.title, text(22))?
        };
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(130));
        let (rows, cols) = (self.rows as f64, self.cols as f64);
        let mut chart = ChartBuilder::on(&main)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..cols - 0.5, rows - 0.5..-0.5)?;
        let int_ticks = |v: &f64| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(self.cols.clamp(1, 10))
            .y_labels(self.rows.clamp(1, 10))
            .x_label_formatter(&int_ticks)
            .y_label_formatter(&int_ticks)
            .label_style(text(13))
            .axis_desc_style(text(15))
            .draw()?;
        let area = chart.plotting_area().strip_coord_spec();
        let (aw, ah) = area.dim_in_pixel();
        for py in 0..ah {
            let r = (((py as f64 + 0.5) / ah as f64 * rows) as usize).min(self.rows - 1);
            for px in 0..aw {
                let c = (((px as f64 + 0.5) / aw as f64 * cols) as usize).min(self.cols - 1);
                let color = self.color_of(self.values[r * self.cols + c], lo, hi);
                area.draw_pixel((px as i32, py as i32), &color)?;
            }
        }
        // The colour bar: a vertical gradient lo (bottom) .. hi (top) with a value axis.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(12)
            .margin_bottom(12 + 50)
            .margin_left(8)
            .right_y_label_area_size(80)
            .build_cartesian_2d(0.0..1.0, lo..hi)?;
        let fmt = |v: &f64| axis_tick(*v, &(lo..hi), false, false);
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(self.value_label.as_str())
            .y_label_formatter(&fmt)
            .y_labels(8)
            .label_style(text(13))
            .axis_desc_style(text(15))
            .draw()?;
        let area = cb.plotting_area().strip_coord_spec();
        let (bw, bh) = area.dim_in_pixel();
        for py in 0..bh {
            let t = 1.0 - (py as f64 + 0.5) / bh as f64;
            let color = self.colormap.color(t).plotters();
            for px in 0..bw {
                area.draw_pixel((px as i32, py as i32), &color)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::axis_tick;

    #[test]
    fn axis_ticks_snap_float_noise_to_zero_and_skip_non_integers() {
        // A diverging colour bar over ±0.2 puts a tick at 0 ± float noise.
        assert_eq!(axis_tick(-2.78e-17, &(-0.2..0.2), false, false), "0");
        assert_eq!(axis_tick(0.1, &(-0.2..0.2), false, false), "0.1");
        // On a log axis a small value is a real value.
        assert_eq!(axis_tick(1e-12, &(1e-13..1.0), true, false), "1e-12");
        // Integer axes (task numbers) label 1, 2, … and leave 1.5 blank.
        assert_eq!(axis_tick(2.0, &(0.9..5.1), false, true), "2");
        assert_eq!(axis_tick(1.5, &(0.9..5.1), false, true), "");
    }
}
