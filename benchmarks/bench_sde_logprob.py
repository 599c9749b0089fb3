"""Benchmark: fused SDE log-prob (rewardkit) vs the eager formulation of reference trainers.

Forward + backward of the Flow-SDE log-prob of the next latent, per sample mean over tokens ×
channels, on realistic latent shapes:

    Qwen-Image-Edit 512²   B=8, L=1024, C=64
    Qwen-Image-Edit 1024²  B=4, L=4096, C=64
    FLUX.2 512²            B=8, L=1024, C=128

"eager" is written the way the public Flow-GRPO-family trainers write it: upcast every input to
fp32, per-sample sigmas broadcast as (B, 1, 1) tensors, then mean, residual, square, division,
log and constants as full-size tensors, with autograd saving what it needs. "fused" is
``rewardkit.sde_log_prob`` with ``backend="auto"`` (the chunked CPU kernel on CPU, the Triton
kernel on CUDA).

Reported per shape: median time of one forward+backward and its ratio (eager / fused), and the
peak extra memory above the inputs and its ratio. Memory is measured honestly:

* CPU: one fresh subprocess per (variant, shape), started with a fixed glibc mmap threshold
  (64 KiB) so that freed buffers return to the OS. It allocates the inputs, runs one warm-up
  pass, resets the kernel's peak-RSS counter (/proc/self/clear_refs, where allowed), reads its
  RSS, runs three forward+backward passes and reads its peak RSS (VmHWM;
  ``resource.getrusage`` where /proc is missing: its ``ru_maxrss`` keeps the parent's peak
  across fork+exec, so it cannot be used in a child of a large parent); the difference is the
  peak extra memory. It includes the gradient (2 MiB … 4 MiB here), which every variant
  allocates, so the memory ratio is conservative.
* CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation after the inputs exist.

On CUDA it also measures the device bandwidth with a large device-to-device copy and reports
the time of the fused forward, and of forward+backward, against the time needed to read the
inputs once at that bandwidth.

    python benchmarks/bench_sde_logprob.py [--device cpu|cuda] [--quick] [--dtype float32]
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

from rewardkit.core.schedules import qwen_image_sigmas
from rewardkit.core.sde import sde_log_prob

SHAPES: dict[str, tuple[int, int, int]] = {
    "Qwen 512² (B=8, L=1024, C=64)": (8, 1024, 64),
    "Qwen 1024² (B=4, L=4096, C=64)": (4, 4096, 64),
    "FLUX.2 512² (B=8, L=1024, C=128)": (8, 1024, 128),
}
# eager: reference-trainer formulation; fused: rewardkit default (backend="auto");
# compiled: rewardkit backend="compiled" (opt-in torch.compile kernels; compiles on first use).
VARIANTS = ("eager", "fused", "compiled")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Flow-SDE at Qwen 512², N = 10, step 1 (the DyRef window), noise level 1.
_SIGMAS = qwen_image_sigmas(10, 1024)
SIGMA, SIGMA_NEXT, SIGMA_MAX = float(_SIGMAS[1]), float(_SIGMAS[2]), float(_SIGMAS[1])
NOISE_LEVEL = 1.0


def reference_eager_log_prob(
    x_next: Tensor,
    x: Tensor,
    v: Tensor,
    sigma: Tensor,
    sigma_next: Tensor,
    sigma_max: float,
    noise_level: float,
) -> Tensor:
    """Flow-SDE log-prob as reference trainers write it (full-size temporaries)."""
    x, v, x_next = x.float(), v.float(), x_next.float()
    sigma = sigma.float().view(-1, 1, 1)
    sigma_next = sigma_next.float().view(-1, 1, 1)
    dt = sigma_next - sigma
    sigma_tilde = torch.where(sigma == 1, torch.full_like(sigma, sigma_max), sigma)
    std_dev_t = torch.sqrt(sigma / (1 - sigma_tilde)) * noise_level
    prev_sample_mean = (
        x * (1 + std_dev_t**2 / (2 * sigma) * dt) + v * (1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt
    )
    std = std_dev_t * torch.sqrt(-1 * dt)
    log_prob = (
        -((x_next.detach() - prev_sample_mean) ** 2) / (2 * std**2)
        - torch.log(std)
        - torch.log(torch.sqrt(2 * torch.as_tensor(math.pi)))
    )
    return log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def make_inputs(
    shape: tuple[int, int, int], dtype: torch.dtype, device: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=g, device=device, dtype=dtype)
    v = torch.randn(shape, generator=g, device=device, dtype=dtype).requires_grad_()
    x_next = torch.randn(shape, generator=g, device=device, dtype=dtype)
    weights = torch.randn(shape[0], generator=g, device=device)
    return x_next, x, v, weights


def make_step(variant: str, x_next: Tensor, x: Tensor, v: Tensor, weights: Tensor) -> Callable[[], None]:
    batch = x.shape[0]
    if variant == "eager":
        sig = torch.full((batch,), SIGMA, device=x.device)
        sig_next = torch.full((batch,), SIGMA_NEXT, device=x.device)

        def log_prob() -> Tensor:
            return reference_eager_log_prob(x_next, x, v, sig, sig_next, SIGMA_MAX, NOISE_LEVEL)
    else:
        backend = "auto" if variant == "fused" else "compiled"

        def log_prob() -> Tensor:
            return sde_log_prob(
                x_next,
                x,
                v,
                SIGMA,
                SIGMA_NEXT,
                noise_level=NOISE_LEVEL,
                sigma_max=SIGMA_MAX,
                backend=backend,  # type: ignore[arg-type]
            )

    def step() -> None:
        v.grad = None
        (log_prob() * weights).sum().backward()

    return step


def make_forward(x_next: Tensor, x: Tensor, v: Tensor) -> Callable[[], Tensor]:
    """The fused forward alone (no autograd), e.g. the rollout's log-prob."""

    def forward() -> Tensor:
        with torch.no_grad():
            return sde_log_prob(x_next, x, v, SIGMA, SIGMA_NEXT, noise_level=NOISE_LEVEL, sigma_max=SIGMA_MAX)

    return forward


