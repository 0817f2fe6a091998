"""PyTorch side of `vitdet bench finetune`: one fine-tuning step of timm's
vit_tiny_patch16_224 with 12 heads (the paper's ViT-Tiny), global average
pooling + fc_norm, 1000 classes, drop path 0, in training mode: forward,
cross-entropy, backward, AdamW from timm's create_optimizer_v2 with MAE-Lite's
fine-tuning groups (weight decay 0.05, none on biases / norms / embeddings,
layer decay 0.85). fp32, eager, CPU, same batch, iteration count and threads.
Prints one JSON line with the same keys as `vitdet bench finetune`.

    pip install torch timm
    python bench/bench_finetune.py --batch 32 --iters 5 --threads 2

Memory: the process's peak resident set size (VmHWM in /proc/self/status)
read after the last step and never reset, as on the Rust side: the Python
runtime and torch's libraries are included, as a user of the script sees them.
"""
import argparse
import json
import time

import timm
import torch
from timm.optim import create_optimizer_v2


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=5, help="timed steps, after one warm-up step")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_heads=12, global_pool="avg", num_classes=1000,
                              drop_path_rate=0.0, pretrained=False)
    model.train()
    opt = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05, layer_decay=0.85)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.empty(a.batch, 3, 224, 224).uniform_(-2.0, 2.0)
    y = torch.randint(0, 1000, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(a.iters):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "model": "timm vit_tiny_patch16_224 num_heads=12 global_pool=avg (fc_norm), 1000 classes @224",
        "device": "cpu", "threads": a.threads, "batch": a.batch, "iters": a.iters,
        "train_img_s": a.batch * a.iters / seconds, "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__, "timm": timm.__version__,
    }))


if __name__ == "__main__":
    main()
