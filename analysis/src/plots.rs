//! The analyses' PNGs, drawn with plotters' bitmap backend and the font
//! [`coco::plots::ensure_font`] registers: the CKA heat map and its diagonal
//! (the paper's Figs. 1 and 6), attention distance / entropy per head against
//! the layer (Fig. 5) and Δ log amplitude against depth (Fig. 3). Layers are
//! indexed as in the paper: CKA representation 0 is the patch embedding,
//! attention layers count blocks from 1.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{AttentionReport, CkaPair, FourierReport};
use crate::{Error, Result};

const FAMILY: &str = coco::plots::FAMILY;

/// Line and marker colours, one per model (matplotlib's tab10).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn fail(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::Plot { path: path.to_path_buf(), message: e.to_string() }
}

fn font(path: &Path) -> Result<()> {
    coco::plots::ensure_font().map_err(|message| Error::Plot { path: path.to_path_buf(), message })
}

/// Viridis at `t` in [0, 1] (linear between 9 anchors of matplotlib's map).
pub fn viridis(t: f64) -> RGBColor {
    const ANCHORS: [(u8, u8, u8); 9] = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (ANCHORS.len() - 1) as f64;
    let i = (x.floor() as usize).min(ANCHORS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Integer tick labels only (plotters picks the positions).
fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 && *v >= -1e-6 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

/// Draws `pair.matrix` (rows: `a_label`'s representations bottom to top,
/// columns: the compared model's) as a viridis heat map over CKA 0..1 with
/// a colour bar, into an 760x640 PNG.
///
/// # Errors
/// [`Error::Plot`] when no font is available or drawing / saving fails.
pub fn plot_cka_heatmap(pair: &CkaPair, a_label: &str, path: &Path) -> Result<()> {
    font(path)?;
    let err = fail(path);
    let rows = pair.matrix.len();
    let cols = pair.matrix.first().map_or(0, Vec::len);
    let root = BitMapBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(650);
    let title = format!("CKA: {a_label} vs {}", pair.b.label);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(cols as f64 - 0.5), -0.5f64..(rows as f64 - 0.5))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(cols + 1)
        .y_labels(rows + 1)
        .x_label_formatter(&integer_label)
        .y_label_formatter(&integer_label)
        .x_desc(format!("layer of {}", pair.b.label))
        .y_desc(format!("layer of {a_label}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(&e))?;
    let cells = pair.matrix.iter().enumerate().flat_map(|(i, row)| {
        row.iter().enumerate().map(move |(j, &v)| {
            let (x, y) = (j as f64, i as f64);
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], viridis(v).filled())
        })
    });
    chart.draw_series(cells).map_err(|e| err(&e))?;
    // The colour bar: CKA 0 at the bottom, 1 at the top.
    let mut bar = ChartBuilder::on(&right)
        .margin_top(47)
        .margin_bottom(65)
        .margin_right(40)
        .y_label_area_size(0)
        .right_y_label_area_size(40)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(|e| err(&e))?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|e| err(&e))?;
    let steps = 100;
    bar.draw_series((0..steps).map(|k| {
        let (y0, y1) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, y0), (1.0, y1)], viridis((y0 + y1) / 2.0).filled())
    }))
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// A line chart of several series over integer or fractional x, with a legend.
struct Lines<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// (label, points).
    series: Vec<(String, Vec<(f64, f64)>)>,
    y_range: Option<(f64, f64)>,
}

fn draw_lines(lines: &Lines, path: &Path) -> Result<()> {
    font(path)?;
    let err = fail(path);
    let points = lines.series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let (y0, y1) = lines.y_range.unwrap_or_else(|| {
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        (y0 - pad, y1 + pad)
    });
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(lines.title, (FAMILY, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 - 0.3)..(x1 + 0.3), y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(((x1 - x0).round() as usize + 2).min(30))
        .x_label_formatter(&integer_label)
        .x_desc(lines.x_desc)
        .y_desc(lines.y_desc)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for (k, (label, pts)) in lines.series.iter().enumerate() {
        let c = colour(k);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)).point_size(4))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// The diagonal of each pair's CKA matrix against the layer, one line per
