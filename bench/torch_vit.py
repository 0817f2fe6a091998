"""PyTorch side of `vitdet bench vit`: timm's vit_tiny_patch16_224 with 12 heads
(the paper's ViT-Tiny), fp32, eager, on the CPU, same batch and iteration
count. Prints one JSON line with the same keys as `vitdet bench vit`.

    pip install torch timm
    python bench/torch_vit.py --batch 32 --iters 5 --threads 2

Peak memory is measured the same way as the Rust side: the kernel's peak-RSS
counter (VmHWM) is reset through /proc/self/clear_refs before each phase.
"""
import argparse
import json
import time

import timm
import torch


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def timed(iters, step):
    step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--naive-attention", action="store_true", help="disable timm's fused SDPA attention")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.naive_attention:
        timm.layers.set_fused_attn(False)
    model = timm.create_model("vit_tiny_patch16_224", num_heads=12, pretrained=False)
    x = torch.randn(a.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (a.batch,))

    model.eval()
    reset_peak_rss()

    def infer():
        with torch.no_grad():
            model(x)

    infer_s = timed(a.iters, infer)
    infer_peak = peak_rss_mb()

    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in ("pos_embed", "cls_token")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    reset_peak_rss()

    def train():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    train_s = timed(a.iters, train)
    train_peak = peak_rss_mb()
    n = a.batch * a.iters
    print(json.dumps({
        "model": "timm vit_tiny_patch16_224 num_heads=12" + (" naive-attn" if a.naive_attention else ""),
        "device": "cpu", "threads": a.threads, "batch": a.batch, "iters": a.iters,
        "infer_img_s": n / infer_s, "train_img_s": n / train_s,
        "infer_peak_rss_mb": infer_peak, "train_peak_rss_mb": train_peak,
        "torch": torch.__version__, "timm": timm.__version__,
    }))


if __name__ == "__main__":
    main()
