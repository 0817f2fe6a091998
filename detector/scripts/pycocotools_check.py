"""Scores a results file written by `vitdet eval coco --weights ... --out R.json`
with pycocotools and prints both 12-line summaries, to compare with vitdet's.

    python detector/scripts/pycocotools_check.py GT.json R.json

The file holds each detection with `bbox` and `segmentation` (as detectron2
writes it). bbox is scored on the file as it is; segm on the same entries with
`bbox` removed, as detectron2's COCOEvaluator does, so that `loadRes` takes
each detection's area from its mask (with a `bbox` present it would take the
box area, which changes the small/medium/large rows).
"""
import copy
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main(gt_path: str, results_path: str) -> None:
    gt = COCO(gt_path)
    with open(results_path) as f:
        results = json.load(f)
    for iou_type in ("bbox", "segm"):
        dets = copy.deepcopy(results)
        if iou_type == "segm":
            for d in dets:
                d.pop("bbox", None)
        else:
            for d in dets:
                d.pop("segmentation", None)
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        print(f"IoU metric: {iou_type}")
        ev.summarize()
        print("stats", json.dumps([float(s) for s in ev.stats]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
