#!/usr/bin/env bash
# ViT-Tiny speed, vitdet next to PyTorch, in one run on this machine:
#   bench/vit_vs_torch.sh [BATCH=32] [ITERS=5] [PYTHON=~/.venvs/fx/bin/python]
# VITDET_BIN=path/to/vitdet skips the build and times that binary instead.
# Needs a Python with torch and timm (pip install torch timm). Prints both JSON
# lines and the vitdet/PyTorch ratios that BENCHMARKS.md records.
set -euo pipefail
batch=${1:-32}
iters=${2:-5}
python=${3:-$HOME/.venvs/fx/bin/python}
threads=$(nproc)
cd "$(dirname "$0")/.."
bin=${VITDET_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/vitdet
fi
ours=$(RAYON_NUM_THREADS=$threads "$bin" bench vit --batch "$batch" --iters "$iters")
theirs=$("$python" bench/torch_vit.py --batch "$batch" --iters "$iters" --threads "$threads")
naive=$("$python" bench/torch_vit.py --batch "$batch" --iters "$iters" --threads "$threads" --naive-attention)
echo "vitdet:               $ours"
echo "pytorch (fused SDPA): $theirs"
echo "pytorch (naive attn): $naive"
"$python" - "$ours" "$theirs" "$naive" <<'PY'
import json, sys
ours, fused, naive = (json.loads(s) for s in sys.argv[1:])
for name, ref in (("fused SDPA", fused), ("naive attention", naive)):
    print(f"ratio vs PyTorch {name}: inference {ours['infer_img_s'] / ref['infer_img_s']:.3f}x, "
          f"training {ours['train_img_s'] / ref['train_img_s']:.3f}x, "
          f"train peak memory {ours['train_peak_rss_mb'] / ref['train_peak_rss_mb']:.2f}x")
PY
