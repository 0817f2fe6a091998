# Shared preamble of the *_vs_torch.sh scripts (sourced, not run): goes to the
# repository root, sets $threads (all cores) and $bin (VITDET_BIN, or a fresh
# release build of target/release/vitdet).
threads=$(nproc)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${VITDET_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/vitdet
fi
