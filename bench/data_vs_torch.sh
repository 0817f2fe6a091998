#!/usr/bin/env bash
# Classification training data, vitdet next to torchvision + timm, on this machine:
#   bench/data_vs_torch.sh [DIR=/tmp/vitdet-bench-jpegs] [PYTHON=~/.venvs/fx/bin/python]
# Writes 200 ImageNet-sized JPEGs to DIR/train once (vitdet bench data
# --images DIR), then runs `vitdet bench data` and bench/bench_data.py on them
# with the same number of loader threads / worker processes (all cores),
# ROUNDS times in turn (default 3), and prints each round's ratio and the
# median. Needs a Python with torch, torchvision and timm.
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   BATCHES=N (default 20)     timed batches of 32 per run.
set -euo pipefail
dir=${1:-/tmp/vitdet-bench-jpegs}
python=${2:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
batches=${BATCHES:-20}
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    ours=$("$bin" bench data --images "$dir" --threads "$threads" --batches "$batches")
    theirs=$("$python" bench/bench_data.py --images "$dir" --threads "$threads" --batches "$batches")
    echo "round $round"
    echo "vitdet:  $ours"
    echo "pytorch: $theirs"
    results+=("$ours" "$theirs")
done
"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(s) for s in sys.argv[1:]]
ratios = [runs[i]["img_s"] / runs[i + 1]["img_s"] for i in range(0, len(runs), 2)]
for i, r in enumerate(ratios, 1):
    print(f"round {i}: vitdet {runs[2 * i - 2]['img_s']:.1f} img/s, pytorch {runs[2 * i - 1]['img_s']:.1f} img/s, ratio {r:.2f}x")
print(f"median ratio vitdet / pytorch: {statistics.median(ratios):.2f}x")
PY
