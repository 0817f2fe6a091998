//! The classifier's `vitdet selftest` case ([`engine::selftest`]): one
//! fine-tuning step of `finetune_imagenet_tiny`'s network (global average
//! pooling, `fc_norm`, linear head, drop path) on the backbone's tiny ViT
//! (2 blocks, width 32, 32 px): forward in training mode, label-smoothed
//! cross-entropy, backward.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use engine::recipe_file::RecipeFile as _;
use engine::testing::random_images;
use engine::selftest::{build_on, Case, CaseResult, CaseRun, SEED};
use rand::SeedableRng;


use crate::model::{Classifier, ClassifierSpec};
use crate::recipe::Recipe;

/// Classes of the case's head.
const NUM_CLASSES: usize = 4;
/// The fine-tuning recipes' label smoothing.
const SMOOTHING: f64 = 0.1;

/// The classifier's case: `classifier`.
pub fn cases() -> Vec<Case> {
    vec![Case { model: "classifier", run: classifier }]
}

fn classifier(device: &Device) -> CaseResult {
    let mut recipe = Recipe::load_or_builtin("finetune_imagenet_tiny")?;
    let arch = backbone::selftest::tiny_vit();
    recipe.data.input_size = arch.img_size;
    let spec = ClassifierSpec::from_recipe(&recipe, &arch, NUM_CLASSES);
    let (varmap, model) = build_on(device, |vm, dev| {
        let model = Classifier::new(&spec, NUM_CLASSES, VarBuilder::from_varmap(vm, DType::F32, dev))?;
        backbone::init::init_weights(vm, &spec.vit, SEED)?;
        Ok(model)
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let images = random_images(2, arch.img_size, &mut rng, device)?;
    let logits = model.forward(&images, true, &mut rng)?;
    let loss = engine::ops::cross_entropy(&logits, &[0, 3], SMOOTHING)?;
    let grads = loss.backward()?;
    Ok(CaseRun::new(vec![("logits", logits), ("loss", loss)], &[("", &varmap)], &grads)?)
}
