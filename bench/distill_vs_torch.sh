#!/usr/bin/env bash
# Distilled-MAE training step (MAE-Tiny student, MAE ViT-Base teacher, 224 px),
# vitdet next to PyTorch, interleaved on this machine:
#   ROUNDS=3 bench/distill_vs_torch.sh [BATCH=64] [ITERS=3] [PYTHON=~/.venvs/fx/bin/python]
# Each round runs vitdet, then PyTorch (bench/bench_distill.py); prints both JSON
# lines per round, each round's ratios and their median (bench/ratios.py).
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
source "$(dirname "$0")/common.sh"
step_bench_rounds "${3:-$HOME/.venvs/fx/bin/python}" distill bench/bench_distill.py --batch "${1:-64}" --iters "${2:-3}"
