"""PyTorch side of `vitdet bench vitdet` for the CPU demo recipe
(configs/vitdet_tiny_shapes.toml): the same detector built from timm and
torchvision, timed with the same workload and printing the same JSON keys.

    python bench/torch_vitdet.py --batch 4 --iters 10 --threads 2 --classes 5
    python bench/torch_vitdet.py --recipe paper --batch 2 --iters 2   # 640 px

`--recipe paper` builds configs/vitdet_tiny_coco.toml's model instead: a
detectron2-style ViT-Tiny at 640 px (window attention of 14 in blocks
0,1,3,4,6,7,9,10, global in 2,5,8,11, decomposed relative positions, the
14x14 absolute table resized bicubically every forward, attention written
out as detectron2's `Attention` does), the pyramid at 256 channels, an RPN
of two 3x3 convolutions sampling 256 anchors (2000/1000 pre/post-NMS in
training, 1000/1000 at test), anchors 32..512, a 4conv1fc box head with
channels-first LayerNorm and fc 1024 on 512 ROIs, and a mask head of four
3x3 LayerNorm convolutions of 256.

The model follows the recipe's sizes: ViT-Tiny (patch 16, 12 heads, global
attention) at 128 px; a simple feature pyramid (2x2 transposed convolutions,
channels-first LayerNorm and GELU up to stride 4, max-pool to stride 32, then
1x1 and 3x3 convolutions without bias, each followed by LayerNorm, 128
channels; P6 by stride-2 subsampling of P5); torchvision's Mask R-CNN heads
with anchors 8..128 px and ratios 0.5/1/2, an RPN with one 3x3 convolution
sampling 64 anchors an image, pre/post-NMS top-k 1000/500 (train) and
500/200 (test), RoIAlign with adaptive sampling, a 2 x fc 512 box head on 128
sampled ROIs at 0.25 positives, and a mask head of two 3x3 convolutions of 128
channels on 14x14 pools with a 2x2 transposed convolution to 28x28.
Differences from vitdet's model: no relative position terms in the backbone
(timm's ViT has none), and torchvision's inference pastes the masks into the
image, which `vitdet bench vitdet` leaves out.

Workload: random pixels in [-2, 2), `--objects` random boxes an image
(default 3; 1/8 to 1/2 of the side) with their rectangles as masks, as `bench/src/vitdet.rs`.
A training step is forward, the five losses, backward and AdamW; inference
is the model in eval mode under no_grad. Each phase runs once untimed, then
`iters` times. Peak memory as bench/torch_vit.py measures it (VmHWM, reset
before each phase).
"""
import argparse
import json
from collections import OrderedDict

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from torch_vit import peak_rss_mb, reset_peak_rss, timed

SIZE = 128
CHANNELS = 128
PAPER_SIZE = 640
PAPER_CHANNELS = 256


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map."""

    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from the stride-16 token map: P2..P5, then P6."""

    def __init__(self, vit, dim=192, out=CHANNELS, cls_token=True):
        super().__init__()
        self.vit = vit
        self.cls_token = cls_token
        self.out_channels = out
        self.scales = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)),
            nn.ConvTranspose2d(dim, dim // 2, 2, 2),
            nn.Identity(),
            nn.MaxPool2d(2, 2),
        ])
        widths = [dim // 4, dim // 2, dim, dim]
        self.outputs = nn.ModuleList([
            nn.Sequential(nn.Conv2d(w, out, 1, bias=False), LayerNorm2d(out),
                          nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))
            for w in widths
        ])

    def forward(self, images):
        tokens = self.vit.forward_features(images)[:, int(self.cls_token):]
        b, n, c = tokens.shape
        side = int(n ** 0.5)
        x = tokens.transpose(1, 2).reshape(b, c, side, side)
        maps = [head(scale(x)) for scale, head in zip(self.scales, self.outputs)]
        maps.append(F.max_pool2d(maps[-1], 1, 2))
        return OrderedDict((f"p{i + 2}", m) for i, m in enumerate(maps))


def rel_index(size):
    """(size, size) table rows of each query-key offset along one axis."""
    pos = torch.arange(size)
    return pos[:, None] - pos[None, :] + size - 1


class RelPosAttention(nn.Module):
    """detectron2's ViT attention: scaled q k^T plus the decomposed
    relative positions, softmax, then v, over (B, h, w, C) tokens."""

    def __init__(self, dim, heads, side):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * side - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * side - 1, dim // heads))
        self.register_buffer("index", rel_index(side), persistent=False)

    def forward(self, x):
        b, h, w, c = x.shape
        d = c // self.heads
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4).reshape(3, b * self.heads, h * w, d).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        grid_q = q.reshape(b * self.heads, h, w, d)
        along_h = torch.einsum("byxc,yic->byxi", grid_q, self.rel_pos_h[self.index])
        along_w = torch.einsum("byxc,xjc->byxj", grid_q, self.rel_pos_w[self.index])
        logits = (logits.view(-1, h, w, h, w) + along_h[..., :, None] + along_w[..., None, :]).view(-1, h * w, h * w)
        out = (logits.softmax(-1) @ v).view(b, self.heads, h, w, d).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.proj(out)


