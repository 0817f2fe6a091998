#!/usr/bin/env bash
# One MoCo-v3 training step of the released ViT-Tiny model, vitdet next to
# moco-v3's MoCo_ViT on timm, on this machine:
#   bench/mocov3_vs_torch.sh [BATCH=64] [ITERS=3] [INPUT_SIZE=224] [PYTHON=~/.venvs/fx/bin/python]
# Runs `vitdet bench mocov3` and bench/bench_mocov3.py with the same threads
# (all cores), ROUNDS times in turn (default 3), and prints each round's
# speed and memory ratios and their medians. Needs torch and timm.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
source "$(dirname "$0")/common.sh"
step_bench_rounds "${4:-$HOME/.venvs/fx/bin/python}" mocov3 bench/bench_mocov3.py --batch "${1:-64}" --iters "${2:-3}" --input-size "${3:-224}"
