"""PyTorch side of `vitdet bench data`: torchvision's ImageFolder over the same
JPEGs, timm's training transform (`timm.data.create_transform` at 224 px:
RandomResizedCrop 0.08-1 bicubic, flip 0.5, RandAugment rand-m9-mstd0.5-inc1,
ToTensor + Normalize; no colour jitter, no random erasing), in a DataLoader
with --threads worker processes (each with torch.set_num_threads(1), the
DataLoader's default), batch 32, shuffled, batches collated into tensors.
Prints one JSON line with the same keys as `vitdet bench data`.

    pip install torch torchvision timm
    python bench/bench_data.py --images DIR --threads 2

DIR is an ImageFolder root (DIR/train/CLASS/*.jpg), e.g. the one
`vitdet bench data --images DIR` writes. Timing starts when the first batch
arrives (worker start-up excluded) and stops at the last, as on the Rust side.
"""
import argparse
import json
import os
import time

import timm
import timm.data
import torch
import torchvision
from PIL import ImageOps
from torch.utils.data import DataLoader, RandomSampler

POLICY = "rand-m9-mstd0.5-inc1"


def allow_zero_bit_posterize():
    """timm's PosterizeIncreasing reaches 0 bits at magnitude 10 (m9 plus its
    noise), which Pillow >= 11 refuses; older Pillow returned a black image.
    Restore that behaviour (what vitdet does too), so the loader does not crash."""
    posterize = ImageOps.posterize

    def patched(image, bits):
        if bits >= 1:
            return posterize(image, bits)
        return image.point([0] * 256 * len(image.getbands()))

    ImageOps.posterize = patched


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="timed batches, after one untimed batch")
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    torch.set_num_threads(1)
    allow_zero_bit_posterize()
    transform = timm.data.create_transform(
        a.size, is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
        color_jitter=None, auto_augment=POLICY, interpolation="bicubic", re_prob=0.0,
    )
    dataset = torchvision.datasets.ImageFolder(os.path.join(a.images, "train"), transform=transform)
    total = (a.batches + 1) * a.batch
    sampler = RandomSampler(dataset, num_samples=total, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=a.batch, sampler=sampler, num_workers=a.threads, drop_last=True)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    count = 0
    for images, _ in batches:
        count += images.shape[0]
    seconds = time.perf_counter() - start
    print(json.dumps({
        "pipeline": f"torchvision ImageFolder + timm create_transform({a.size}, RandomResizedCrop bicubic + flip + RandAugment {POLICY} + normalise), DataLoader",
        "threads": a.threads, "batch": a.batch, "images": count, "files": len(dataset),
        "img_s": count / seconds, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }))


if __name__ == "__main__":
    main()
