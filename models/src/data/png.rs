//! PNG images as f32: [`read_png`], [`write_png`] and [`Image`].
//!
//! An [`Image`] holds `width * height * channels` values in `[0, 1]`, channel-last
//! (HWC: row `y`, column `x`, channel `c` at `(y * width + x) * channels + c`), the
//! layout of the file. [`Image::to_chw`] gives the channel-first layout convolutions
//! want; [`Image::from_chw`] goes back. [`Image::grid`] tiles equal-sized images into
//! one (sample grids).
//!
//! Reading: 8-bit samples are divided by 255, 16-bit samples by 65535. Greyscale files
//! give 1 channel, colour files 3: **an alpha channel is dropped** (grey+alpha → 1
//! channel, RGBA → 3), the colour values are kept as stored (not composited over a
//! background). Writing: 1, 2, 3 or 4 channels (grey, grey+alpha, RGB, RGBA), 8 bits,
//! each value clamped to `[0, 1]` and rounded to the nearest `k / 255` (NaN is written
//! as 0). A value `k / 255` therefore survives a write and a read exactly.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use image::{ColorType, DynamicImage, ImageEncoder};
use lapis_ops::{LapisError, Result};

use super::{format_error, io_error};

/// An image as f32 values in `[0, 1]`, channel-last (HWC). See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel: 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    /// `height * width * channels` values, channel-last, row-major.
    pub data: Vec<f32>,
}

/// `width * height * channels`, checked: every dimension ≥ 1, channels ≤ 4, no overflow.
fn image_len(op: &'static str, width: usize, height: usize, channels: usize) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(LapisError::invalid(
            op,
            "width x height",
            (width, height),
            "an image needs at least one pixel",
        ));
    }
    if !(1..=4).contains(&channels) {
        return Err(LapisError::invalid(
            op,
            "channels",
            channels,
            "must be 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)",
        ));
    }
    width
        .checked_mul(height)
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| {
            LapisError::invalid(
                op,
                "width x height",
                (width, height),
                "the image is too large",
            )
        })
}

impl Image {
    /// An image from channel-last (HWC) data; checks the sizes (`channels` in 1..=4,
    /// `data.len() == width * height * channels`).
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<f32>) -> Result<Image> {
        let n = image_len("Image::new", width, height, channels)?;
        if data.len() != n {
            return Err(LapisError::invalid(
                "Image::new",
                "data.len()",
                data.len(),
                format!("a {width}x{height} image with {channels} channels needs {n} values"),
            ));
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// An image from channel-first (CHW) data, as [`to_chw`](Self::to_chw) returns it.
    pub fn from_chw(width: usize, height: usize, channels: usize, chw: &[f32]) -> Result<Image> {
        let n = image_len("Image::from_chw", width, height, channels)?;
        if chw.len() != n {
            return Err(LapisError::invalid(
                "Image::from_chw",
                "chw.len()",
                chw.len(),
                format!("a {width}x{height} image with {channels} channels needs {n} values"),
            ));
        }
        let hw = width * height;
        let mut data = vec![0.0f32; n];
        for c in 0..channels {
            for p in 0..hw {
                data[p * channels + c] = chw[c * hw + p];
            }
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// The values channel-first (CHW: channel `c`, row `y`, column `x` at
    /// `(c * height + y) * width + x`), the layout of a `[C, H, W]` tensor. If the public
    /// fields were set inconsistently, only the whole pixels present in `data` are used.
    pub fn to_chw(&self) -> Vec<f32> {
        if self.channels == 0 {
            return Vec::new();
        }
        let pixels = self.data.len() / self.channels;
        let mut out = vec![0.0f32; pixels * self.channels];
        for (p, px) in self.data.chunks_exact(self.channels).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out[c * pixels + p] = v;
            }
        }
        out
    }

    /// The `channels` values of pixel (`x`, `y`), or `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<&[f32]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let start = (y * self.width + x) * self.channels;
        self.data.get(start..start + self.channels)
    }

    /// Tiles `images` (all of one width, height and channel count) row by row into a
    /// grid `cols` images wide, with `pad` pixels of `background` between and around
    /// them. The last grid row may be partly empty (background).
    pub fn grid(images: &[Image], cols: usize, pad: usize, background: f32) -> Result<Image> {
        let Some(first) = images.first() else {
            return Err(LapisError::invalid(
                "Image::grid",
                "images.len()",
                0,
                "need at least one image",
            ));
        };
        if cols == 0 {
            return Err(LapisError::invalid(
                "Image::grid",
                "cols",
                cols,
                "must be at least 1",
            ));
        }
        let (w, h, ch) = (first.width, first.height, first.channels);
        image_len("Image::grid", w, h, ch)?;
        for (i, im) in images.iter().enumerate() {
            if (im.width, im.height, im.channels) != (w, h, ch) || im.data.len() != w * h * ch {
                return Err(LapisError::invalid(
                    "Image::grid",
                    "images",
                    (im.width, im.height, im.channels),
                    format!(
                        "image {i} differs from image 0 ({w}x{h}, {ch} channels) or its data \
                         length does not match its size"
                    ),
                ));
            }
        }
        let cols = cols.min(images.len());
        let rows = images.len().div_ceil(cols);
        let too_big = || {
            LapisError::invalid(
                "Image::grid",
                "images.len()",
                images.len(),
                "the grid is too large",
            )
        };
        let gw = cols
            .checked_mul(w)
            .and_then(|v| v.checked_add((cols + 1).checked_mul(pad)?))
            .ok_or_else(too_big)?;
        let gh = rows
            .checked_mul(h)
            .and_then(|v| v.checked_add((rows + 1).checked_mul(pad)?))
            .ok_or_else(too_big)?;
        let n = image_len("Image::grid", gw, gh, ch)?;
        let mut data = vec![background; n];
        for (i, im) in images.iter().enumerate() {
            let x0 = pad + (i % cols) * (w + pad);
            let y0 = pad + (i / cols) * (h + pad);
            for y in 0..h {
                let dst = ((y0 + y) * gw + x0) * ch;
                data[dst..dst + w * ch].copy_from_slice(&im.data[y * w * ch..(y + 1) * w * ch]);
            }
        }
        Image::new(gw, gh, ch, data)
    }
}

