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

Prints one JSON line with the keys of `vitdet bench distill`. Peak memory as
on the Rust side: the process's VmHWM after the last step, never reset.

    python bench/bench_distill.py --batch 16 --iters 2 --threads 2
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_vit import peak_rss_mb

PATCH = 16


def sincos(dim, grid):
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    r, c = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    r, c = r.reshape(-1, 1) * omega, c.reshape(-1, 1) * omega
    table = np.concatenate([np.sin(c), np.cos(c), np.sin(r), np.cos(r)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), table])).float().unsqueeze(0)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.logits = None

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        self.logits = logits
        return self.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Encoder(nn.Module):
    def __init__(self, dim, depth, heads, size):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos_embed", sincos(dim, size // PATCH))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, imgs, ids_shuffle, keep):
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, x.shape[2]))
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class MaeTiny(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.encoder = Encoder(192, 12, 12, size)
        self.decoder_embed = nn.Linear(192, 96)
        self.mask_token = nn.Parameter(torch.randn(1, 1, 96) * 0.02)
        self.register_buffer("decoder_pos_embed", sincos(96, size // PATCH))
        self.decoder_blocks = nn.ModuleList([Block(96, 3)])
        self.decoder_norm, self.decoder_pred = nn.LayerNorm(96, eps=1e-6), nn.Linear(96, PATCH * PATCH * 3)

    def forward(self, imgs, ids_shuffle, keep):
        latent = self.encoder(imgs, ids_shuffle, keep)
        n, l = ids_shuffle.shape
        ids_restore = torch.argsort(ids_shuffle, 1)
        x = self.decoder_embed(latent)
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(n, l - keep, -1)], 1)
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], 1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        h = imgs.shape[2] // PATCH
        target = imgs.reshape(n, 3, h, PATCH, h, PATCH).permute(0, 2, 4, 3, 5, 1).reshape(n, h * h, -1)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        mask = torch.ones(n, l)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    student, teacher = MaeTiny(a.input_size), Encoder(768, 12, 12, a.input_size)
    teacher.eval()
    for q in teacher.parameters():
        q.requires_grad = False
    adapter = nn.Conv2d(12, 12, 1, bias=False)
    params = [(n, q) for n, q in list(student.named_parameters()) + list(adapter.named_parameters())]
    decay = [q for n, q in params if q.ndim > 1 and not n.endswith(".bias")]
    no_decay = [q for n, q in params if not (q.ndim > 1 and not n.endswith(".bias"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    imgs = torch.rand(a.batch, 3, a.input_size, a.input_size) * 4 - 2
    num_patches = (a.input_size // PATCH) ** 2
    keep = int(num_patches * 0.25)

    def step():
        ids_shuffle = torch.argsort(torch.rand(a.batch, num_patches), 1)
        loss = student(imgs, ids_shuffle, keep)
        with torch.no_grad():
            teacher(imgs, ids_shuffle, keep)
        loss = loss + F.mse_loss(adapter(student.encoder.blocks[-1].attn.logits), teacher.blocks[-1].attn.logits.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(a.iters):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"model": f"pytorch mae_vit_tiny + mae_vit_base teacher @{a.input_size}", "threads": a.threads, "batch": a.batch, "iters": a.iters,
                      "input_size": a.input_size, "train_img_s": a.batch * a.iters / seconds, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
