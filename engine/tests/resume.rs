//! The proof that resuming is exact: a tiny model (linear regression, two
//! parameter groups from layer-wise lr decay, AdamW + warmup-cosine +
//! gradient clipping, minibatches drawn from the checkpointed RNG) trained
//! 20 iterations straight must end bitwise identical to one that trains 13
//! iterations, "crashes" (its last checkpoint is at iteration 10, and its
//! metrics log already holds iterations 10-12), and is resumed from files
//! alone: weights, optimizer state, RNG stream, model.safetensors and
//! metrics.jsonl. Two negative controls show the comparison can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use engine::checkpoint::{restore_vars, var_tensors, TrainState};
use engine::optim::{
    all_vars, build_param_groups, clip_grad_norm, AdamW, AdamWConfig, DecayRule, Optimizer,
    ViTNameRules,
};
use engine::rng::TrainRng;
use engine::run_dir::{MetricsWriter, Record, RunDir};
use engine::schedule::Schedule;

const TOTAL: usize = 20;
const CHECKPOINT_EVERY: usize = 5;
const BATCH: usize = 8;
const SEED: u64 = 17;

/// A fixed regression problem: 64 samples, 4 features, 2 targets.
struct Data {
    x: Tensor,
    y: Tensor,
}

fn data() -> Data {
    let mut r = TrainRng::seed_from_u64(1234);
    let x = r.normal((64, 4), 0.0, 1.0, &Device::Cpu).unwrap();
    let w = Tensor::new(
        &[[1.0f32, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0]],
        &Device::Cpu,
    )
    .unwrap();
    let noise = r.normal((64, 2), 0.0, 0.1, &Device::Cpu).unwrap();
    let y = ((x.matmul(&w.t().unwrap()).unwrap() + 0.5).unwrap() + noise).unwrap();
    Data { x, y }
}

fn schedule() -> Schedule {
    Schedule::WarmupCosine {
        base_lr: 0.5,
        total_iters: TOTAL,
        warmup_iters: 5,
        warmup_lr_start: 1e-6,
        min_lr: 1e-4,
    }
}

/// The model's parameters at their initial values (what `--resume`
/// overwrites), named so the ViT rules put them in different groups.
fn model() -> Vec<(String, Var)> {
    let mut r = TrainRng::seed_from_u64(99);
    vec![
        (
            "blocks.0.weight".into(),
            Var::from_tensor(&r.normal((2, 4), 0.0, 0.1, &Device::Cpu).unwrap()).unwrap(),
        ),
        (
            "head.bias".into(),
            Var::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        ),
    ]
}

fn optimizer(named: &[(String, Var)]) -> AdamW {
    // L = 1: blocks.0 gets 0.5^1, the head 0.5^0; the bias skips decay.
    let groups = build_param_groups(
        named,
        &ViTNameRules { num_layers: 1 },
        0.05,
        Some(0.5),
        DecayRule::SkipOneDimBiasAndListed,
    )
    .unwrap();
    assert_eq!(groups.len(), 2);
    AdamW::new(groups, AdamWConfig::default()).unwrap()
}

/// Everything a training process holds in memory.
struct Trainer {
    named: Vec<(String, Var)>,
    opt: AdamW,
    rng: TrainRng,
    metrics: MetricsWriter,
    run: RunDir,
    iter: usize,
}

impl Trainer {
    fn fresh(out: &Path) -> Self {
        let run = RunDir::open(out, false).unwrap();
        let named = model();
        let opt = optimizer(&named);
        let metrics = run.metrics_writer(None).unwrap();
        Self {
            named,
            opt,
            rng: TrainRng::seed_from_u64(SEED),
            metrics,
            run,
            iter: 0,
        }
    }

    /// A new "process": nothing but the files in `out`.
    fn resume(out: &Path) -> Self {
        let run = RunDir::open(out, true).unwrap();
        let ck = run.load_checkpoint(&Device::Cpu).unwrap();
        let named = model();
        restore_vars(&named, &ck.model).unwrap();
        let mut opt = optimizer(&named);
        opt.load_state(&ck.optim, ck.state.optimizer_steps).unwrap();
        let metrics = run.metrics_writer(Some(ck.state.iter)).unwrap();
        Self {
            named,
            opt,
            rng: ck.state.rng,
            metrics,
            run,
            iter: ck.state.iter,
        }
    }