/// pair, CKA from 0 to 1.
///
/// # Errors
/// [`Error::Plot`] when no font is available or drawing / saving fails.
pub fn plot_cka_diagonals(pairs: &[CkaPair], a_label: &str, path: &Path) -> Result<()> {
    let series = pairs.iter().map(|p| (format!("{a_label} vs {}", p.b.label), p.diagonal.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect())).collect();
    let title = format!("Layer similarity to {a_label} (CKA diagonal)");
    draw_lines(&Lines { title: &title, x_desc: "layer (0 = patch embedding)", y_desc: "CKA", series, y_range: Some((0.0, 1.05)) }, path)
}

/// Δ log amplitude against depth, one line per model.
///
/// # Errors
/// [`Error::Plot`] when no font is available or drawing / saving fails.
pub fn plot_fourier(report: &FourierReport, path: &Path) -> Result<()> {
    let series = report.models.iter().map(|m| (m.model.label.clone(), m.points.iter().map(|p| (p.depth, p.profile.delta)).collect())).collect();
    draw_lines(
        &Lines { title: "Relative log amplitude of the highest frequency", x_desc: "depth (0 = patch embedding; .5 = after attention, integer = after MLP)", y_desc: "Δ log amplitude", series, y_range: None },
        path,
    )
}

/// Which attention measure to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMetric {
    /// Mean attention distance.
    Distance,
    /// Mean attention entropy.
    Entropy,
}

/// One dot per head at its layer (blocks counted from 1), one colour per
/// model, the models side by side within a layer; y from 0.
///
/// # Errors
/// [`Error::Plot`] when no font is available or drawing / saving fails.
pub fn plot_attention(report: &AttentionReport, metric: AttentionMetric, path: &Path) -> Result<()> {
    font(path)?;
    let err = fail(path);
    let values = |m: &crate::report::AttentionModel| match metric {
        AttentionMetric::Distance => m.distance.clone(),
        AttentionMetric::Entropy => m.entropy.clone(),
    };
    let layers = report.models.iter().map(|m| m.distance.len()).max().unwrap_or(1).max(1);
    let top = report.models.iter().flat_map(|m| values(m).into_iter().flatten()).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    // Head room above the highest dot for the legend.
    let top = if top > 0.0 { top * 1.3 } else { 1.0 };
    let (title, y_desc) = match metric {
        AttentionMetric::Distance => ("Mean attention distance per head".to_string(), format!("attention distance ({})", unit_name(report))),
        AttentionMetric::Entropy => ("Mean attention entropy per head".to_string(), "attention entropy (nats)".to_string()),
    };
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.4f64..(layers as f64 + 0.6), 0.0f64..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(layers + 2)
        .x_label_formatter(&integer_label)
        .x_desc("layer (block)")
        .y_desc(y_desc)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    let k = report.models.len().max(1) as f64;
    for (mi, m) in report.models.iter().enumerate() {
        let c = colour(mi);
        // Models side by side within a layer's slot.
        let offset = if k > 1.0 { (mi as f64 / (k - 1.0) - 0.5) * 0.4 } else { 0.0 };
        let dots: Vec<(f64, f64)> = values(m).iter().enumerate().flat_map(|(l, heads)| heads.iter().map(move |&v| (l as f64 + 1.0 + offset, v))).collect();
        chart
            .draw_series(dots.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(|e| err(&e))?
            .label(m.model.label.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

fn unit_name(report: &AttentionReport) -> String {
    match report.distance_unit {
        crate::attention::DistanceUnit::Pixels => "pixels".into(),
        crate::attention::DistanceUnit::Patches => "patches".into(),
        crate::attention::DistanceUnit::Released => format!("released scale: grid x {}", crate::attention::RELEASED_DISTANCE_SCALE),
    }
}
