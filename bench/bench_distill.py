"""PyTorch side of `vitdet bench distill`: one distilled-MAE training step as
MAE-Lite's `mae_lite_distill_exp.py` runs it, fp32, eager, on the CPU:

  - student: MAE-Tiny (`mae_vit_tiny_patch16`: width 192, depth 12, 12 heads,
    decoder width 96, depth 1, 3 heads, norm_pix_loss), random masking 0.75;
  - teacher: the MAE ViT-Base encoder (width 768, depth 12, 12 heads), frozen,
    eval mode, under no_grad, on the student's shuffle;
  - MAE-Lite's attention blocks (explicit q k^T * scale, the logits caught
    before softmax, as its `attn.identity` hook does), the last block's logits
    distilled through Conv2d(12, 12, 1, bias=False) with MSE, weight 1;
  - AdamW(betas 0.9, 0.95), weight decay 0.05 except 1-D parameters and biases.

Student and teacher are the MAE of the parity fixtures
(pretrain/tests/fixtures/make_mae_fixtures.py), sized and imported as
bench/bench_mae.py does; the teacher's `forward_encoder` draws the same
shuffle from the same noise.

Prints one JSON line with the keys of `vitdet bench distill`. Peak memory as
on the Rust side: the process's VmHWM after the last step, never reset.

    python bench/bench_distill.py --batch 16 --iters 2 --threads 2
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import step_bench
from bench_mae import BETAS, LR, MAE_TINY, MASK_RATIO, PATCH, MaskedAutoencoder, param_groups

# The MAE teacher's decoder is never run (MAE-Lite drops its weights): the
# smallest one the fixture model takes, so that it costs no memory.
TEACHER = dict(dim=768, depth=12, heads=12, dec_dim=4, dec_depth=0, dec_heads=1)


def main():
    a = step_bench.parse_args(__doc__)
    student = MaskedAutoencoder(**MAE_TINY, img_size=a.input_size, patch=PATCH)
    teacher = MaskedAutoencoder(**TEACHER, img_size=a.input_size, patch=PATCH)
    teacher.eval()
    for q in teacher.parameters():
        q.requires_grad = False
    adapter = nn.Conv2d(12, 12, 1, bias=False)
    opt = torch.optim.AdamW(param_groups(list(student.named_parameters()) + list(adapter.named_parameters())), lr=LR, betas=BETAS)
    imgs = torch.rand(a.batch, 3, a.input_size, a.input_size) * 4 - 2
    num_patches = (a.input_size // PATCH) ** 2

    def step():
        noise = torch.rand(a.batch, num_patches)
        loss = student(imgs, noise, MASK_RATIO, True)[0]
        with torch.no_grad():
            teacher.forward_encoder(imgs, noise, MASK_RATIO)
        loss = loss + F.mse_loss(adapter(student.blocks[-1].attn.logits), teacher.blocks[-1].attn.logits.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step_bench.report(a, f"pytorch mae_vit_tiny + mae_vit_base teacher @{a.input_size}", step)


if __name__ == "__main__":
    main()
