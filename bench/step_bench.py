"""What the PyTorch sides of the pre-training step benchmarks
(bench_mae.py, bench_mocov3.py, bench_distill.py) share: their flags (those
of `vitdet bench mae|mocov3|distill`, plus --threads), the warm-up and timed
steps, and the JSON line with the keys of `vitdet bench ...` that
bench/ratios.py reads. Memory is the process's peak resident set size
(VmHWM) after the last step, never reset, as on the Rust side.
"""
import argparse
import json

import torch

from torch_vit import peak_rss_mb, timed


def parse_args(doc):
    """The step benchmark's flags; sets torch's threads and seed 0."""
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=3, help="timed steps, after one warm-up step")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a


def report(a, model, step, **extra):
    """Runs `step` once, then a.iters timed times, and prints the JSON line."""
    seconds = timed(a.iters, step)
    print(json.dumps({
        "model": model, "device": "cpu", "threads": a.threads, "batch": a.batch, "input_size": a.input_size,
        "iters": a.iters, "train_img_s": a.batch * a.iters / seconds, "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__, **extra,
    }))