# ---------------------------------------------------------------------------------------------
# CPU: time in-process, memory in a subprocess per variant
# ---------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_bytes() -> int:
    kib = _proc_status_kib("VmRSS")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if kib is None else kib * 1024


def _peak_rss_bytes() -> int:
    # getrusage's ru_maxrss survives fork+exec: a child started from this (large) parent
    # inherits the parent's peak, so read the peak of the child's own memory map (VmHWM,
    # which clear_refs resets) and fall back to getrusage where /proc is missing.
    kib = _proc_status_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if kib is None else kib * 1024


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS ("hiwater") to the current RSS
        return True
    except OSError:
        return False


def child_memory(variant: str, shape: tuple[int, int, int], dtype: torch.dtype) -> dict[str, float]:
    inputs = make_inputs(shape, dtype, "cpu")
    step = make_step(variant, *inputs)
    # Warm up at full size (thread pool, lazy imports, torch.compile's compilation). The parent
    # starts this process with a fixed malloc mmap threshold, so every large buffer freed by the
    # warm-up goes back to the OS and the measured passes must fault their memory in again.
    step()
    inputs[2].grad = None  # the gradient counts as extra memory, as the brief's definition asks
    reset = _reset_peak_rss()
    base = _rss_bytes()
    before_peak = _peak_rss_bytes()
    for _ in range(3):
        step()
    peak = _peak_rss_bytes()
    return {
        "extra_bytes": float(peak - base),
        "peak_before_run_above_base": float(before_peak - base),
        "reset": float(reset),
    }


def cpu_memory(variant: str, shape: tuple[int, int, int], dtype_name: str, threads: int) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--child-shape",
        ",".join(map(str, shape)),
        "--dtype",
        dtype_name,
        "--threads",
        str(threads),
    ]
    # glibc: serve every allocation above 64 KiB with mmap and unmap it on free (fixed threshold,
    # no dynamic raise), so RSS tracks live memory instead of the allocator's free lists.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["peak_before_run_above_base"] > 0.1 * max(result["extra_bytes"], 1.0):
        print(
            f"  warning: peak RSS before the run exceeded the baseline ({variant}); the "
            f"memory figure may be an underestimate",
            file=sys.stderr,
        )
    return float(result["extra_bytes"])


