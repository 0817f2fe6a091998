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
#   CPU_BATCHES=M (> BATCHES)  also prints each side's CPU time per image
#                              (user + sys, worker processes included), from
#                              the difference between a BATCHES and an M run
#                              (start-up cancels): a measure that other
#                              tenants' load does not move, unlike images/s.
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
if [ -n "${CPU_BATCHES:-}" ]; then
    cpu_seconds() { /usr/bin/time -f "%U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{print $1 + $2}'; }
    per_image=()
    for side in vitdet pytorch; do
        if [ "$side" = vitdet ]; then run=("$bin" bench data); else run=("$python" bench/bench_data.py); fi
        run+=(--images "$dir" --threads "$threads")
        short=$(cpu_seconds "${run[@]}" --batches "$batches")
        long=$(cpu_seconds "${run[@]}" --batches "$CPU_BATCHES")
        ms=$(awk -v s="$short" -v l="$long" -v n=$(( (CPU_BATCHES - batches) * 32 )) 'BEGIN { printf "%.2f", (l - s) * 1000 / n }')
        echo "$side: $ms ms of CPU per image"
        per_image+=("$ms")
    done
    awk -v v="${per_image[0]}" -v p="${per_image[1]}" 'BEGIN { printf "CPU per image pytorch / vitdet: %.2fx\n", p / v }'
fi
