"""The demo run in PyTorch: the detector of bench/torch_vitdet.py trained and
evaluated on a shapes dataset with the demo recipe's schedule, to set vitdet's
demo AP and wall time beside PyTorch's on the same machine and the same data.

    vitdet demo --out /tmp/demo                          # writes /tmp/demo/shapes
    python bench/torch_vitdet_train.py /tmp/demo/shapes --iters 600 --threads 2

Recipe (configs/vitdet_tiny_shapes.toml, as cpu-demo-calibration.md): batch 4,
horizontal flip, AdamW lr 3e-4 (betas 0.9/0.999, weight decay 0.05 on every
parameter, as the calibration), 50-iteration linear warmup from 0 then cosine
to 0 over `--iters`, gradient clipping at norm 5, pixels normalised with the
ImageNet mean and std. Evaluation: the validation split through pycocotools
(bbox and segm; masks pasted by torchvision and thresholded at 0.5). Prints a
progress line every 50 steps and one JSON line at the end.

`--state FILE` keeps the run in FILE (model, optimizer, step): saved at the
end, and resumed from when it exists. With `--schedule-iters 600 --iters 700`
on a 600-step state it times 100 late steps at the schedule's end, the
workload of bench/late_vs_torch.sh.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from torch_vitdet import build

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def load_split(root, split):
    """(coco, [(image tensor, target)], category ids): crowds dropped, images
    without objects skipped for training."""
    coco = COCO(os.path.join(root, "annotations", f"instances_{split}.json"))
    cat_ids = sorted(coco.getCatIds())
    label = {c: i + 1 for i, c in enumerate(cat_ids)}
    items = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        pixels = np.asarray(Image.open(os.path.join(root, split, info["file_name"])).convert("RGB"))
        image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])) if anns else torch.zeros(0, *pixels.shape[:2], dtype=torch.uint8),
        }
        items.append((image_id, image, target))
    return coco, items, cat_ids


def flipped(image, target):
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {"boxes": boxes, "labels": target["labels"], "masks": target["masks"].flip(-1)}


def lr_at(step, iters, base, warmup=50):
    if step < warmup:
        return base * step / warmup
    t = (step - warmup) / max(1, iters - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * t))


def evaluate(model, coco, items, cat_ids, batch):
    model.eval()
    results = []
    start = time.perf_counter()
    with torch.no_grad():
        for k in range(0, len(items), batch):
            chunk = items[k:k + batch]
            outputs = model([image for _, image, _ in chunk])
            for (image_id, _, _), out in zip(chunk, outputs):
                masks = (out["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
                for box, score, lab, m in zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist(), masks):
                    rle = mask_utils.encode(np.asfortranarray(m))
                    rle["counts"] = rle["counts"].decode("ascii")
                    x0, y0, x1, y1 = box
                    results.append({"image_id": image_id, "category_id": cat_ids[lab - 1], "score": score,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
    infer_s = time.perf_counter() - start
    stats = {}
    for iou_type in ["bbox", "segm"]:
        if not results:
            stats[iou_type] = [0.0] * 12
            continue
        e = COCOeval(coco, coco.loadRes(results), iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
        stats[iou_type] = [float(s) for s in e.stats]
    return stats, len(items) / infer_s


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a shapes dataset (DIR/annotations/instances_{train,val}.json, DIR/{train,val}/)")
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule-iters", type=int, help="length of the warmup-cosine schedule (default: --iters)")
    p.add_argument("--state", help="resume from this file when it exists (model, optimizer, step) and save there at the end")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    _, train, cat_ids = load_split(a.data, "train")
    train = [t for t in train if len(t[2]["labels"]) > 0]
    val_coco, val, _ = load_split(a.data, "val")
    model = build(len(cat_ids))
    model.transform.image_mean, model.transform.image_std = MEAN, STD
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)

    first = 0
    if a.state and os.path.exists(a.state):
        saved = torch.load(a.state)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        first = saved["step"]
        rng = np.random.default_rng(a.seed + first)

    model.train()
    order, cursor = rng.permutation(len(train)), 0
    start = time.perf_counter()
    for step in range(first, a.iters):
        images, targets = [], []
        for _ in range(a.batch):
            if cursor == len(order):
                order, cursor = rng.permutation(len(train)), 0
            _, image, target = train[order[cursor]]
            cursor += 1
            if rng.random() < 0.5:
                image, target = flipped(image, target)
            images.append(image)
            targets.append(target)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a.schedule_iters or a.iters, a.lr)
        losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if (step + 1 - first) % 50 == 0:
            seconds = time.perf_counter() - start
            print(f"iter {step + 1}/{a.iters}  loss {loss.item():.4f}  {(step + 1 - first) * a.batch / seconds:.2f} img/s  {seconds:.0f}s", flush=True)
    train_s = time.perf_counter() - start
    steps = a.iters - first
    if a.state:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": a.iters}, a.state)

    stats, infer_img_s = evaluate(model, val_coco, val, cat_ids, a.batch)
    print(json.dumps({
        "iters": steps, "batch": a.batch, "threads": a.threads, "train_seconds": train_s,
        "train_img_s": steps * a.batch / train_s, "infer_img_s": infer_img_s,
        "bbox_AP": stats["bbox"][0], "bbox_AP50": stats["bbox"][1],
        "segm_AP": stats["segm"][0], "segm_AP50": stats["segm"][1],
    }))


if __name__ == "__main__":
    main()