/// Reads the PNG file at `path` (see the [module docs](self): values in `[0, 1]`,
/// channel-last, 1 channel for greyscale and 3 for colour files, alpha dropped).
///
/// Errors: [`LapisError::Io`] naming the path if it cannot be opened or read;
/// [`LapisError::Format`] naming the path if it is not a PNG the decoder accepts (or is
/// over the decoder's 512 MiB allocation limit).
pub fn read_png(path: impl AsRef<Path>) -> Result<Image> {
    let path = path.as_ref();
    let reader = image::io::Reader::open(path)
        .map_err(|e| io_error(path, e))?
        .with_guessed_format()
        .map_err(|e| io_error(path, e))?;
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::IoError(io) => io_error(path, io),
        other => format_error(path, format!("cannot decode the image: {other}")),
    })?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, data): (usize, Vec<f32>) = match img {
        DynamicImage::ImageLuma8(b) => (1, scale8(b.as_raw())),
        DynamicImage::ImageLumaA8(_) => (1, scale8(img.to_luma8().as_raw())),
        DynamicImage::ImageLuma16(b) => (1, scale16(b.as_raw())),
        DynamicImage::ImageLumaA16(_) => (1, scale16(img.to_luma16().as_raw())),
        DynamicImage::ImageRgb8(b) => (3, scale8(b.as_raw())),
        DynamicImage::ImageRgba8(_) => (3, scale8(img.to_rgb8().as_raw())),
        DynamicImage::ImageRgb16(b) => (3, scale16(b.as_raw())),
        DynamicImage::ImageRgba16(_) => (3, scale16(img.to_rgb16().as_raw())),
        other => {
            if other.color().has_color() {
                (3, other.to_rgb32f().into_raw())
            } else {
                (1, other.to_luma32f().into_raw())
            }
        }
    };
    Image::new(width, height, channels, data)
        .map_err(|e| format_error(path, format!("decoded image is inconsistent: {e}")))
}

fn scale8(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&b| b as f32 / 255.0).collect()
}

fn scale16(v: &[u16]) -> Vec<f32> {
    v.iter().map(|&b| b as f32 / 65535.0).collect()
}

/// Writes `image` to `path` as an 8-bit PNG (grey, grey + alpha, RGB or RGBA by its
/// channel count), each value clamped to `[0, 1]` and rounded to the nearest `k / 255`
/// (NaN as 0). Overwrites an existing file; does not create directories.
///
/// Errors: [`LapisError::InvalidArgument`] if the image's fields are inconsistent or it
/// is larger than PNG allows; [`LapisError::Io`] naming the path if it cannot be
/// created or written; [`LapisError::Format`] naming the path if encoding fails.
pub fn write_png(path: impl AsRef<Path>, image: &Image) -> Result<()> {
    let path = path.as_ref();
    let n = image_len("write_png", image.width, image.height, image.channels)?;
    if image.data.len() != n {
        return Err(LapisError::invalid(
            "write_png",
            "image.data.len()",
            image.data.len(),
            format!(
                "a {}x{} image with {} channels needs {n} values",
                image.width, image.height, image.channels
            ),
        ));
    }
    let (Ok(w), Ok(h)) = (u32::try_from(image.width), u32::try_from(image.height)) else {
        return Err(LapisError::invalid(
            "write_png",
            "width x height",
            (image.width, image.height),
            "PNG dimensions must fit in u32",
        ));
    };
    let color = match image.channels {
        1 => ColorType::L8,
        2 => ColorType::La8,
        3 => ColorType::Rgb8,
        _ => ColorType::Rgba8,
    };
    let bytes: Vec<u8> = image
        .data
        .iter()
        .map(|&v| {
            if v.is_nan() {
                0
            } else {
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            }
        })
        .collect();
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut out = BufWriter::new(file);
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&bytes, w, h, color)
        .map_err(|e| match e {
            image::ImageError::IoError(io) => io_error(path, io),
            other => format_error(path, format!("cannot encode the image: {other}")),
        })?;
    std::io::Write::flush(&mut out).map_err(|e| io_error(path, e))
}
