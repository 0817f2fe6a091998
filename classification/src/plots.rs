//! The confusion matrix as a PNG heat map: rows are the true classes, columns
//! the predicted ones, each cell shaded by the share of its row (so rare
//! classes are as readable as common ones). Class names label the axes up to
//! [`MAX_NAMED_CLASSES`]; beyond that the matrix is drawn without labels.

use std::path::Path;

use plotters::prelude::*;

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
    let label_room = if named { 150 } else { 40 };
    let cell = (900 / k).clamp(1, 40) as u32;
    let side = cell * k as u32;
    let root = BitMapBackend::new(path, (side + label_room + 30, side + label_room + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (coco::plots::FAMILY, 20))
        .margin(10)
        .x_label_area_size(label_room)
        .y_label_area_size(label_room)
        .build_cartesian_2d((0..k).into_segmented(), (0..k).into_segmented())
        .map_err(|e| fail(&e))?;
    let name = |i: usize| if named { class_names.get(i).cloned().unwrap_or_else(|| i.to_string()) } else { String::new() };
    // Labels sit at the centre of each cell; row 0 is drawn at the top.
    let column = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => name(*i),
        _ => String::new(),
    };
    let row = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < k => name(k - 1 - *i),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh().x_desc("predicted").y_desc("true");
    if !named {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.x_labels(k)
        .y_labels(k)
        .x_label_formatter(&column)
        .y_label_formatter(&row)
        .x_label_style((coco::plots::FAMILY, 11).into_font().transform(FontTransform::Rotate90))
        .y_label_style((coco::plots::FAMILY, 11))
        .draw()
        .map_err(|e| fail(&e))?;
    let cells = report.confusion.iter().enumerate().flat_map(|(truth, row)| {
        let total = row.iter().sum::<u64>().max(1) as f64;
        // plotters' y axis grows upwards.
        let y = k - 1 - truth;
        row.iter().enumerate().map(move |(pred, &n)| {
            let share = n as f64 / total;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let corner = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
            Rectangle::new([corner(pred, y), corner(pred + 1, y + 1)], RGBColor(shade, shade, 255).filled())
        })
    });
    chart.draw_series(cells).map_err(|e| fail(&e))?;
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
