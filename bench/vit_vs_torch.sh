#!/usr/bin/env bash
# ViT-Tiny speed, vitdet next to PyTorch, in one run on this machine:
#   bench/vit_vs_torch.sh [BATCH=32] [ITERS=5] [PYTHON=~/.venvs/fx/bin/python]
# Needs a Python with torch and timm (pip install torch timm). Prints both JSON
# lines and the vitdet/PyTorch ratios that BENCHMARKS.md records.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 1)       repeats vitdet, PyTorch SDPA, PyTorch naive N
#                              times in turn and prints each round's ratios and
#                              their median: on a shared machine the load
#                              changes between runs, and interleaving makes
#                              both sides see the same mix.
set -euo pipefail
batch=${1:-32}
iters=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-1}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench vit --batch "$batch" --iters "$iters")
    theirs=$("$python" bench/torch_vit.py --batch "$batch" --iters "$iters" --threads "$threads")
    naive=$("$python" bench/torch_vit.py --batch "$batch" --iters "$iters" --threads "$threads" --naive-attention)
    echo "round $round"
    echo "vitdet:               $ours"
    echo "pytorch (fused SDPA): $theirs"
    echo "pytorch (naive attn): $naive"
    results+=("$ours" "$theirs" "$naive")
done
"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(s) for s in sys.argv[1:]]
rounds = [runs[i:i + 3] for i in range(0, len(runs), 3)]
for name, j in (("fused SDPA", 1), ("naive attention", 2)):
    inf = [r[0]["infer_img_s"] / r[j]["infer_img_s"] for r in rounds]
    tr = [r[0]["train_img_s"] / r[j]["train_img_s"] for r in rounds]
    mem = [r[0]["train_peak_rss_mb"] / r[j]["train_peak_rss_mb"] for r in rounds]
    for i, (a, b, c) in enumerate(zip(inf, tr, mem), 1):
        print(f"round {i} ratio vs PyTorch {name}: inference {a:.3f}x, training {b:.3f}x, train peak memory {c:.2f}x")
    print(f"median ratio vs PyTorch {name}: inference {statistics.median(inf):.3f}x, "
          f"training {statistics.median(tr):.3f}x, train peak memory {statistics.median(mem):.2f}x")
PY
