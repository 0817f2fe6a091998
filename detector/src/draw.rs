//! Prediction pictures: each detection's mask blended in its class colour,
//! its box outlined, and a "name score" label, drawn over the original image
//! and saved as PNG.

use std::path::Path;

use coco::mask::Rle;
use image::RgbImage;
use plotters::prelude::*;

use crate::{Error, Result};

/// One detection to draw, in the image's pixels.
#[derive(Debug, Clone)]
pub struct DrawnDetection {
    /// Box `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Contiguous class index (picks the colour).
    pub class: usize,
    /// Text of the label, e.g. `"circle 0.97"`.
    pub label: String,
    /// The mask, when the model predicts one.
    pub mask: Option<Rle>,
}

/// Pictures smaller than this (longer side, pixels) are enlarged by an
/// integer factor with nearest-neighbour sampling before boxes and labels are
/// drawn, so a 128 px image still gets readable labels.
const MIN_PICTURE_SIDE: u32 = 512;

/// A palette of distinguishable colours (one per class, cycling).
const PALETTE: [(u8, u8, u8); 10] = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128)];

/// Draws `detections` over `image` and writes the PNG to `path`.
///
/// # Errors
/// [`Error::Draw`] naming the file when drawing or writing fails.
pub fn draw_detections(image: &RgbImage, detections: &[DrawnDetection], path: &Path) -> Result<()> {
    let err = |msg: String| Error::Draw { path: path.to_path_buf(), msg };
    let mut pixels = image.clone();
    for d in detections {
        if let Some(mask) = &d.mask {
            blend_mask(&mut pixels, mask, PALETTE[d.class % PALETTE.len()]).map_err(|e| err(e.to_string()))?;
        }
    }
    let zoom = (MIN_PICTURE_SIDE / pixels.width().max(pixels.height()).max(1)).max(1);
    if zoom > 1 {
        pixels = image::imageops::resize(&pixels, pixels.width() * zoom, pixels.height() * zoom, image::imageops::FilterType::Nearest);
    }
    let (w, h) = pixels.dimensions();
    let mut buffer = pixels.into_raw();
    {
        coco::plots::ensure_font().map_err(err)?;
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let font_px = (h.min(w) as f64 / 32.0).clamp(12.0, 24.0);
        for d in detections {
            let (r, g, b) = PALETTE[d.class % PALETTE.len()];
            let colour = RGBColor(r, g, b);
            let [x, y, bw, bh] = d.bbox.map(|v| v * f64::from(zoom));
            let (x0, y0, x1, y1) = (x.round() as i32, y.round() as i32, (x + bw).round() as i32, (y + bh).round() as i32);
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], colour.stroke_width(2))).map_err(|e| err(e.to_string()))?;
            let style = TextStyle::from((coco::plots::FAMILY, font_px).into_font()).color(&WHITE);
            let text_w = (d.label.len() as f64 * font_px * 0.55) as i32;
            let ty = (y0 - font_px as i32 - 2).max(0);
            root.draw(&Rectangle::new([(x0, ty), (x0 + text_w + 4, ty + font_px as i32 + 2)], colour.filled())).map_err(|e| err(e.to_string()))?;
            root.draw_text(&d.label, &style, (x0 + 2, ty + 1)).map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let out = RgbImage::from_raw(w, h, buffer).ok_or_else(|| err("image buffer has the wrong size".into()))?;
    out.save(path).map_err(|e| err(e.to_string()))
}

/// Blends `colour` at 50% over the mask's pixels.
fn blend_mask(pixels: &mut RgbImage, mask: &Rle, colour: (u8, u8, u8)) -> std::result::Result<(), coco::Error> {
    let (w, h) = pixels.dimensions();
    if mask.h != h || mask.w != w {
        return Ok(());
    }
    let bits = mask.decode_row_major()?;
    for (i, &on) in bits.iter().enumerate() {
        if on != 0 {
            let p = pixels.get_pixel_mut(i as u32 % w, i as u32 / w);
            let mix = |a: u8, b: u8| ((a as u16 + b as u16) / 2) as u8;
            *p = image::Rgb([mix(p[0], colour.0), mix(p[1], colour.1), mix(p[2], colour.2)]);
        }
    }
    Ok(())
}
