//! `vitdet classify`: the top classes of one image.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde::Serialize;

use vision::eval_transform::{eval_transform, EvalTransform};

use super::weights::WeightsArgs;

/// Classify one image with a checkpoint that has a classifier head, using
/// timm's eval transform (resize shorter side to 224/0.875 bicubic, center
/// crop 224, ImageNet mean/std).
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  vitdet classify --weights mae_tiny_400e_ft_300e.pth.tar --image cat.jpg --topk 5\n  vitdet classify --weights runs/shapes_cls/model_best.safetensors --image star.png   # a vitdet finetune model: its own class names\n\n\
1000-class checkpoints print ImageNet class names; others print class indices.")]
pub struct ClassifyArgs {
    #[command(flatten)]
    weights: WeightsArgs,
    /// The image to classify.
    #[arg(long, value_name = "FILE")]
    image: PathBuf,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Prediction {
    class: usize,
    name: Option<String>,
    prob: f32,
}

/// Runs the classification.
pub fn run(args: ClassifyArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let img = vision::decode::decode_upright(&args.image)?;
    let path = std::path::Path::new(&args.weights.weights);
    // A model from `vitdet finetune` brings its class names and transform; others are timm ViTs.
    let (logits, names): (Tensor, Option<Vec<String>>) = if classification::weights::is_classifier(path) {
        let trained = classification::weights::load(path, &device)?;
        let transform = classification::data::eval_transform_of(trained.spec.vit.img_size, trained.meta.crop_pct, trained.meta.eval_interpolation)?;
        let x = vision::loader::stack_chw(&[eval_transform(&img, &transform)?], (3, transform.size, transform.size), &device)?;
        let logits = trained.model.predict(&x)?;
        (logits, Some(trained.meta.classes))
    } else {
        let loaded = super::weights::load(&args.weights, &device)?;
        if loaded.config.num_classes == 0 {
            return Err(crate::exit::user(format!(
                "{}: the checkpoint has no classifier head (a pre-trained backbone); use a fine-tuned checkpoint",
                args.weights.weights
            )));
        }
        let transform = EvalTransform { size: loaded.config.img_size, ..EvalTransform::default() };
        let x = vision::loader::stack_chw(&[eval_transform(&img, &transform)?], (3, transform.size, transform.size), &device)?;
        let features = backbone::features::extract_features(&loaded.model, &x, 1)?;
        let logits = features
            .tensors
            .into_iter()
            .find(|(n, _)| n == "logits")
            .map(|(_, t)| t)
            .ok_or_else(|| anyhow::anyhow!("the model produced no logits"))?;
        let names = (loaded.config.num_classes == 1000).then(|| backbone::preprocess::imagenet_classes().into_iter().map(String::from).collect());
        (logits, names)
    };
    let logits = &logits;
    let top = backbone::features::top_k(logits, args.topk)?;
    let preds: Vec<Prediction> = top
        .first()
        .into_iter()
        .flatten()
        .map(|&(class, prob)| Prediction { class, name: names.as_ref().and_then(|n| n.get(class).cloned()), prob })
        .collect();
    if args.json {
        println!("{}", serde_json::json!({ "image": args.image.display().to_string(), "top": preds }));
    } else {
        for p in &preds {
            println!("{:>6.2}%  {:>4}  {}", 100.0 * p.prob, p.class, p.name.as_deref().unwrap_or(""));
        }
    }
    Ok(())
}