    // is_multiple_of needs Rust 1.87; the workspace supports 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    fn train_until(&mut self, end: usize, d: &Data, sched: &Schedule) {
        let vars = all_vars(self.opt.groups());
        while self.iter < end {
            let idx: Vec<u32> = (0..BATCH)
                .map(|_| self.rng.below(64).unwrap() as u32)
                .collect();
            let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
            let xb = d.x.index_select(&idx, 0).unwrap();
            let yb = d.y.index_select(&idx, 0).unwrap();
            let (w, b) = (self.named[0].1.as_tensor(), self.named[1].1.as_tensor());
            let pred = xb
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(b)
                .unwrap();
            let loss = (pred - yb).unwrap().sqr().unwrap().mean_all().unwrap();
            let mut grads = loss.backward().unwrap();
            let gnorm = clip_grad_norm(&mut grads, &vars, 1.0).unwrap();
            let lr = sched.lr_at(self.iter);
            self.opt.step(&grads, lr).unwrap();
            let l = loss.to_scalar::<f32>().unwrap() as f64;
            // img_s is fixed: wall-clock throughput cannot repeat bitwise.
            let rec = Record::new(self.iter, l, lr, 100.0)
                .term("loss_mse", l)
                .extra("grad_norm", gnorm);
            self.metrics.log(&rec).unwrap();
            self.iter += 1;
            if self.iter % CHECKPOINT_EVERY == 0 {
                let state = TrainState {
                    iter: self.iter,
                    optimizer_steps: self.opt.step_count(),
                    rng: self.rng.clone(),
                    user: serde_json::Value::Null,
                };
                let weights = var_tensors(&self.named);
                self.run
                    .save_checkpoint(&weights, &self.opt.state().unwrap(), &state)
                    .unwrap();
                self.run.write_model(&weights).unwrap();
            }
        }
    }

    /// Weights and optimizer state as (name, raw bytes) for exact comparison.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = var_tensors(&self.named)
            .into_iter()
            .chain(self.opt.state().unwrap())
            .map(|(n, t)| (n, bytes(&t)))
            .collect();
        out.push((
            "optimizer_steps".into(),
            self.opt.step_count().to_le_bytes().to_vec(),
        ));
        out
    }
}

fn bytes(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    if t.dtype() == DType::I64 {
        t.to_vec1::<i64>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    } else {
        assert_eq!(t.dtype(), DType::F32);
        t.to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn resumed_run_is_bitwise_identical_to_an_uninterrupted_one() {
    let d = data();
    let sched = schedule();
    let tmp = tempfile::tempdir().unwrap();

    let straight_dir = tmp.path().join("straight");
    let mut straight = Trainer::fresh(&straight_dir);
    straight.train_until(TOTAL, &d, &sched);

    let resumed_dir = tmp.path().join("resumed");
    let mut first = Trainer::fresh(&resumed_dir);
    first.train_until(13, &d, &sched); // last checkpoint at 10; metrics hold 0..=12
    drop(first);
    // Starting over in the same directory without --resume is refused.
    assert!(RunDir::open(&resumed_dir, false).is_err());
    let mut second = Trainer::resume(&resumed_dir);
    assert_eq!(second.iter, 10);
    second.train_until(TOTAL, &d, &sched);

    let a = straight.snapshot();
    let b = second.snapshot();
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resume");
    }
    assert_eq!(straight.rng, second.rng, "RNG streams diverged");

    let metrics_a = String::from_utf8(read(&straight.run.metrics_path())).unwrap();
    let metrics_b = String::from_utf8(read(&second.run.metrics_path())).unwrap();
    assert_eq!(metrics_a.lines().count(), TOTAL);
    assert!(
        metrics_a == metrics_b,
        "metrics differ:\n--- straight\n{metrics_a}--- resumed\n{metrics_b}"
    );
    assert!(
        read(&straight.run.model_path()) == read(&second.run.model_path()),
        "model.safetensors differs"
    );

    // The run actually learned something (the comparison is not between two
    // frozen models): the mean loss of the last 5 iterations is well below
    // that of the first 5.
    let losses: Vec<f64> = metrics_a
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // Clipping was active (pre-clip norms above max_norm = 1).
    assert!(metrics_a.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["grad_norm"]
            .as_f64()
            .unwrap()
            > 1.0
    }));
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(
        mean(&losses[TOTAL - 5..]) < 0.5 * mean(&losses[..5]),
        "{losses:?}"
    );
}

/// Negative controls: resuming without the RNG state, or without the
/// optimizer state, does not reproduce the uninterrupted run, so the
/// bitwise comparison above is able to fail.
#[test]
fn resuming_without_rng_or_optimizer_state_diverges() {
    let d = data();
    let sched = schedule();
    let tmp = tempfile::tempdir().unwrap();
    let mut straight = Trainer::fresh(&tmp.path().join("straight"));
    straight.train_until(TOTAL, &d, &sched);
    let want = straight.snapshot();

    let dir = tmp.path().join("r");
    let mut first = Trainer::fresh(&dir);
    first.train_until(10, &d, &sched);
    drop(first);

    let mut reseeded = Trainer::resume(&dir);
    reseeded.rng = TrainRng::seed_from_u64(SEED);
    reseeded.train_until(TOTAL, &d, &sched);
    assert_ne!(
        reseeded.snapshot(),
        want,
        "a reseeded RNG must change the minibatches"
    );

    let mut no_optim = Trainer::resume(&dir);
    no_optim.opt = optimizer(&no_optim.named);
    no_optim.train_until(TOTAL, &d, &sched);
    assert_ne!(
        no_optim.snapshot()[0],
        want[0],
        "fresh moments must change the weights"
    );
}
