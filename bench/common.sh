# Shared preamble of the *_vs_torch.sh scripts (sourced, not run): goes to the
# repository root, sets $threads (all cores) and $bin (VITDET_BIN, or a fresh
# release build of target/release/vitdet), and defines step_bench_rounds (below)
# for the pre-training step benchmarks.
threads=$(nproc)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${VITDET_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/vitdet
fi

# step_bench_rounds PYTHON METHOD SCRIPT FLAGS...: the training-step
# benchmarks' interleaved rounds (finetune, mae, mocov3, distill). Runs `vitdet bench METHOD FLAGS` and the
# PyTorch side `PYTHON SCRIPT FLAGS --threads $threads` in turn, ROUNDS times
# (default 3), printing the load average and both JSON lines of each round,
# then each round's speed and memory ratios and their medians (bench/ratios.py).
step_bench_rounds() {
    local python=$1 method=$2 script=$3
    shift 3
    local results=() round ours theirs
    for round in $(seq "${ROUNDS:-3}"); do
        echo "round $round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
        ours=$(RAYON_NUM_THREADS=$threads "$bin" bench "$method" "$@")
        echo "vitdet:  $ours"
        theirs=$("$python" "$script" "$@" --threads "$threads")
        echo "pytorch: $theirs"
        results+=("$ours" "$theirs")
    done
    echo "after the rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$python" bench/ratios.py "${results[@]}"
}