def cpu_times(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall time per variant, the variants interleaved round-robin so that load from
    other processes on a shared machine hits all of them alike."""
    for step in steps.values():
        for _ in range(2):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------------------------------------
# CUDA: CUDA-event timing, allocator peak, bandwidth
# ---------------------------------------------------------------------------------------------


def cuda_time(fn: Callable[[], object], repeats: int, inner: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return statistics.median(times)


def cuda_graph_time(fn: Callable[[], object], repeats: int, inner: int = 20) -> float:
    """Pure device time of ``fn``: ``inner`` calls captured in one CUDA graph, then replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()  # warm-up (Triton JIT) outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    return cuda_time(graph.replay, repeats, inner=1) / inner


def kernel_times(x_next: Tensor, x: Tensor, v: Tensor, repeats: int) -> tuple[float, float]:
    """Device time of the Triton forward (2 kernels) and backward (1 kernel), no host overhead."""
    from rewardkit.core.sde import _coefficient_tensor, sde_coefficients
    from rewardkit.kernels import sde_logprob as kernels

    coef = _coefficient_tensor(sde_coefficients(SIGMA, SIGMA_NEXT, sigma_max=SIGMA_MAX), x, torch.float32)
    grad = torch.ones(x.shape[0], device=x.device)
    fwd = cuda_graph_time(lambda: kernels._triton_forward(x_next, x, v, coef), repeats)
    bwd = cuda_graph_time(lambda: kernels._triton_backward(grad, x_next, x, v, coef, False, True), repeats)
    return fwd, bwd


def cuda_memory(step: Callable[[], None], v: Tensor) -> float:
    step()
    v.grad = None  # the gradient counts as extra memory, as on CPU
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated() - base)


def cuda_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = cuda_time(lambda: dst.copy_(src), repeats=5, inner=5)
    return 2 * nbytes / seconds


