//! The confusion matrix as a PNG heat map: rows are the true classes, columns
//! the predicted ones, each cell shaded by the share of its row (so rare
//! classes are as readable as common ones). Class names label the axes up to
//! [`MAX_NAMED_CLASSES`]; beyond that the matrix is drawn without labels.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metrics::Report;
use crate::{Error, Result};

/// Most classes whose names are written along the axes.
pub const MAX_NAMED_CLASSES: usize = 40;

/// Draws `report`'s confusion matrix into a square PNG at `path`.
///
/// # Errors
/// [`Error::Plot`] if no font is available or drawing / saving fails.
pub fn plot_confusion(report: &Report, class_names: &[String], title: &str, path: &Path) -> Result<()> {
    coco::plots::ensure_font().map_err(|message| Error::Plot { path: path.to_path_buf(), message })?;
    let fail = |e: &dyn std::fmt::Display| Error::Plot { path: path.to_path_buf(), message: e.to_string() };
    let k = report.confusion.len().max(1);
    let named = k <= MAX_NAMED_CLASSES;
    // Columns are labelled by class index (upright text fits any cell);
    // rows by index and name.
    let (y_room, x_room) = if named { (170, 40) } else { (30, 30) };
    let cell = (640 / k).clamp(2, 60) as u32;
    let side = (cell * k as u32).max(320);
    let root = BitMapBackend::new(path, (side + y_room + 40, side + x_room + 70)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (coco::plots::FAMILY, 18))
        .margin(12)
        .x_label_area_size(x_room)
        .y_label_area_size(y_room)
        // A segmented 0..n has a segment for every value up to n inclusive.
        .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
        .map_err(|e| fail(&e))?;
    // Labels sit at the centre of each cell; row 0 is drawn at the top.
    let column = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < k => i.to_string(),
        _ => String::new(),
    };
    let row = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < k => {
            let t = k - 1 - *i;
            format!("{t} {}", class_names.get(t).map_or("", String::as_str))
        }
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh().x_desc("predicted class").y_desc("true class");
    if !named {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.x_labels(k)
        .y_labels(k)
        .x_label_formatter(&column)
        .y_label_formatter(&row)
        .x_label_style((coco::plots::FAMILY, 12))
        .y_label_style((coco::plots::FAMILY, 12))
        .draw()
        .map_err(|e| fail(&e))?;
    let corner = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
    let mut counts = Vec::new();
    let cells = report.confusion.iter().enumerate().flat_map(|(truth, row)| {
        let total = row.iter().sum::<u64>().max(1) as f64;
        // plotters' y axis grows upwards.
        let y = k - 1 - truth;
        row.iter().enumerate().map(move |(pred, &n)| {
            let share = n as f64 / total;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            (pred, y, n, share, Rectangle::new([corner(pred, y), corner(pred + 1, y + 1)], RGBColor(shade, shade, 255).filled()))
        })
    });
    let mut rects = Vec::new();
    for (pred, y, n, share, rect) in cells {
        rects.push(rect);
        // Counts are written in cells wide enough to hold them.
        if cell >= 28 && n > 0 {
            let colour = if share > 0.5 { WHITE } else { BLACK };
            counts.push(Text::new(n.to_string(), (SegmentValue::CenterOf(pred), SegmentValue::CenterOf(y)), (coco::plots::FAMILY, 12).into_font().color(&colour).pos(Pos::new(HPos::Center, VPos::Center))));
        }
    }
    chart.draw_series(rects).map_err(|e| fail(&e))?;
    chart.draw_series(counts).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::Accumulator;

    #[test]
    fn draws_a_named_and_an_unnamed_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let mut acc = Accumulator::new(3);
        acc.add(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[0, 1, 2]);
        let names: Vec<String> = ["circle", "square", "star"].map(String::from).to_vec();
        let path = dir.path().join("cm.png");
        plot_confusion(&acc.report(), &names, "top-1 66.7%", &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert!(img.width() > 100 && img.height() > 100);
        let big = Accumulator::new(60);
        let path = dir.path().join("cm60.png");
        plot_confusion(&big.report(), &[], "60 classes", &path).unwrap();
        assert!(path.exists());
    }
}
