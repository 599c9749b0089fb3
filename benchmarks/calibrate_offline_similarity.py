"""Raw ``offline_similarity`` of OmniRef-mini targets vs blurred, recoloured, other and constant images.

The table on the Rewards page and the default DRS threshold ``OFFLINE_SPATIAL_TAU`` come from
this script (60 targets: 10 categories x 6 seeds, image_size 128)::

    python benchmarks/calibrate_offline_similarity.py
"""

import argparse

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import rewardkit
from rewardkit.data.omniref_mini import CATEGORIES, make_instance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6, help="targets per category")
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    reward = rewardkit.load_reward("offline_similarity", image_size=args.image_size, device="cpu")
    cats = list(CATEGORIES)
    targets = [
        make_instance(c, CATEGORIES[c][0], np.random.default_rng([s, 5])).target
        for c in cats
        for s in range(args.seeds)
    ]
    scenes = [
        make_instance(cats[i % 10], CATEGORIES[cats[i % 10]][0], np.random.default_rng([i, 77]))
        for i in range(50)
    ]
    mean_image = np.mean([inst.target for inst in scenes], axis=0)
    rows: dict[str, list[float]] = {}
    for k, target in enumerate(targets):
        other = targets[(k // args.seeds) * args.seeds + (k + 1) % args.seeds]  # same category
        images = {
            "blur 1 px": gaussian_filter(target, (1, 1, 0)),
            "blur 1.5 px": gaussian_filter(target, (1.5, 1.5, 0)),
            "blur 2 px": gaussian_filter(target, (2, 2, 0)),
            "blur 4 px": gaussian_filter(target, (4, 4, 0)),
            "darker (x0.6)": target * 0.6,
            "washed out (0.6 t + 0.4)": 0.6 * target + 0.4,
            "another target, same category": other,
            "constant white": np.ones_like(target),
            "constant black": np.zeros_like(target),
            "constant image-mean colour": np.broadcast_to(target.mean((0, 1)), target.shape),
            "mean of 50 targets": mean_image,
        }
        batch = torch.stack(
            [
                torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)
                for v in images.values()
            ]
        )
        context = rewardkit.SampleContext(targets=(torch.from_numpy(target).permute(2, 0, 1),))
        raw = reward(batch, [context] * len(images)).extras["sim_raw"]
        for name, value in zip(images, raw.tolist(), strict=True):
            rows.setdefault(name, []).append(value)
    print("| compared image | mean | 10th–90th percentile |\n|---|---|---|")
    for name, values in rows.items():
        v = np.asarray(values)
        print(f"| {name} | {v.mean():.2f} | {np.percentile(v, 10):.2f}–{np.percentile(v, 90):.2f} |")


if __name__ == "__main__":
    main()
