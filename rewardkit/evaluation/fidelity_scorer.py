"""Target fidelity of a run's images: per-image PSNR/SSIM/perceptual and the run's diversity.

The stateful companion of [`fidelity`][rewardkit.evaluation.fidelity]'s pure functions, used
by [`evaluate`][rewardkit.evaluate] for benchmarks whose instances carry a target image.
"""

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rewardkit.evaluation._images import load_rgb
from rewardkit.evaluation.benchmark import BenchInstance, Benchmark
from rewardkit.evaluation.fidelity import (
    DIVERSITY_SIZE,
    PerceptualDistance,
    default_perceptual,
    diversity,
    psnr,
    ssim,
)
from rewardkit.evaluation.report import InstanceScores

__all__ = ["FidelityScorer"]

logger = logging.getLogger(__name__)


class FidelityScorer:
    """Compares each image with its instance's target; keeps what the set-level values need.

    Per run: ``start``, ``score`` every image, then ``finish`` for the perceptual
    distances (computed in batches) and the diversity values (64 px thumbnails). The targets
    are decoded once for all runs: their thumbnails always stay, the images themselves while
    they fit in ``target_cache_bytes``.
    """

    def __init__(
        self, bench: Benchmark, *, device: str | None = None, target_cache_bytes: int = 256 << 20
    ) -> None:
        self.bench = bench
        self.note: str | None = None
        self.perceptual: PerceptualDistance | None = default_perceptual(device)
        try:
            self.perceptual.load()
        except ImportError as err:
            self.perceptual = None
            self.note = f"perceptual distance skipped (its network is unavailable: {err})"
            logger.warning("target fidelity: %s", self.note)
        self._target_thumbs: dict[int, NDArray[np.float32]] = {}
        self._targets: dict[int, NDArray[np.uint8]] = {}
        self._cache_left = target_cache_bytes
        self.start()

    def start(self) -> None:
        """Begin a run."""
        self._seen = 0
        self._thumbs: list[NDArray[np.float32]] = []
        self._paired: list[NDArray[np.float32]] = []
        self._pending: list[tuple[int, NDArray[np.uint8], NDArray[np.uint8]]] = []
        self._distances: dict[int, float] = {}

    def _flush(self) -> None:
        if self._pending and self.perceptual is not None:
            values = self.perceptual([p[1] for p in self._pending], [p[2] for p in self._pending])
            self._distances.update(zip([p[0] for p in self._pending], map(float, values), strict=True))
        self._pending = []

    def _target(self, index: int, path: str) -> NDArray[np.uint8]:
        if index in self._targets:
            return self._targets[index]
        target = load_rgb(self.bench.resolve(path))
        self._target_thumbs.setdefault(index, _thumbnail(target))
        if target.nbytes <= self._cache_left:  # bounded: a full-size benchmark need not fit
            self._targets[index] = target
            self._cache_left -= target.nbytes
        return target

    def score(self, inst: BenchInstance, image: NDArray[np.uint8], record: InstanceScores) -> InstanceScores:
        """Add PSNR and SSIM to one image's record (the perceptual distance comes in ``finish``)."""
        position, self._seen = self._seen, self._seen + 1
        if inst.target is None:
            return record
        target = self._target(inst.index, inst.target)
        self._thumbs.append(_thumbnail(image))
        self._paired.append(self._target_thumbs[inst.index])
        if self.perceptual is not None:
            self._pending.append((position, image, target))
            if len(self._pending) >= self.perceptual.batch_size:
                self._flush()
        return dataclasses.replace(record, psnr=psnr(image, target), ssim=ssim(image, target))

    def finish(
        self, records: Sequence[InstanceScores]
    ) -> tuple[list[InstanceScores], dict[str, float | None]]:
        """The run's records with perceptual distances, and its diversity values."""
        self._flush()
        out = [
            dataclasses.replace(r, perceptual=self._distances[k]) if k in self._distances else r
            for k, r in enumerate(records)
        ]
        stats: dict[str, float | None] = dict.fromkeys(("diversity", "target_diversity", "diversity_ratio"))
        if len(self._thumbs) >= 2:
            ours, theirs = diversity(self._thumbs), diversity(self._paired)
            stats = {
                "diversity": ours,
                "target_diversity": theirs,
                "diversity_ratio": ours / theirs if theirs > 0 else None,
            }
        self.start()
        return out, stats


def _thumbnail(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    """A ``DIVERSITY_SIZE`` square float thumbnail in [0, 1] (Pillow bilinear, squashed)."""
    from PIL import Image

    small = Image.fromarray(image).resize((DIVERSITY_SIZE, DIVERSITY_SIZE), Image.Resampling.BILINEAR)
    thumb: NDArray[np.float32] = np.asarray(small, dtype=np.float32) / np.float32(255.0)
    return thumb
