#!/usr/bin/env bash
# One fine-tuning step of the ViT-Tiny classifier, vitdet next to timm, on this machine:
#   bench/finetune_vs_torch.sh [BATCH=32] [ITERS=5] [PYTHON=~/.venvs/fx/bin/python]
# Runs `vitdet bench finetune` and bench/bench_finetune.py with the same
# threads (all cores), ROUNDS times in turn (default 3), and prints each
# round's speed and memory ratios and their medians. Needs torch and timm.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
source "$(dirname "$0")/common.sh"
step_bench_rounds "${3:-$HOME/.venvs/fx/bin/python}" finetune bench/bench_finetune.py --batch "${1:-32}" --iters "${2:-5}"