def triton_sweep(names: list[str], dtype: torch.dtype, repeats: int, bandwidth: float) -> None:
    """Device time of the Triton kernels (CUDA graph) for several (tile, warps) settings.

    Timed without host overhead: end-to-end timings of these small problems are dominated by
    Python and launch costs and cannot rank tile sizes.
    """
    from rewardkit.kernels import sde_logprob as kernels

    default = (kernels.TRITON_BLOCK, kernels.TRITON_WARPS)
    print(f"\nTriton tile sweep, kernels alone (default block={default[0]}, warps={default[1]}):")
    print(f"{'shape':34s} {'block':>6s} {'warps':>5s} {'fwd us':>8s} {'bwd us':>8s} {'(fwd+bwd)/read':>15s}")
    try:
        for name in names:
            x_next, x, v, _ = make_inputs(SHAPES[name], dtype, "cuda")
            read_once = sum(a.numel() * a.element_size() for a in (x_next, x, v)) / bandwidth
            for block in (1024, 2048, 4096):
                for warps in (4, 8):
                    kernels.TRITON_BLOCK, kernels.TRITON_WARPS = block, warps
                    fwd, bwd = kernel_times(x_next, x, v.detach(), repeats)
                    print(
                        f"{name:34s} {block:6d} {warps:5d} {fwd * 1e6:8.1f} {bwd * 1e6:8.1f} "
                        f"{(fwd + bwd) / read_once:14.2f}x",
                        flush=True,
                    )
    finally:
        kernels.TRITON_BLOCK, kernels.TRITON_WARPS = default


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="dtype of x, v and x_next (arithmetic is fp32 either way)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="CPU threads (torch.set_num_threads)"
    )
    parser.add_argument(
        "--shapes",
        nargs="*",
        choices=range(len(SHAPES)),
        type=int,
        help="indices of the shapes to run (default: all)",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=VARIANTS[1:],
        help="rewardkit variants to compare with eager (default: fused and compiled on CPU, fused on CUDA)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="CUDA only: also time the Triton kernels for several tile sizes and warp counts",
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]

    if args.child:
        shape = tuple(int(s) for s in args.child_shape.split(","))
        print(json.dumps(child_memory(args.child, shape, dtype)))  # type: ignore[arg-type]
        return

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    repeats = 5 if args.quick else 21
    names = list(SHAPES)
    chosen = [names[i] for i in (args.shapes if args.shapes is not None else range(len(names)))]
    ours = args.variants or (["fused", "compiled"] if args.device == "cpu" else ["fused"])
    variants = ["eager", *ours]

    print(
        f"device={args.device} dtype={args.dtype} threads={args.threads} "
        f"torch={torch.__version__} repeats={repeats}"
    )
    print(
        f"Flow-SDE, sigma={SIGMA:.4f} -> {SIGMA_NEXT:.4f}, noise level {NOISE_LEVEL}; "
        f"time = median forward+backward (variants interleaved), memory = peak extra above the inputs"
    )
    bandwidth = None
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}")
        bandwidth = cuda_bandwidth()
        print(f"measured device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s (read + write)")

    rows = []
    for name in chosen:
        shape = SHAPES[name]
        inputs = make_inputs(shape, dtype, args.device)
        t: dict[str, float] = {}
        m: dict[str, float] = {}
        if args.device == "cpu":
            t = cpu_times({k: make_step(k, *inputs) for k in variants}, repeats)
            m = {k: cpu_memory(k, shape, args.dtype, args.threads) for k in variants}
        else:
            for variant in variants:
                step = make_step(variant, *inputs)
                t[variant] = cuda_time(step, repeats)
                m[variant] = cuda_memory(step, inputs[2])
        rows.append((name, t, m))
        line = f"{name}: " + ", ".join(f"{k} {t[k] * 1e3:.3f} ms" for k in variants)
        if bandwidth is not None:
            x_next, x, v, _ = inputs
            read_once = sum(a.numel() * a.element_size() for a in (x_next, x, v)) / bandwidth

            fwd = cuda_time(make_forward(x_next, x, v), repeats)
            try:
                k_fwd, k_bwd = kernel_times(x_next, x, v.detach(), repeats)
                line += (
                    f"\n    kernels alone (CUDA graph, no launch overhead): forward {k_fwd * 1e6:.1f} us "
                    f"({k_fwd / read_once:.2f}x read-once), backward {k_bwd * 1e6:.1f} us "
                    f"({k_bwd / read_once:.2f}x; reads 3 + writes 1), fwd+bwd "
                    f"{(k_fwd + k_bwd) / read_once:.2f}x read-once"
                )
            except Exception as err:  # a measurement aid only: report and go on
                line += f"\n    kernel-only timing failed: {type(err).__name__}: {err}"
            line += (
                f"\n    read-inputs-once {read_once * 1e6:.1f} us | fused forward "
                f"{fwd * 1e6:.1f} us ({fwd / read_once:.2f}x) | fused fwd+bwd "
                f"{t['fused'] * 1e6:.1f} us ({t['fused'] / read_once:.2f}x; the minimum "
                f"traffic of fwd+bwd is 7/3 of one read: 3 reads fwd, 3 reads + 1 write "
                f"bwd)"
            )
        print(line, flush=True)

    if args.sweep and bandwidth is not None:
        triton_sweep(chosen, dtype, repeats, bandwidth)

    print()
    header = (
        f"{'shape':34s} {'eager ms':>9s}"
        + "".join(f" {k + ' ms':>12s} {'(x)':>6s}" for k in ours)
        + f" {'eager MiB':>10s}"
        + "".join(f" {k + ' MiB':>13s} {'(x)':>6s}" for k in ours)
    )
    print(header)
    print("-" * len(header))
    for name, t, m in rows:
        line = f"{name:34s} {t['eager'] * 1e3:9.3f}"
        line += "".join(f" {t[k] * 1e3:12.3f} {t['eager'] / t[k]:5.2f}x" for k in ours)
        line += f" {m['eager'] / 2**20:10.2f}"
        line += "".join(f" {m[k] / 2**20:13.2f} {m['eager'] / max(m[k], 1.0):5.2f}x" for k in ours)
        print(line)
    print("(x) = eager / variant: time ratio (speed-up) and peak-extra-memory ratio; higher is better")


if __name__ == "__main__":
    main()
