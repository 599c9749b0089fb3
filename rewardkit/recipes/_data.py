"""Recipe data: benchmark splits opened as examples, conditions and target latents."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rewardkit.backbone import Backbone, Condition
from rewardkit.evaluation.benchmark import BenchInstance, Benchmark, load_benchmark
from rewardkit.recipes.config import ConfigError, DataConfig
from rewardkit.rewards import Reference, SampleContext
from rewardkit.rewards._images import as_image

__all__ = ["EncodedSplit", "Example", "load_example", "load_split", "pil_to_tensor"]


@dataclass(frozen=True)
class Example:
    """One benchmark instance with its images loaded.

    Attributes:
        instance: the metadata entry.
        references: RGB PIL images in prompt order (the backbone's condition).
        target: the ground-truth RGB PIL image, or None.
        context: the reward context (target as a tensor, typed references).
    """

    instance: BenchInstance
    references: list[Any]
    target: Any
    context: SampleContext


def load_split(metadata: str, limit: int | None) -> Benchmark:
    """A split's metadata, optionally cut to its first ``limit`` instances."""
    try:
        bench = load_benchmark(metadata)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"cannot read data split {metadata!r}: {err}") from err
    if limit is not None:
        bench = Benchmark(bench.instances[:limit], bench.root)
    if len(bench) == 0:
        raise ConfigError(f"data split {metadata!r} holds no instances")
    return bench


def _open_rgb(path: Path) -> Any:
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} listed in the metadata does not exist")
    with Image.open(path) as img:
        return img.convert("RGB")


def pil_to_tensor(image: Any) -> Tensor:
    """RGB PIL image → `(3, H, W)` float32 in [0, 1] (the rewards' one image converter)."""
    return as_image(image)


def load_example(bench: Benchmark, position: int) -> Example:
    """Open the images of instance ``position`` of ``bench``."""
    inst = bench.instances[position]
    refs = [_open_rgb(bench.resolve(r.path)) for r in inst.references]
    target = _open_rgb(bench.resolve(inst.target)) if inst.target is not None else None
    context = SampleContext(
        prompt=inst.prompt,
        targets=(pil_to_tensor(target),) if target is not None else (),
        references=tuple(
            Reference(pil_to_tensor(img), ref.type, ref.subject_name or "")
            for img, ref in zip(refs, inst.references, strict=True)
        ),
        n_refs=len(refs),
        metadata={"index": inst.index, "category": inst.category},
    )
    return Example(inst, refs, target, context)


class EncodedSplit:
    """A split's examples, conditions and (for SFT) target latents, encoded on demand.

    With ``cache=True`` everything is kept in memory after first use (fast for small splits and
    tests; memory grows with the split), otherwise each call loads and encodes again.
    """

    def __init__(
        self,
        backbone: Backbone,
        split: Benchmark,
        data: DataConfig,
        *,
        negative_prompt: str | None,
        cache: bool,
    ) -> None:
        self.backbone, self.split, self.data = backbone, split, data
        self.negative_prompt = negative_prompt
        self.cache: dict[tuple[str, int], Any] | None = {} if cache else None

    @classmethod
    def load(
        cls,
        backbone: Backbone,
        data: DataConfig,
        metadata: str,
        limit: int | None,
        *,
        negative_prompt: str | None,
    ) -> "EncodedSplit":
        """Read a split's metadata (see ``load_split``)."""
        return cls(
            backbone, load_split(metadata, limit), data, negative_prompt=negative_prompt, cache=data.cache
        )

    def __len__(self) -> int:
        return len(self.split)

    def _cached(self, kind: str, position: int, make: Any) -> Any:
        if self.cache is None:
            return make()
        key = (kind, position)
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def example(self, position: int) -> Example:
        """Instance ``position`` with its images loaded."""
        return self._cached("example", position, lambda: load_example(self.split, position))  # type: ignore[no-any-return]

    def condition(self, position: int) -> Condition:
        """The backbone's condition of instance ``position`` (at ``data.height × data.width``)."""

        def make() -> Condition:
            ex = self.example(position)
            (cond,) = self.backbone.encode_condition(
                [ex.instance.prompt],
                [ex.references],
                height=self.data.height,
                width=self.data.width,
                negative_prompt=self.negative_prompt,
            )
            return cond

        return self._cached("condition", position, make)  # type: ignore[no-any-return]

    def target_latents(self, position: int) -> Tensor:
        """`(1, L, D)` latents of the target resized to the condition's size."""

        def make() -> Tensor:
            from PIL import Image

            ex, cond = self.example(position), self.condition(position)
            if ex.target is None:
                raise ConfigError(f"instance {ex.instance.index} has no target image; SFT needs targets")
            image = ex.target.resize((cond.width, cond.height), Image.Resampling.BICUBIC)
            with torch.no_grad():
                pixels = pil_to_tensor(image)[None].to(self.backbone.device)
                return self.backbone.encode_images(pixels).float()

        return self._cached("target", position, make)  # type: ignore[no-any-return]
