"""Test helpers: synthetic images and a toy pure-torch encoder."""

import math

import torch
import torch.nn.functional as F

from rewardkit.rewards import as_image_list


class ToyEncoder:
    """Pure-torch encoder: the image average-pooled to 4x4 (48-d, spatially aware). Counts images."""

    name = "toy"

    def __init__(self) -> None:
        self.seen = 0

    def encode(self, images):
        items = as_image_list(images)
        self.seen += len(items)
        if not items:
            return torch.empty(0, 48)
        pooled = [F.adaptive_avg_pool2d(im[None], 4).flatten() for im in items]
        return torch.stack(pooled) - 0.5  # centre so that cosines spread over [-1, 1]


def smooth_image(seed: int, size: int = 48, res: int = 6) -> torch.Tensor:
    """A smooth random colour field in [0, 1] (a stand-in for a natural image)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, res, res, generator=g)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def stripes(size: int, freq: float, angle: float, c1, c2) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    t = (torch.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi * freq / size) > 0).float()
    return t * torch.tensor(c1)[:, None, None] + (1 - t) * torch.tensor(c2)[:, None, None]


def checker(size: int, n: int, c1, c2) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    t = (((xx * n // size) + (yy * n // size)) % 2).float()
    return t * torch.tensor(c1)[:, None, None] + (1 - t) * torch.tensor(c2)[:, None, None]


def disc(fg: torch.Tensor, bg: torch.Tensor, cx: int, cy: int, r: int) -> torch.Tensor:
    """``fg`` inside a disc centred at (cx, cy), ``bg`` elsewhere."""
    size = fg.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r).float()
    return fg * mask + bg * (1 - mask)
