//! The passes over images on a tiny random ViT and the synthetic scenes:
//! batch sizes change nothing where they must not (attention, Fourier),
//! CKA keeps only full minibatches, a model compared with itself gives 1 on
//! the diagonal, and every plot is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use analysis::attention::DistanceUnit;
use analysis::images::ImageSource;
use analysis::passes::{run_attention, run_cka, run_fourier, AttentionSettings, PassInput, Subject};
use analysis::plots::{plot_attention, plot_cka_diagonals, plot_cka_heatmap, plot_fourier, AttentionMetric};
use backbone::{Vit, VitConfig};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use vision::eval_transform::EvalTransform;

fn tiny(label: &str, seed: u64) -> Subject {
    let cfg = VitConfig { embed_dim: 24, num_heads: 3, depth: 2, img_size: 32, patch_size: 8, num_classes: 0, ..VitConfig::tiny() };
    let varmap = VarMap::new();
    let model = Vit::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    backbone::init::init_weights(&varmap, &cfg, seed).unwrap();
    Subject { label: label.into(), file: format!("{label}.safetensors"), model }
}

fn input(source: &ImageSource, batch: usize) -> PassInput<'_> {
    PassInput { source, transform: EvalTransform { size: 32, ..EvalTransform::default() }, batch }
}

#[test]
fn cka_keeps_full_minibatches_and_a_model_matches_itself() {
    let (a, b) = (tiny("a", 1), tiny("b", 2));
    let source = ImageSource::Synthetic { count: 10 };
    let mut seen = 0;
    let report = run_cka(&a, &[tiny("a again", 1), b], &input(&source, 4), &mut |n| seen += n).unwrap();
    assert_eq!((report.minibatches, report.images.used, report.images.dropped, seen), (2, 8, 2, 8));
    assert_eq!(report.representations.len(), 3);
    let same = &report.pairs[0];
    for i in 0..3 {
        assert!((same.matrix[i][i] - 1.0).abs() < 1e-9, "{:?}", same.matrix);
        assert_eq!(same.diagonal[i], same.matrix[i][i]);
    }
    let other = &report.pairs[1];
    assert!(other.diagonal.iter().all(|v| *v < 0.999 && *v > -1.0), "{:?}", other.diagonal);
    // Fewer images than one minibatch, or a minibatch below 4, is the user's mistake.
    let err = run_cka(&a, &[tiny("b", 2)], &input(&source, 16), &mut |_| {}).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(run_cka(&a, &[tiny("b", 2)], &input(&source, 3), &mut |_| {}).unwrap_err().is_user_error());

    let dir = tempfile::tempdir().unwrap();
    plot_cka_heatmap(&report.pairs[1], "a", &dir.path().join("h.png")).unwrap();
    plot_cka_diagonals(&report.pairs, "a", &dir.path().join("d.png")).unwrap();
    for name in ["h.png", "d.png"] {
        let img = image::open(dir.path().join(name)).unwrap().to_rgb8();
        assert!(img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000, "{name} is blank");
    }
}

#[test]
fn attention_and_fourier_do_not_depend_on_the_batch_size() {
    let models = [tiny("a", 1), tiny("b", 2)];
    let source = ImageSource::Synthetic { count: 5 };
    let settings = AttentionSettings { distance_unit: DistanceUnit::Pixels, entropy_eps: 0.0 };
    let one = run_attention(&models, &input(&source, 5), settings, &mut |_| {}).unwrap();
    let split = run_attention(&models, &input(&source, 2), settings, &mut |_| {}).unwrap();
    assert_eq!(one.images.used, 5);
    assert_eq!((one.grid, one.patch_size, one.distance_scale), ([4, 4], 8, 8.0));
    for (x, y) in one.models.iter().zip(&split.models) {
        for (rx, ry) in x.entropy.iter().flatten().zip(y.entropy.iter().flatten()) {
            assert!((rx - ry).abs() < 1e-9);
            // 16 patches: entropy within [0, ln 16].
            assert!(*rx >= 0.0 && *rx <= 16f64.ln() + 1e-9);
        }
        for (rx, ry) in x.distance.iter().flatten().zip(y.distance.iter().flatten()) {
            assert!((rx - ry).abs() < 1e-9);
        }
        assert_eq!((x.entropy.len(), x.entropy[0].len()), (2, 3));
    }
    let released = run_attention(&models, &input(&source, 5), AttentionSettings { distance_unit: DistanceUnit::Released, entropy_eps: 1e-6 }, &mut |_| {}).unwrap();
    let (px, rel) = (one.models[0].distance[0][0], released.models[0].distance[0][0]);
    assert!((px / 8.0 * 14.0 - rel).abs() < 1e-9);

    let f1 = run_fourier(&models, &input(&source, 5), &mut |_| {}).unwrap();
    let f2 = run_fourier(&models, &input(&source, 3), &mut |_| {}).unwrap();
    assert_eq!(f1.models[0].points.len(), 5);
    assert_eq!(f1.models[0].points[3].name, "blocks.1.attn");
    for (p, q) in f1.models[0].points.iter().zip(&f2.models[0].points) {
        assert!((p.profile.delta - q.profile.delta).abs() < 1e-9);
        assert_eq!(p.profile.diagonal.len(), 3);
    }

    let dir = tempfile::tempdir().unwrap();
    plot_attention(&one, AttentionMetric::Distance, &dir.path().join("ad.png")).unwrap();
    plot_attention(&one, AttentionMetric::Entropy, &dir.path().join("ae.png")).unwrap();
    plot_fourier(&f1, &dir.path().join("f.png")).unwrap();
    for name in ["ad.png", "ae.png", "f.png"] {
        let img = image::open(dir.path().join(name)).unwrap().to_rgb8();
        assert!(img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000, "{name} is blank");
    }
}

#[test]
fn unreadable_files_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
    let good = coco::shapes::render_detection(&coco::shapes::ShapesConfig::default(), coco::Split::Val, 0).unwrap().image;
    good.save(dir.path().join("good.png")).unwrap();
    let files = vision::list::list_images(dir.path(), false).unwrap();
    let source = ImageSource::Files(files);
    let report = run_attention(&[tiny("a", 1)], &input(&source, 2), AttentionSettings { distance_unit: DistanceUnit::Patches, entropy_eps: 0.0 }, &mut |_| {}).unwrap();
    assert_eq!((report.images.used, report.images.skipped), (1, 1));
}
