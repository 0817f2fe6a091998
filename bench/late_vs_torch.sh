#!/usr/bin/env bash
# The demo's late training steps, vitdet next to the same detector in
# PyTorch, each resumed from its own 600-step run on the same data, in turn:
#   bench/late_vs_torch.sh RUN [STEPS=100] [PYTHON=~/.venvs/fx/bin/python]
# RUN is a finished `vitdet demo --out RUN` (RUN/shapes, RUN/checkpoint). The
# PyTorch side's 600-step state is trained once into RUN/torch600.pt (about
# 9 minutes) and reused. Late in the schedule the RPN's proposals give the
# mask head its full load of foreground ROIs, the heaviest steps of the run;
# both sides continue at the schedule's end (lr ~0), so every round times the
# same work. Prints each side's images/s and the ratio (above 1: vitdet is
# faster).
#   VITDET_BIN=path/to/vitdet  skips the build and times that binary instead.
#   ROUNDS=N (default 2)       runs the two in turn N times.
set -euo pipefail
run=$(realpath "$1")
steps=${2:-100}
python=${3:-$HOME/.venvs/fx/bin/python}
rounds=${ROUNDS:-2}
source "$(dirname "$0")/common.sh"
state=$run/torch600.pt
if [ ! -f "$state" ]; then
    echo "training PyTorch's 600 steps into $state"
    (cd bench && "$python" torch_vitdet_train.py "$run/shapes" --iters 600 --threads "$threads" --state "$state" >/dev/null 2>&1)
fi
end=$((600 + steps))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
    echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
    rm -rf "$out/run" && mkdir "$out/run" && cp -r "$run/checkpoint" "$run/config.toml" "$run/metrics.jsonl" "$out/run/"
    ours=$(RAYON_NUM_THREADS=$threads "$bin" train --config vitdet_tiny_shapes --data "$run/shapes" --out "$out/run" --resume --max-iter "$end" 2>/dev/null | grep '^training:')
    cp "$state" "$out/torch.pt"
    theirs=$(cd bench && "$python" torch_vitdet_train.py "$run/shapes" --iters "$end" --schedule-iters 600 --threads "$threads" --state "$out/torch.pt" 2>/dev/null | tail -1)
    "$python" - "$ours" "$theirs" <<'PY'
import json, re, sys
ours = float(re.search(r"training: ([0-9.]+) images/s", sys.argv[1]).group(1))
theirs = json.loads(sys.argv[2])["train_img_s"]
print(f"late steps: vitdet {ours:.2f}, PyTorch {theirs:.2f} img/s ({ours / theirs:.3f}x)")
PY
done
