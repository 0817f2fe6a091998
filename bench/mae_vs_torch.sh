#!/usr/bin/env bash
# One MAE-Tiny training step of the released recipe, vitdet next to MAE-Lite's
# models_mae (bench/bench_mae.py), on this machine:
#   ROUNDS=3 bench/mae_vs_torch.sh [BATCH=64] [ITERS=3] [INPUT_SIZE=224] [PYTHON=~/.venvs/fx/bin/python]
# Runs `vitdet bench mae` and bench/bench_mae.py with the same threads (all
# cores), ROUNDS times in turn (default 3), prints each round's JSON lines and
# load average, and each round's speed and memory ratios and their medians.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
set -euo pipefail
source "$(dirname "$0")/common.sh"
step_bench_rounds "${4:-$HOME/.venvs/fx/bin/python}" mae bench/bench_mae.py --batch "${1:-64}" --iters "${2:-3}" --input-size "${3:-224}"
