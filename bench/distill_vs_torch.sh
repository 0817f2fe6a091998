#!/usr/bin/env bash
# Distilled-MAE training step (MAE-Tiny student, MAE ViT-Base teacher, 224 px),
# vitdet next to PyTorch, interleaved on this machine:
#   ROUNDS=3 bench/distill_vs_torch.sh [BATCH=64] [ITERS=3] [PYTHON=~/.venvs/fx/bin/python]
# Each round runs vitdet, then PyTorch (bench/bench_distill.py); prints both JSON
# lines per round, each round's ratios and their median (bench/ratios.py).
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
batch=${1:-64}
iters=${2:-3}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench distill --batch "$batch" --iters "$iters")
    theirs=$("$python" bench/bench_distill.py --batch "$batch" --iters "$iters" --threads "$threads")
    echo "round $round"
    echo "vitdet:  $ours"
    echo "pytorch: $theirs"
    results+=("$ours" "$theirs")
done
"$python" bench/ratios.py "${results[@]}"
