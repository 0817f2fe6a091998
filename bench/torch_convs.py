"""PyTorch side of `vitdet bench convs`: the ViTDet pyramid's convolution work
in fp32 eager mode on the CPU, cell by cell, with the same workload, timing
rule and JSON keys as `bench/src/convs.rs`.

    python bench/torch_convs.py --batch 2 --iters 5 --threads 2
    python bench/torch_convs.py --batch 24 --channels 128 --sizes 28,14   # a mask head's ROIs

Workload: batch B of C-channel maps (default 256) at sides S (default 64x64,
32x32, 16x16 and 8x8, the P2..P5 maps of a 256 px image). On each map: Conv2d 3x3 pad 1 without bias,
Conv2d 1x1 without bias, and ConvTranspose2d k2 s2 with bias from the
half-size map; plus MaxPool2d 2x2 on the 64x64 map, kept out of the totals,
and torchvision's roi_align on that map read as P2 (128 boxes an image, 7x7,
sampling_ratio 0, aligned; the boxes of `roi_boxes` in bench/src/convs.rs), also
kept out.
Forward is under torch.no_grad(); forward + backward is y.sum(), then
backward() into the input, weight and bias. Each cell
runs once untimed, then `iters` times; its time is the median run.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

CONVS = ["conv3x3", "conv1x1", "deconv2x2"]
ROIS_PER_IMAGE = 128
STEPS = [0.6180339887, 0.7548776662, 0.5698402910, 0.4301597090]


def roi_boxes(batch, side):
    """The boxes of bench/src/convs.rs `roi_boxes`, row for row."""
    image = 4.0 * side
    rows = []
    for b in range(batch):
        for i in range(ROIS_PER_IMAGE):
            u = [((i + 1) * step) % 1.0 for step in STEPS]
            w, h = image * (1 / 16 + u[0] * 7 / 16), image * (1 / 16 + u[1] * 7 / 16)
            x, y = u[2] * (image - w), u[3] * (image - h)
            rows.append([b, x, y, x + w, y + h])
    return torch.tensor(rows, dtype=torch.float32)


def uniform(shape, scale):
    return (torch.rand(shape) * 2 - 1) * scale


def cell_inputs(cell, side, batch, c):
    x_side = side // 2 if cell == "deconv2x2" else side
    x = uniform((batch, c, x_side, x_side), 1.0)
    if cell == "conv3x3":
        return x, uniform((c, c, 3, 3), (9 * c) ** -0.5), None
    if cell == "conv1x1":
        return x, uniform((c, c, 1, 1), c ** -0.5), None
    if cell == "deconv2x2":
        s = (4 * c) ** -0.5
        return x, uniform((c, c, 2, 2), s), uniform((c,), s)
    if cell == "roialign7":
        return x, None, roi_boxes(batch, side)
    return x, None, None


def apply(cell, x, w, b):
    if cell == "roialign7":
        return roi_align(x, b, (7, 7), 0.25, 0, True)
    if cell == "conv3x3":
        return F.conv2d(x, w, b, padding=1)
    if cell == "conv1x1":
        return F.conv2d(x, w, b)
    if cell == "deconv2x2":
        return F.conv_transpose2d(x, w, b, stride=2)
    return F.max_pool2d(x, 2, 2)


def median_ms(iters, step):
    step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_cell(cell, side, batch, channels, iters):
    x, w, b = cell_inputs(cell, side, batch, channels)

    def forward():
        with torch.no_grad():
            apply(cell, x, w, b)

    fwd = median_ms(iters, forward)
    leaves = [t.requires_grad_() for t in (x, w, b if cell != "roialign7" else None) if t is not None]

    def train():
        for t in leaves:
            t.grad = None
        apply(cell, x, w, b).sum().backward()

    return fwd, median_ms(iters, train)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[64, 32, 16, 8])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fwd_by_op, train_by_op = {}, {}
    for side in a.sizes:
        for cell in CONVS:
            f, t = time_cell(cell, side, a.batch, a.channels, a.iters)
            fwd_by_op[f"{cell}@{side}"], train_by_op[f"{cell}@{side}"] = f, t
    for cell in ["maxpool2x2", "roialign7"]:
        f, t = time_cell(cell, a.sizes[0], a.batch, a.channels, a.iters)
        fwd_by_op[f"{cell}@{a.sizes[0]}"], train_by_op[f"{cell}@{a.sizes[0]}"] = f, t
    convs = [k for k in train_by_op if k.split("@")[0] in CONVS]
    print(json.dumps({
        "workload": f"torch pyramid convs: conv3x3 pad 1 + conv1x1 (no bias) + deconv k2 s2 (bias) at {a.sizes}, {a.channels} channels",
        "kernels": "torch", "device": "cpu", "threads": a.threads, "batch": a.batch, "channels": a.channels,
        "iters": a.iters,
        "forward_ms": sum(fwd_by_op[k] for k in convs), "train_ms": sum(train_by_op[k] for k in convs),
        "forward_ms_by_op": fwd_by_op, "train_ms_by_op": train_by_op,
        "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
    }))


if __name__ == "__main__":
    main()
