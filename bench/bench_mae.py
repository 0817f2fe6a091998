"""PyTorch side of `vitdet bench mae`: one MAE-Tiny training step as MAE-Lite's
`mae_lite_exp.py` runs it, fp32, eager, on the CPU:

  - the masked autoencoder of `projects/mae_lite/models_mae.py`
    (`mae_vit_tiny_patch16`: width 192, depth 12, 12 heads; decoder width 96,
    depth 1, 3 heads, MLP ratio 4, as configs/pretrain_mae_tiny.toml), the
    model of the MAE parity fixtures (imported from
    pretrain/tests/fixtures/make_mae_fixtures.py, not repeated here): explicit
    attention logits as MAE-Lite's blocks compute them, fixed sin-cos tables;
  - per-sample random masking 0.75 (fresh noise each step), norm_pix_loss;
  - AdamW(betas 0.9, 0.95), weight decay 0.05 except 1-D parameters and
    biases (timm `create_optimizer`, which skips the frozen position tables).

Prints one JSON line with the keys of `vitdet bench mae`. Memory: the
process's peak resident set size (VmHWM) read after the last step and never
reset, as on the Rust side (the Python runtime and torch's libraries
included, as a user of the script sees them).

    python bench/bench_mae.py --batch 64 --iters 3 --input-size 224 --threads 2
"""
import os
import sys

import torch

import step_bench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pretrain", "tests", "fixtures"))
from make_mae_fixtures import MaskedAutoencoder  # noqa: E402

LR = 1e-4
MASK_RATIO = 0.75
WEIGHT_DECAY = 0.05
BETAS = (0.9, 0.95)
PATCH = 16
# MAE-Tiny as MAE-Lite releases it (maelite-recipes.md §1-2).
MAE_TINY = dict(dim=192, depth=12, heads=12, dec_dim=96, dec_depth=1, dec_heads=3, mlp_ratio=4)


def param_groups(named_parameters):
    """timm's create_optimizer rule over (name, parameter) pairs: no decay for
    1-D parameters and biases; frozen ones (the sin-cos tables) left out."""
    trainable = [(n, p) for n, p in named_parameters if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in trainable if not (p.ndim > 1 and not n.endswith(".bias"))]
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def main():
    a = step_bench.parse_args(__doc__)
    model = MaskedAutoencoder(**MAE_TINY, img_size=a.input_size, patch=PATCH)
    model.train()
    opt = torch.optim.AdamW(param_groups(model.named_parameters()), lr=LR, betas=BETAS)
    imgs = torch.empty(a.batch, 3, a.input_size, a.input_size).uniform_(-2.0, 2.0)
    num_patches = (a.input_size // PATCH) ** 2

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(imgs, torch.rand(a.batch, num_patches), MASK_RATIO, True)[0]
        loss.backward()
        opt.step()

    d = MAE_TINY
    step_bench.report(a, f"MAE-Lite models_mae (dim {d['dim']}, depth {d['depth']}, heads {d['heads']}; "
                         f"decoder dim {d['dec_dim']}, depth {d['dec_depth']}, heads {d['dec_heads']}) @{a.input_size}", step)


if __name__ == "__main__":
    main()
