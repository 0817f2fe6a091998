//! Classification metrics: top-1 and top-5 accuracy (timm's `accuracy`),
//! per-class accuracy and the confusion matrix, accumulated batch by batch.

use serde::Serialize;

/// Counts over the images seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    num_classes: usize,
    seen: u64,
    top1: u64,
    top5: u64,
    /// `confusion[truth * K + predicted]`.
    confusion: Vec<u64>,
}

/// What an evaluation reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Images scored.
    pub images: u64,
    /// Top-1 accuracy in percent (timm's scale).
    pub top1: f64,
    /// Top-5 accuracy in percent (top-K when there are fewer than 5 classes).
    pub top5: f64,
    /// Accuracy of each class in percent (`None` for a class with no image).
    pub per_class: Vec<Option<f64>>,
    /// Mean of the per-class accuracies over classes that have images.
    pub mean_per_class: f64,
    /// `confusion[truth][predicted]` image counts.
    pub confusion: Vec<Vec<u64>>,
}

impl Accumulator {
    /// An empty accumulator for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self { num_classes, seen: 0, top1: 0, top5: 0, confusion: vec![0; num_classes * num_classes] }
    }

    /// Adds a batch: `logits` row-major (B, K), `labels` B class indices.
    /// A label outside 0..K counts as a miss and is left out of the matrix.
    ///
    /// A class is within the top k when fewer than k classes score higher,
    /// ties going to the lower class index (as a stable sort would).
    pub fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let k = self.num_classes;
        if k == 0 {
            return;
        }
        for (row, &label) in logits.chunks_exact(k).zip(labels) {
            self.seen += 1;
            let predicted = argmax(row);
            let Some(&target) = row.get(label) else { continue };
            let rank = row.iter().enumerate().filter(|&(j, &v)| v > target || (v == target && j < label)).count();
            self.top1 += u64::from(rank < 1);
            self.top5 += u64::from(rank < 5);
            self.confusion[label * k + predicted] += 1;
        }
    }

    /// The metrics so far.
    pub fn report(&self) -> Report {
        let k = self.num_classes;
        let pct = |n: u64, d: u64| if d == 0 { 0.0 } else { 100.0 * n as f64 / d as f64 };
        let confusion: Vec<Vec<u64>> = (0..k).map(|t| self.confusion[t * k..(t + 1) * k].to_vec()).collect();
        let per_class: Vec<Option<f64>> = confusion
            .iter()
            .enumerate()
            .map(|(t, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| pct(row[t], total))
            })
            .collect();
        let present: Vec<f64> = per_class.iter().flatten().copied().collect();
        let mean_per_class = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        Report { images: self.seen, top1: pct(self.top1, self.seen), top5: pct(self.top5, self.seen), per_class, mean_per_class, confusion }
    }
}

/// Index of the largest value (the first of equals).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_ranks_and_ties_as_a_stable_sort() {
        let mut acc = Accumulator::new(6);
        #[rustfmt::skip]
        let logits = [
            0.9, 0.1, 0.0, 0.0, 0.0, 0.0, // label 0: top-1
            0.1, 0.2, 0.3, 0.4, 0.5, 0.6, // label 0: rank 5 -> miss top-5
            0.5, 0.5, 0.0, 0.0, 0.0, 0.0, // label 1: tie with class 0 -> rank 1
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // label 5: all tied -> rank 5
        ];
        acc.add(&logits, &[0, 0, 1, 5]);
        let r = acc.report();
        assert_eq!(r.images, 4);
        assert_eq!(r.top1, 25.0);
        assert_eq!(r.top5, 50.0);
        assert_eq!(r.confusion[0], vec![1, 0, 0, 0, 0, 1]);
        assert_eq!(r.confusion[1][0], 1);
        assert_eq!(r.per_class[0], Some(50.0));
        assert_eq!(r.per_class[2], None);
        assert_eq!(r.mean_per_class, (50.0 + 0.0 + 0.0) / 3.0);
    }

    #[test]
    fn an_out_of_range_label_is_a_miss() {
        let mut acc = Accumulator::new(2);
        acc.add(&[1.0, 0.0], &[7]);
        let r = acc.report();
        assert_eq!((r.images, r.top1, r.top5), (1, 0.0, 0.0));
    }
}
