"""PyTorch side of `vitdet bench mocov3`: one MoCo-v3 training step of the
released MoCo-v3-Tiny model, built as facebookresearch/moco-v3 builds it
(moco/builder.py MoCo_ViT, vits.py VisionTransformerMoCo; MAE-Lite's
projects/mocov3 reuses them) on timm's VisionTransformer: ViT-Tiny with 12
heads, fixed 2-D sin-cos table, the projector _build_mlp(3, 192, 4096, 256)
as its head, the predictor _build_mlp(2, 256, 4096, 256), a momentum encoder
updated by EMA under no_grad, the symmetric InfoNCE loss scaled by 2T, and
torch.optim.AdamW(model.parameters(), weight_decay=0.1). One process: plain
BatchNorm, no all-gather. fp32, eager, CPU, the same batch, input size,
iteration count and threads as the Rust side, two fixed random views.
Prints one JSON line with the same keys as `vitdet bench mocov3`.

    python bench/bench_mocov3.py --batch 64 --iters 3 --input-size 224 --threads 2

Memory: the process's peak resident set size (VmHWM in /proc/self/status)
read after the last step and never reset, as on the Rust side: the Python
runtime and torch's libraries are included, as a user of the script sees them.
"""
import os
import sys
from functools import partial

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import step_bench

# The ViT with MoCo-v3's table and initialisation, and _build_mlp, as the
# reference fixtures of the MoCo-v3 tests build them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pretrain", "tests", "fixtures"))
from make_mocov3_fixtures import MocoVit, bn_mlp  # noqa: E402

LR = 1e-4
MOMENTUM = 0.99
MLP_DIM, DIM, TEMPERATURE, WEIGHT_DECAY = 4096, 256, 0.2, 0.1


class MoCoViT(nn.Module):
    """moco-v3 MoCo_ViT, single process."""

    def __init__(self, base_encoder, dim, mlp_dim, t):
        super().__init__()
        self.T = t
        self.base_encoder = base_encoder(num_classes=mlp_dim)
        self.momentum_encoder = base_encoder(num_classes=mlp_dim)
        hidden_dim = self.base_encoder.head.weight.shape[1]
        del self.base_encoder.head, self.momentum_encoder.head
        self.base_encoder.head = bn_mlp(3, hidden_dim, mlp_dim, dim)
        self.momentum_encoder.head = bn_mlp(3, hidden_dim, mlp_dim, dim)
        self.predictor = bn_mlp(2, dim, mlp_dim, dim)
        for pb, pm in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            pm.data.copy_(pb.data)
            pm.requires_grad = False

    @torch.no_grad()
    def _update_momentum_encoder(self, m):
        for pb, pm in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            pm.data = pm.data * m + pb.data * (1.0 - m)

    def contrastive_loss(self, q, k):
        q = F.normalize(q, dim=1)
        k = F.normalize(k, dim=1)
        logits = torch.einsum("nc,mc->nm", [q, k]) / self.T
        labels = torch.arange(logits.shape[0], dtype=torch.long)
        return F.cross_entropy(logits, labels) * (2 * self.T)

    def forward(self, x1, x2, m):
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            self._update_momentum_encoder(m)
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)
        return self.contrastive_loss(q1, k2) + self.contrastive_loss(q2, k1)


def main():
    a = step_bench.parse_args(__doc__)
    vit_tiny = partial(MocoVit, img_size=a.input_size, patch_size=16, embed_dim=192, depth=12,
                       num_heads=12, mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    model = MoCoViT(vit_tiny, DIM, MLP_DIM, TEMPERATURE)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    x1 = torch.empty(a.batch, 3, a.input_size, a.input_size).uniform_(-2.0, 2.0)
    x2 = torch.empty(a.batch, 3, a.input_size, a.input_size).uniform_(-2.0, 2.0)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(x1, x2, MOMENTUM)
        loss.backward()
        opt.step()

    step_bench.report(a, f"moco-v3 MoCo_ViT on timm VisionTransformer (dim 192, depth 12, heads 12) "
                         f"projector/predictor {MLP_DIM}/{DIM} @{a.input_size}", step, timm=timm.__version__)


if __name__ == "__main__":
    main()
