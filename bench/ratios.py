"""Per-round and median ratios of interleaved benchmark runs, for the
*_vs_torch.sh scripts: the arguments are JSON lines in pairs (vitdet's, then
PyTorch's, round by round), each with `train_img_s` and `peak_rss_mb`.

    python bench/ratios.py OURS_1 THEIRS_1 OURS_2 THEIRS_2 ...
"""
import json
import statistics
import sys


def main(lines):
    runs = [json.loads(s) for s in lines]
    if len(runs) < 2 or len(runs) % 2:
        sys.exit("expected pairs of JSON lines: vitdet's, then PyTorch's, per round")
    pairs = [(runs[i], runs[i + 1]) for i in range(0, len(runs), 2)]
    speed = [o["train_img_s"] / t["train_img_s"] for o, t in pairs]
    mem = [o["peak_rss_mb"] / t["peak_rss_mb"] for o, t in pairs]
    for i, ((o, t), s, m) in enumerate(zip(pairs, speed, mem), 1):
        print(f"round {i}: vitdet {o['train_img_s']:.2f} img/s {o['peak_rss_mb']:.0f} MB, "
              f"pytorch {t['train_img_s']:.2f} img/s {t['peak_rss_mb']:.0f} MB: speed {s:.2f}x, memory {m:.2f}x")
    print(f"median ratio vitdet / pytorch: speed {statistics.median(speed):.2f}x, "
          f"peak memory {statistics.median(mem):.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
