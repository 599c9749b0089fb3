#!/usr/bin/env bash
# GPU checks, sized for a lent CUDA machine (< 5 min):
#   1. the CUDA tests (pytest -m gpu): Triton vs eager three-way parity, exact ratio,
#      no host syncs, torch.compile with the Triton backend, and the core CUDA parity test;
#   2. the CUDA benchmark (fp32 with a Triton tile sweep, then bf16), against the bandwidth
#      measured in the same run;
#   3. one real-size transformer block of each backbone (random weights, LoRA fwd+bwd);
#   4. the memory planner against a measured micro-step of whole real-size transformers;
#   5. a GRPO epoch (fused vs eager log-prob) and the main job's --quick run on CUDA.
# The lent machine has no diffusers and no rewardkit install: run
# benchmarks/prepare_gpu_carry.sh here first and carry .devcarry; this script unpacks it.
# Usage: bash benchmarks/gpu_check.sh   (the log is also written to $OUT/gpu_check.log if OUT is set)
# Measured on one H100 (2026-11-27, over two runs): CUDA tests 30 s (37 passed), benchmarks
# about 2 min, the --quick run 59 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/backbones${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [[ -f .devcarry/site.tar.gz ]]; then
    mkdir -p /tmp/rewardkit-site
    tar xzf .devcarry/site.tar.gz -C /tmp/rewardkit-site
    tar xzf .devcarry/meta.tar.gz -C /tmp/rewardkit-site
    export PYTHONPATH="/tmp/rewardkit-site:$PYTHONPATH"
fi
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
        tests/kernels tests/core tests/rewards || status=$?
    echo "== CUDA benchmark, float32 (+ Triton tile sweep)"
    timeout 80 python3 benchmarks/bench_sde_logprob.py --device cuda --quick --sweep || status=$?
    echo "== CUDA benchmark, bfloat16"
    timeout 40 python3 benchmarks/bench_sde_logprob.py --device cuda --quick --dtype bfloat16 || status=$?
    echo "== Backbone real-size blocks, random weights (issue 4)"
    timeout 120 python3 benchmarks/bench_backbones.py --block --device cuda --dtype bfloat16 --refs 2 || status=$?
    echo "== Memory planner vs measured, whole real-size transformers at 512 px (issue 16)"
    timeout 120 python3 benchmarks/bench_plan_vs_measured.py --device cuda --backbone flux2-klein --variant klein-4b || status=$?
    timeout 150 python3 benchmarks/bench_plan_vs_measured.py --device cuda --backbone qwen-image-edit-2511 --checkpointing on || status=$?
    echo "== GRPO epoch benchmark, CUDA"
    timeout 100 python3 benchmarks/bench_grpo.py --quick --device cuda || status=$?
    echo "== Main job, --quick on CUDA"
    timeout 200 python3 examples/dyref_full.py --quick --device cuda --out "$(mktemp -d)/run" || status=$?
    echo "== exit status $status"
    return "$status"
}

run_all 2>&1 | tee "$log"
