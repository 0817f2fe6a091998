#!/usr/bin/env python3
"""Times vitdet, pycocotools, faster-coco-eval and hotcoco on the case `vitdet bench coco --write DIR`
writes, end to end (load GT, load results, evaluate, accumulate, summarize), and checks
that the peers' 12 stats equal vitdet's (DIR/stats.json, written by the same command).

    pip install pycocotools==2.0.11 faster-coco-eval==1.8.0 hotcoco==1.3.0 numpy
    cargo build --release && target/release/vitdet bench coco --write /tmp/coco-bench
    python coco/bench/peers.py /tmp/coco-bench --vitdet target/release/vitdet [--runs 3] [--skip pycocotools]

Runs are interleaved (each run times every tool once), so load from other processes
spreads evenly. vitdet is timed as a subprocess, `vitdet eval coco --gt .. --dt .. -q`
(process start and the summary print included); the Python tools in-process from
before the GT file is parsed. Prints one JSON line per (tool, iou type, run) and a
table of the best time of each with its ratio to vitdet's best.
"""
import subprocess
import argparse
import contextlib
import gc
import io
import json
import os
import sys
import time


def run_pycocotools(gt, dt, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(dt)
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return list(ev.stats)


def run_faster(gt, dt, iou_type):
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(dt)
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return list(ev.stats)


def run_hotcoco(gt, dt, iou_type):
    from hotcoco import COCO, COCOeval

    coco_gt = COCO(gt)
    coco_dt = coco_gt.load_res(dt)
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return list(ev.stats)


TOOLS = {"pycocotools": run_pycocotools, "faster-coco-eval": run_faster, "hotcoco": run_hotcoco}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip", action="append", default=[], choices=list(TOOLS))
    ap.add_argument("--iou-type", choices=["bbox", "segm", "both"], default="both")
    ap.add_argument("--vitdet", default="target/release/vitdet", help="the vitdet binary")
    args = ap.parse_args()
    gt = os.path.join(args.dir, "instances.json")
    ours = json.load(open(os.path.join(args.dir, "stats.json")))
    types = ["bbox", "segm"] if args.iou_type == "both" else [args.iou_type]
    best = {}
    tools = {name: fn for name, fn in TOOLS.items() if name not in args.skip}
    for iou_type in types:
        dt = os.path.join(args.dir, f"results_{iou_type}.json")
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([args.vitdet, "eval", "coco", "--gt", gt, "--dt", dt, "--iou-type", iou_type, "-q"],
                           check=True, stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            print(json.dumps({"tool": "vitdet", "iou_type": iou_type, "total_s": round(elapsed, 3)}), flush=True)
            best[("vitdet", iou_type)] = min(elapsed, best.get(("vitdet", iou_type), float("inf")))
            for name, fn in tools.items():
                gc.collect()
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    stats = fn(gt, dt, iou_type)
                elapsed = time.perf_counter() - start
                diff = max(abs(a - b) for a, b in zip(stats, ours[iou_type]["stats"]))
                print(json.dumps({"tool": name, "iou_type": iou_type, "total_s": round(elapsed, 3),
                                  "max_abs_diff_vs_vitdet": diff}), flush=True)
                best[(name, iou_type)] = min(elapsed, best.get((name, iou_type), float("inf")))
    print(f"\n| tool | {' | '.join(types)} |\n|---|{'---|' * len(types)}")
    for name in ["vitdet", *tools]:
        cells = []
        for iou_type in types:
            t, v = best[(name, iou_type)], best[("vitdet", iou_type)]
            cells.append(f"{t:.3f} s ({t / v:.1f}x vitdet)" if name != "vitdet" else f"{t:.3f} s")
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
