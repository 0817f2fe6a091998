//! The self-test's result table: one row per comparison, printed with
//! aligned columns (model, what was compared, max abs err, max rel err,
//! tolerance, ok).

use std::fmt;

use super::TensorDiff;

/// One comparison of the self-test.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The case's model name.
    pub model: String,
    /// What was compared (`loss`, `gradients (24; worst ...)`, ...).
    pub what: String,
    /// The difference found (NaN for a row that failed without one).
    pub diff: TensorDiff,
    /// The relative tolerance applied.
    pub tolerance: f64,
    /// Whether the difference is within the tolerance.
    pub ok: bool,
}

impl Row {
    /// A row for the difference `diff`, passing when it is within `tolerance`.
    pub fn new(model: &str, what: String, diff: TensorDiff, tolerance: f64) -> Self {
        Self { model: model.to_string(), what, diff, tolerance, ok: diff.within(tolerance) }
    }

    /// A failing row without a difference (something missing on one side).
    pub fn failed(model: &str, what: String, tolerance: f64) -> Self {
        Self { model: model.to_string(), what, diff: TensorDiff { max_abs: f64::NAN, max_rel: f64::NAN }, tolerance, ok: false }
    }
}

/// All rows of a self-test run, with the two sides compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The reference side, e.g. `cpu (auto kernels)`.
    pub reference: String,
    /// The side under test, e.g. `cuda:0 (auto kernels)`.
    pub candidate: String,
    /// One per comparison.
    pub rows: Vec<Row>,
}

impl Report {
    /// True when every row is within its tolerance.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }

    /// The number of failing rows.
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok).count()
    }
}

/// A number for the table: `-` for a missing one, else 3 significant digits.
fn number(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else {
        format!("{v:.2e}")
    }
}

impl fmt::Display for Report {
    /// The header line, the table, and a closing line with the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "selftest: {} against the reference {}", self.candidate, self.reference)?;
        let header = ["model", "compared", "max abs err", "max rel err", "tolerance", "ok"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| [r.model.clone(), r.what.clone(), number(r.diff.max_abs), number(r.diff.max_rel), number(r.tolerance), if r.ok { "ok".into() } else { "MISMATCH".into() }])
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cols: [&str; 6]| -> fmt::Result {
            let text: Vec<String> = cols.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(f, "{}", text.join("  ").trim_end())
        };
        line(f, header)?;
        for row in &cells {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]])?;
        }
        if self.passed() {
            write!(f, "all {} comparisons within tolerance", self.rows.len())
        } else {
            write!(f, "{} of {} comparisons out of tolerance", self.failures(), self.rows.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_states_the_verdict() {
        let d = TensorDiff { max_abs: 1.5e-7, max_rel: 2.25e-8 };
        let report = Report {
            reference: "cpu (auto kernels)".into(),
            candidate: "cpu (composed kernels)".into(),
            rows: vec![Row::new("vit", "loss".into(), d, 1e-4), Row::failed("detector", "gradient of w: missing on the device".into(), 1e-4)],
        };
        let text = report.to_string();
        let expected = "\
selftest: cpu (composed kernels) against the reference cpu (auto kernels)
model     compared                              max abs err  max rel err  tolerance  ok
vit       loss                                  1.50e-7      2.25e-8      1.00e-4    ok
detector  gradient of w: missing on the device  -            -            1.00e-4    MISMATCH
1 of 2 comparisons out of tolerance";
        assert_eq!(text, expected, "\n--- got ---\n{text}\n--- expected ---\n{expected}");
    }
}
