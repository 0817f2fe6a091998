#!/usr/bin/env python3
"""Interleaved vitdet-vs-hotcoco timing with medians: each round runs every given vitdet
binary (subprocess, `vitdet eval coco --gt .. --dt .. -q`) and then hotcoco in-process
(`peers.run_hotcoco`), for bbox and then segm, on the case `vitdet bench coco --write DIR`
wrote; checks hotcoco's 12 stats against DIR/stats.json and prints per-round times,
then median, min and hotcoco-median / median for each binary.

    python coco/bench/vs_hotcoco.py /tmp/coco-bench 7 target/release/vitdet [/path/to/older/vitdet ...]
"""
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import run_hotcoco  # noqa: E402


def main():
    d, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    gt = os.path.join(d, "instances.json")
    ours = json.load(open(os.path.join(d, "stats.json")))
    res = {}
    for it in ["bbox", "segm"]:
        dt = os.path.join(d, f"results_{it}.json")
        for r in range(runs):
            for b in bins:
                s = time.perf_counter()
                subprocess.run([b, "eval", "coco", "--gt", gt, "--dt", dt, "--iou-type", it, "-q"],
                               check=True, stdout=subprocess.DEVNULL)
                res.setdefault((b, it), []).append(time.perf_counter() - s)
            gc.collect()
            s = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                stats = run_hotcoco(gt, dt, it)
            res.setdefault(("hotcoco", it), []).append(time.perf_counter() - s)
            diff = max(abs(a - b) for a, b in zip(stats, ours[it]["stats"]))
            print(it, r, {k[0]: round(v[-1], 3) for k, v in res.items() if k[1] == it},
                  "hotcoco max abs diff", diff, flush=True)
    for it in ["bbox", "segm"]:
        h = statistics.median(res[("hotcoco", it)])
        for b in bins + ["hotcoco"]:
            m = statistics.median(res[(b, it)])
            print(f"{it} {b}: median {m:.3f} s  min {min(res[(b, it)]):.3f} s  hotcoco/this {h / m:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
