"""The peer of `vitdet bench cka`: the same minibatch linear CKA (unbiased HSIC,
Nguyen et al. Eq. 3, HSIC terms averaged over minibatches of equal size, the
ragged rest dropped; Gram matrices in float64) in NumPy and in PyTorch, timed
on the same features file.

    python bench/cka_numpy.py --write F.safetensors [--images 256 --layers 7]
    python bench/cka_numpy.py --time F.safetensors --impl numpy|torch [--batch 128]
    python bench/cka_numpy.py --write-vit DIR   # two random timm ViT-Tiny checkpoints

`--write` makes ViT-Tiny-sized representations (patch tokens 196 x 192 per
image, float32, seed 0), each layer a noisy mix of the previous one so the
matrix is not trivial. Prints one JSON line like `vitdet bench cka`.
"""
import argparse
import json
import os
import time

import numpy as np

TOKENS, WIDTH = 196, 192


def hsic_terms_numpy(k, l):
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    kr, lr = k.sum(1), l.sum(1)
    return (np.sum(k * l) + kr.sum() * lr.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kr @ lr) / (n * (n - 3))


def cka_numpy(layers, batch):
    n = layers[0].shape[0]
    nl = len(layers)
    cross = np.zeros((nl, nl))
    for b in range(n // batch):
        grams = []
        for x in layers:
            xb = x[b * batch:(b + 1) * batch].reshape(batch, -1).astype(np.float64)
            grams.append(xb @ xb.T)
        for i in range(nl):
            for j in range(nl):
                cross[i, j] += hsic_terms_numpy(grams[i], grams[j])
    d = np.sqrt(np.diag(cross))
    return cross / np.outer(d, d)


def cka_torch(layers, batch):
    import torch

    n = layers[0].shape[0]
    nl = len(layers)
    cross = torch.zeros((nl, nl), dtype=torch.float64)
    ts = [torch.from_numpy(x) for x in layers]
    for b in range(n // batch):
        grams = []
        for x in ts:
            xb = x[b * batch:(b + 1) * batch].reshape(batch, -1).double()
            g = xb @ xb.T
            g.fill_diagonal_(0.0)
            grams.append(g)
        rows = [g.sum(1) for g in grams]
        for i in range(nl):
            for j in range(nl):
                k, l = grams[i], grams[j]
                cross[i, j] += ((k * l).sum() + rows[i].sum() * rows[j].sum() / ((batch - 1) * (batch - 2))
                                - 2.0 / (batch - 2) * rows[i] @ rows[j]) / (batch * (batch - 3))
    d = torch.sqrt(torch.diag(cross))
    return (cross / torch.outer(d, d)).numpy()


def write_features(path, images, layers):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    x = rng.standard_normal((images, TOKENS, WIDTH), dtype=np.float32)
    out = {}
    for i in range(layers):
        out[f"layer.{i:02d}"] = x
        x = (0.8 * x + 0.6 * rng.standard_normal(x.shape, dtype=np.float32)).astype(np.float32)
    save_file(out, path)


def write_vits(out_dir):
    import timm
    import torch
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    for seed, name in ((0, "vit_tiny_seed0"), (1, "vit_tiny_seed1")):
        torch.manual_seed(seed)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"{name}.safetensors"))
        print(os.path.join(out_dir, f"{name}.safetensors"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write")
    p.add_argument("--write-vit")
    p.add_argument("--time")
    p.add_argument("--impl", default="numpy", choices=["numpy", "torch"])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--layers", type=int, default=7)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    if a.write:
        write_features(a.write, a.images, a.layers)
    if a.write_vit:
        write_vits(a.write_vit)
    if a.time:
        from safetensors.numpy import load_file

        tensors = load_file(a.time)
        layers = [tensors[k] for k in sorted(tensors)]
        start = time.perf_counter()
        m = (cka_numpy if a.impl == "numpy" else cka_torch)(layers, a.batch)
        seconds = time.perf_counter() - start
        print(json.dumps({"impl": a.impl, "images": layers[0].shape[0], "layers": len(layers), "batch": a.batch,
                          "seconds": seconds, "cka_first_last": float(m[0, -1])}))


if __name__ == "__main__":
    main()
