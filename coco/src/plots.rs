//! PNG plots of an evaluation, drawn with `plotters`' bitmap backend:
//! precision-recall curves ([`plot_pr_curves`]) and a per-category AP bar
//! chart ([`plot_per_category_ap`]).
//!
//! Text needs a TrueType font: the first of [`FONT_CANDIDATES`] that exists,
//! else the DejaVu Sans bundled by the `dejavu` crate, so plotting works on
//! machines without system fonts. It is registered once per process with
//! plotters' (global) font registry — the only process-wide state here, set
//! once and never changed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::eval::{Accumulated, CategoryAp};
use crate::Error;

/// Fonts tried in order (Debian/Ubuntu, Fedora, Arch, macOS, Windows).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Family name the font is registered under.
pub const FAMILY: &str = "sans-serif";

/// Registers the first available system font once, falling back to the
/// bundled DejaVu Sans; the outcome is remembered.
pub fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        for candidate in FONT_CANDIDATES {
            if let Ok(bytes) = std::fs::read(candidate) {
                // plotters keeps `&'static` font bytes; this runs once per process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the bundled DejaVu Sans font failed to load".to_string())
    })
    .clone()
}

/// Maps any plotting failure to [`Error::Plot`] naming the file.
fn plot_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Plot { path: path.to_path_buf(), message }
}

/// One PR curve: mean precision over categories (entries > -1) at each recall
/// threshold, for the given IoU threshold indices, area "all" (index 0) and the
/// last max-dets. `None` where no category has a value.
pub fn mean_pr_curve(acc: &Accumulated, thresholds: &[usize]) -> Vec<Option<f64>> {
    let [_, nr, nk, _, nm] = acc.dims();
    (0..nr)
        .map(|r| {
            let values: Vec<f64> = thresholds
                .iter()
                .flat_map(|&t| (0..nk).map(move |k| (t, k)))
                .map(|(t, k)| acc.precision[acc.precision_index(t, r, k, 0, nm - 1)])
                .filter(|&v| v > -1.0)
                .collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        })
        .collect()
}

/// Draws PR curves at IoU .50, .75 and averaged over .50:.95 (area all, the
/// last max-dets) into a 900×650 PNG at `path`.
///
/// # Errors
/// [`Error::Plot`] if no font is available or drawing / saving fails.
pub fn plot_pr_curves(acc: &Accumulated, title: &str, path: &Path) -> Result<(), Error> {
    let err = plot_err(path);
    ensure_font().map_err(&err)?;
    let p = &acc.params;
    let at = |thr: f64| p.iou_thrs.iter().position(|&t| t == thr).into_iter().collect::<Vec<_>>();
    let all: Vec<usize> = (0..p.iou_thrs.len()).collect();
    let curves = [
        ("IoU=.50", mean_pr_curve(acc, &at(0.5)), RGBColor(31, 119, 180)),
        ("IoU=.75", mean_pr_curve(acc, &at(0.75)), RGBColor(255, 127, 14)),
        ("IoU=.50:.95", mean_pr_curve(acc, &all), RGBColor(44, 160, 44)),
    ];
    let root = BitMapBackend::new(path, (900, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (label, curve, color) in curves {
        let points: Vec<(f64, f64)> =
            p.rec_thrs.iter().zip(&curve).filter_map(|(&r, v)| v.map(|v| (r, v))).collect();
        let ap = if curve.iter().any(Option::is_some) {
            curve.iter().flatten().sum::<f64>() / curve.iter().flatten().count() as f64
        } else {
            f64::NAN
        };
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))
            .map_err(|e| err(e.to_string()))?
            .label(format!("{label}  AP={ap:.3}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font((FAMILY, 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Draws a horizontal bar chart of per-category AP @[.50:.95], best first,
/// into a PNG at `path` (height grows with the number of categories).
/// `names[i]` labels `aps[i]`; categories without GT (AP undefined) are listed
/// with no bar.
///
/// # Errors
/// [`Error::Plot`] if no font is available, `names` and `aps` differ in
/// length, or drawing / saving fails.
pub fn plot_per_category_ap(aps: &[CategoryAp], names: &[String], title: &str, path: &Path) -> Result<(), Error> {
    let err = plot_err(path);
    if aps.len() != names.len() {
        return Err(err(format!("{} categories but {} names", aps.len(), names.len())));
    }
    ensure_font().map_err(&err)?;
    let mut rows: Vec<(&str, Option<f64>)> = names.iter().map(String::as_str).zip(aps.iter().map(|a| a.ap)).collect();
    rows.sort_by(|a, b| b.1.unwrap_or(-1.0).total_cmp(&a.1.unwrap_or(-1.0)));
    let n = rows.len().max(1);
    let height = (120 + 18 * n).min(30_000) as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(4).clamp(4, 40) as u32 * 8 + 20;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0.0f64..1.0, -0.5f64..(n as f64 - 0.5))
        .map_err(|e| err(e.to_string()))?;
    let label_of = |y: &f64| -> String {
        let i = y.round();
        if (y - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        // Row 0 at the top.
        rows.get(n - 1 - i as usize).map_or(String::new(), |r| r.0.to_owned())
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&label_of)
        .x_desc("AP @[.50:.95]")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let color = RGBColor(31, 119, 180);
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, &(_, ap))| {
            let y = (n - 1 - i) as f64;
            ap.map(|ap| Rectangle::new([(0.0, y - 0.38), (ap, y + 0.38)], color.filled()))
        }))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, &(_, ap))| {
            let y = (n - 1 - i) as f64;
            // Categories without ground truth have no AP (pycocotools' -1): say so
            // instead of leaving an empty row that reads like AP 0.
            let (text, x) = match ap {
                Some(ap) => (format!("{ap:.3}"), ap + 0.005),
                None => ("n/a (no ground truth)".to_string(), 0.005),
            };
            Text::new(text, (x, y + 0.3), (FAMILY, 12))
        }))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_fallback_font_registers() {
        // The fallback used when no system font exists must be a font plotters
        // accepts (registered under its own family, so the real one is untouched).
        assert!(plotters::style::register_font("dejavu-fallback-test", FontStyle::Normal, dejavu::sans::regular()).is_ok());
    }
}
