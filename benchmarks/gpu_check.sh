#!/usr/bin/env bash
# GPU checks, sized for a lent CUDA machine (< 5 min):
#   1. the CUDA tests (pytest -m gpu): Triton vs eager three-way parity, exact ratio,
#      no host syncs, torch.compile with the Triton backend, and the core CUDA parity test;
#   2. the CUDA benchmark (fp32 with a Triton tile sweep, then bf16), against the bandwidth
#      measured in the same run;
#   3. one real-size transformer block of each backbone (random weights, LoRA fwd+bwd).
# Usage: bash benchmarks/gpu_check.sh   (the log is also written to $OUT/gpu_check.log if OUT is set)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log=/dev/null
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    log="$OUT/gpu_check.log"
fi

run_all() {
    local status=0
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import torch, triton; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| triton', triton.__version__, '|', torch.cuda.get_device_name())" || true
    echo "== CUDA tests"
    # -o addopts= drops the repo's --doctest-modules; -rs lists skips with their reasons.
    timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs --strict-markers -m gpu \
        tests/kernels tests/core || status=$?
    echo "== CUDA benchmark, float32 (+ Triton tile sweep)"
    timeout 80 python3 benchmarks/bench_sde_logprob.py --device cuda --quick --sweep || status=$?
    echo "== CUDA benchmark, bfloat16"
    timeout 40 python3 benchmarks/bench_sde_logprob.py --device cuda --quick --dtype bfloat16 || status=$?
    echo "== Backbone real-size blocks, random weights (issue 4)"
    timeout 120 python3 benchmarks/bench_backbones.py --block --device cuda --dtype bfloat16 --refs 2 || status=$?
    echo "== exit status $status"
    return "$status"
}

run_all 2>&1 | tee "$log"
