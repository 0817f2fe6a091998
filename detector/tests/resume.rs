//! Resuming a detector run is exact: four steps trained in one go and the
//! same four steps trained as two, stopped after step 2 (its checkpoint) and
//! resumed from the run folder alone, end with the same bytes in the
//! weights, the optimizer state and the logged losses. This covers what the
//! engine's resume test cannot: the detector's sampling RNG, the data
//! stream's position, AdamW's parameter groups and the checkpointed model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use coco::shapes::{self, ShapesConfig, ShapesTask};
use detector::data::{DataLayout, DetectionDataset, Purpose};
use coco::Split;
use detector::recipe::Recipe;
use engine::recipe_file::RecipeFile as _;
use detector::train::{train, TrainRun};
use engine::progress::ProgressConfig;

/// The demo recipe (its 600-step schedule) run for `max_iter` steps.
fn run(data: &Arc<DetectionDataset>, out: &Path, max_iter: usize, resume: bool) -> TrainRun {
    let mut recipe = Recipe::resolve("vitdet_tiny_shapes", &[]).unwrap();
    recipe.train.max_iter = max_iter;
    TrainRun {
        recipe,
        weight_search: Default::default(),
        train: data.clone(),
        val: None,
        out: out.to_path_buf(),
        resume,
        device: Device::Cpu,
        progress: ProgressConfig { quiet: true, ..ProgressConfig::default() },
    }
}

/// (iteration, loss bits, lr bits) of each line of a run's metrics log.
fn logged(out: &Path) -> Vec<(u64, u64, u64)> {
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    log.lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            (r["iter"].as_u64().unwrap(), r["loss"].as_f64().unwrap().to_bits(), r["lr"].as_f64().unwrap().to_bits())
        })
        .collect()
}

/// What a safetensors file stores: each tensor's dtype, shape and bytes,
/// and the metadata, whatever order its header lists them in (the header's
/// metadata comes from a hash map).
type Stored = (BTreeMap<String, (String, Vec<usize>, Vec<u8>)>, BTreeMap<String, String>);

fn stored(path: &Path) -> Stored {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = file.tensors().into_iter().map(|(name, t)| (name, (format!("{:?}", t.dtype()), t.shape().to_vec(), t.data().to_vec()))).collect();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    (tensors, metadata)
}

#[test]
fn a_resumed_run_ends_bitwise_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    shapes::generate(&ShapesConfig { train: 6, val: 0, size: 128, seed: 5, task: ShapesTask::Detection, ..ShapesConfig::default() }, &data).unwrap();
    let files = DataLayout::discover(&data).unwrap().split(Split::Train).unwrap().clone();
    let set = Arc::new(DetectionDataset::load(&files, Purpose::Train).unwrap());

    let straight = dir.path().join("straight");
    train(&run(&set, &straight, 4, false)).unwrap();
    let resumed = dir.path().join("resumed");
    train(&run(&set, &resumed, 2, false)).unwrap();
    let halfway = std::fs::read(resumed.join("model.safetensors")).unwrap();
    train(&run(&set, &resumed, 4, true)).unwrap();

    assert!(std::fs::read(resumed.join("model.safetensors")).unwrap() != halfway, "the resumed run trained on");
    for file in ["model.safetensors", "checkpoint/last.safetensors"] {
        let (resumed, straight) = (stored(&resumed.join(file)), stored(&straight.join(file)));
        assert_eq!(resumed.0.keys().collect::<Vec<_>>(), straight.0.keys().collect::<Vec<_>>(), "{file}: tensor names");
        for (name, t) in &resumed.0 {
            assert!(t == &straight.0[name], "{file}: {name} differs after resuming");
        }
        assert_eq!(resumed.1, straight.1, "{file}: metadata");
    }
    let losses = logged(&resumed);
    assert_eq!(losses.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(losses, logged(&straight));
}