class WindowedBlock(nn.Module):
    """Pre-norm block; attention inside zero-padded windows when `window` > 0."""

    def __init__(self, dim, heads, window, grid):
        super().__init__()
        self.window = window
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = RelPosAttention(dim, heads, window or grid)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        y = self.norm1(x)
        if self.window:
            b, h, w, c = y.shape
            s = self.window
            y = F.pad(y, (0, 0, 0, -w % s, 0, -h % s))
            hp, wp = y.shape[1:3]
            y = y.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, c)
            y = self.attn(y).view(b, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)[:, :h, :w]
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class WindowedViT(nn.Module):
    """detectron2's ViT-Tiny backbone for ViTDet; `forward_features` gives
    the (B, N, C) token map without a cls token, as the pyramid reads it."""

    def __init__(self, size=PAPER_SIZE, dim=192, depth=12, heads=12, window=14, global_blocks=(2, 5, 8, 11)):
        super().__init__()
        self.grid = size // 16
        self.patch_embed = nn.Conv2d(3, dim, 16, 16)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + 14 * 14, dim) * 0.02)
        self.blocks = nn.ModuleList(WindowedBlock(dim, heads, 0 if i in global_blocks else window, self.grid) for i in range(depth))

    def forward_features(self, images):
        x = self.patch_embed(images).permute(0, 2, 3, 1)
        table = self.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
        x = x + F.interpolate(table, size=x.shape[1:3], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return x.flatten(1, 2)


def build_paper(num_classes):
    """configs/vitdet_tiny_coco.toml's model in detectron2's layout."""
    backbone = SimpleFeaturePyramid(WindowedViT(), out=PAPER_CHANNELS, cls_token=False)
    anchors = AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    levels = ["p2", "p3", "p4", "p5"]
    c = PAPER_CHANNELS
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=PAPER_SIZE, max_size=PAPER_SIZE, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c, 3, conv_depth=2),
        rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=1000, rpn_post_nms_top_n_test=1000,
        rpn_batch_size_per_image=256,
        box_roi_pool=MultiScaleRoIAlign(levels, 7, sampling_ratio=0),
        box_head=FastRCNNConvFCHead((c, 7, 7), [c] * 4, [1024], norm_layer=LayerNorm2d),
        box_predictor=FastRCNNPredictor(1024, num_classes + 1),
        box_batch_size_per_image=512,
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(c, [c] * 4, 1, norm_layer=LayerNorm2d),
        mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
    )


def build(num_classes):
    vit = timm.create_model("vit_tiny_patch16_224", img_size=SIZE, num_heads=12, num_classes=0,
                            global_pool="", pretrained=False)
    backbone = SimpleFeaturePyramid(vit)
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    levels = ["p2", "p3", "p4", "p5"]
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=SIZE, max_size=SIZE, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(CHANNELS, 3, conv_depth=1),
        rpn_pre_nms_top_n_train=1000, rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_train=500, rpn_post_nms_top_n_test=200,
        rpn_batch_size_per_image=64,
        box_roi_pool=MultiScaleRoIAlign(levels, 7, sampling_ratio=0),
        box_head=TwoMLPHead(CHANNELS * 49, 512),
        box_predictor=FastRCNNPredictor(512, num_classes + 1),
        box_batch_size_per_image=128,
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, sampling_ratio=0),
        mask_head=MaskRCNNHeads(CHANNELS, [CHANNELS, CHANNELS], 1),
        mask_predictor=MaskRCNNPredictor(CHANNELS, CHANNELS, num_classes + 1),
    )


def random_targets(batch, num_classes, gen, objects=3, size=SIZE):
    targets = []
    for _ in range(batch):
        boxes, masks = [], []
        for _ in range(objects):
            w, h = (size / 8 + torch.rand(2, generator=gen) * (size / 2 - size / 8)).tolist()
            x, y = (torch.rand(1, generator=gen).item() * (size - w), torch.rand(1, generator=gen).item() * (size - h))
            boxes.append([x, y, x + w, y + h])
            m = torch.zeros(size, size, dtype=torch.uint8)
            m[int(y):int(y + h), int(x):int(x + w)] = 1
            masks.append(m)
        labels = torch.randint(1, num_classes + 1, (objects,), generator=gen)
        targets.append({"boxes": torch.tensor(boxes), "labels": labels, "masks": torch.stack(masks)})
    return targets


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--objects", type=int, default=3, help="random objects an image (foreground ROIs of the mask head)")
    p.add_argument("--recipe", choices=["demo", "paper"], default="demo", help="demo: vitdet_tiny_shapes at 128 px; paper: vitdet_tiny_coco at 640 px")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, size = (build_paper(a.classes), PAPER_SIZE) if a.recipe == "paper" else (build(a.classes), SIZE)
    params = sum(p.numel() for p in model.parameters())
    images = list(torch.rand(a.batch, 3, size, size, generator=gen) * 4 - 2)
    targets = random_targets(a.batch, a.classes, gen, a.objects, size)

    model.eval()
    reset_peak_rss()

    detections = []

    def infer():
        with torch.no_grad():
            detections[:] = [len(o["boxes"]) for o in model(images)]

    infer_s = timed(a.iters, infer)
    infer_peak = peak_rss_mb()

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    reset_peak_rss()

    def train():
        opt.zero_grad(set_to_none=True)
        losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()

    train_s = timed(a.iters, train)
    train_peak = peak_rss_mb()
    n = a.batch * a.iters
    print(json.dumps({
        "model": f"ViT-Tiny + torchvision Mask R-CNN ({a.recipe} recipe)", "size": size, "params": params,
        "device": "cpu", "threads": a.threads, "batch": a.batch, "iters": a.iters,
        "train_img_s": n / train_s, "infer_img_s": n / infer_s,
        "detections_per_image": sum(detections) / len(detections),
        "train_peak_rss_mb": train_peak, "infer_peak_rss_mb": infer_peak,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
    }))


if __name__ == "__main__":
    main()
