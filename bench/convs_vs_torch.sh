#!/usr/bin/env bash
# ViTDet pyramid convolutions (vitdet bench convs), vitdet next to PyTorch, in
# one run on this machine:
#   bench/convs_vs_torch.sh [BATCH=2] [ITERS=5] [PYTHON=~/.venvs/fx/bin/python]
# Needs a Python with torch. Prints every JSON line, each round's ratios and
# their medians over the rounds. A ratio is PyTorch's time over vitdet's: the
# speed of vitdet as a fraction of PyTorch's (above 1: vitdet is faster).
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 3)       runs vitdet and PyTorch in turn N times, so both
#                              see the same mix of load on a shared machine.
#   CHANNELS=C SIZES=a,b,..    the workload's channels and map sides (default
#                              256 and 64,32,16,8; a mask head's ROIs: BATCH=24
#                              CHANNELS=128 SIZES=28,14).
#   COMPOSED=1                 also runs `vitdet bench convs --composed`
#                              (candle's primitives, the "before") each round.
set -euo pipefail
batch=${1:-2}
iters=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-3}
composed=${COMPOSED:-0}
shape=(--channels "${CHANNELS:-256}" --sizes "${SIZES:-64,32,16,8}")
source "$(dirname "$0")/common.sh"
results=()
for round in $(seq "$rounds"); do
    echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" bench convs --batch "$batch" --iters "$iters" "${shape[@]}")
    echo "vitdet:          $ours"
    theirs=$("$python" bench/torch_convs.py --batch "$batch" --iters "$iters" --threads "$threads" "${shape[@]}")
    echo "pytorch:         $theirs"
    before=null
    if [ "$composed" = 1 ]; then
        before=$(RAYON_NUM_THREADS=$threads "$bin" bench convs --batch "$batch" --iters "$iters" "${shape[@]}" --composed)
        echo "vitdet composed: $before"
    fi
    results+=("$ours" "$theirs" "$before")
done
"$python" - "${results[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(s) for s in sys.argv[1:]]
rounds = [runs[i:i + 3] for i in range(0, len(runs), 3)]
med = statistics.median
sides = [("vitdet", 0)] + ([("vitdet composed", 2)] if rounds[0][2] else [])
for name, j in sides:
    fwd = [r[1]["forward_ms"] / r[j]["forward_ms"] for r in rounds]
    tr = [r[1]["train_ms"] / r[j]["train_ms"] for r in rounds]
    for i, (a, b) in enumerate(zip(fwd, tr), 1):
        print(f"round {i} {name} / PyTorch speed: forward {a:.3f}x, forward+backward {b:.3f}x")
    print(f"median {name} / PyTorch speed: forward {med(fwd):.3f}x, forward+backward {med(tr):.3f}x "
          f"(median ms: {name} {med(r[j]['train_ms'] for r in rounds):.0f}, PyTorch {med(r[1]['train_ms'] for r in rounds):.0f})")
    print(f"  per cell, median forward+backward ms {name} / PyTorch (speed ratio):")
    for op in rounds[0][1]["train_ms_by_op"]:
        ours = med(r[j]["train_ms_by_op"][op] for r in rounds)
        theirs = med(r[1]["train_ms_by_op"][op] for r in rounds)
        print(f"    {op:14s} {ours:9.2f} / {theirs:9.2f} ms  ({theirs / ours:.2f}x)")
PY
